"""Across-seed statistics: mean ± std and a 95% bootstrap confidence interval (scipy)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

AGGREGATES = {"mean": np.mean, "max": np.max, "min": np.min}


@dataclass(frozen=True)
class Summary:
    stat: str  # how the seeds were aggregated: mean, max or min
    value: float
    std: float
    ci_low: float
    ci_high: float
    n: int

    def format(self, digits: int = 4) -> str:
        def g(x):
            return f"{x:.{digits}g}"
        if self.n == 1:
            return f"{g(self.value)} (n=1)"
        if self.stat == "mean":
            return f"{g(self.value)} ± {g(self.std)} [95% CI {g(self.ci_low)}, {g(self.ci_high)}] (n={self.n})"
        return f"{self.stat} {g(self.value)} [range {g(self.ci_low)}, {g(self.ci_high)}] (n={self.n})"


def summarize(values, stat: str = "mean", confidence: float = 0.95, seed: int = 0) -> Summary:
    """`stat` over seeds; for the mean, a percentile bootstrap CI, for max/min the range of seeds."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError("summarize needs a non-empty 1-D sequence of numbers")
    value = float(AGGREGATES[stat](x))
    std = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    if stat != "mean":
        low, high = float(x.min()), float(x.max())
    elif len(x) == 1 or np.ptp(x) == 0:
        low = high = value
    else:
        result = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=9999,
                                 method="percentile", rng=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return Summary(stat, value, std, low, high, len(x))
