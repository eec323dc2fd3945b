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


# -- aggregates over tasks (Agarwal et al. 2021, as rliable computes them) -------------------------
def iqm(scores) -> float:
    """Interquartile mean of all the scores: the mean of the middle 50%, the outer quarters cut by
    weight (scipy's trim_mean, as rliable)."""
    return float(stats.trim_mean(np.asarray(scores, dtype=float).ravel(), proportiontocut=0.25))


def stratified_bootstrap_ci(scores, statistic=iqm, confidence: float = 0.95, resamples: int = 2000,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile CI of `statistic` over a (runs, tasks) score matrix, resampling runs with
    replacement within each task (column) independently: rliable's stratified bootstrap."""
    x = np.asarray(scores, dtype=float)
    if x.ndim != 2 or x.size == 0:
        raise ValueError("stratified_bootstrap_ci needs a non-empty (runs, tasks) matrix")
    rng = np.random.default_rng(seed)
    runs, tasks = x.shape
    picks = rng.integers(0, runs, size=(resamples, runs, tasks))
    values = np.array([statistic(x[p, np.arange(tasks)]) for p in picks])
    alpha = (1 - confidence) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))
