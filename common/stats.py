"""Across-seed statistics, with intervals that are honest for the number of seeds (scipy).

The interval of a mean depends on n: from 2 to 9 seeds a Student-t interval on the seed values
(mean ± t_{0.975, n-1} · s / √n), which is wide at n = 3 because it should be; from 10 seeds a
percentile bootstrap (at 3 seeds its 95% interval is exactly [min, max], far too narrow). A "never"
claim's max or min comes with the range of the seeds. Every interval says its method and n.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

AGGREGATES = {"mean": np.mean, "max": np.max, "min": np.min}
BOOTSTRAP_FROM = 10  # seeds: below this a mean's interval is Student-t
METHOD_LABEL = {"t": "95% t-interval", "bootstrap": "95% bootstrap CI", "range": "range", "none": "one seed"}


@dataclass(frozen=True)
class Summary:
    stat: str  # how the seeds were aggregated: mean, max or min
    value: float
    std: float
    ci_low: float
    ci_high: float
    n: int
    method: str = "none"  # the interval's: t, bootstrap, range (max/min), none (one seed)

    def format(self, digits: int = 4) -> str:
        def g(x):
            return f"{x:.{digits}g}"
        if self.n == 1:
            return f"{g(self.value)} (n=1)"
        label = f"{METHOD_LABEL[self.method]} {g(self.ci_low)}, {g(self.ci_high)}"
        if self.stat == "mean":
            return f"{g(self.value)} ± {g(self.std)} [{label}] (n={self.n})"
        return f"{self.stat} {g(self.value)} [{label}] (n={self.n})"


def summarize(values, stat: str = "mean", confidence: float = 0.95, seed: int = 0) -> Summary:
    """`stat` over seeds, with its interval: for the mean Student-t below `BOOTSTRAP_FROM` seeds and a
    percentile bootstrap from there on, for max/min the range of the seeds."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError("summarize needs a non-empty 1-D sequence of numbers")
    value = float(AGGREGATES[stat](x))
    n = len(x)
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    if n == 1:
        return Summary(stat, value, std, value, value, n, "none")
    if stat != "mean":
        return Summary(stat, value, std, float(x.min()), float(x.max()), n, "range")
    if n < BOOTSTRAP_FROM:
        half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1) * std / np.sqrt(n))
        return Summary(stat, value, std, value - half, value + half, n, "t")
    if np.ptp(x) == 0:
        return Summary(stat, value, std, value, value, n, "bootstrap")
    result = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=9999,
                             method="percentile", rng=np.random.default_rng(seed))
    return Summary(stat, value, std, float(result.confidence_interval.low), float(result.confidence_interval.high),
                   n, "bootstrap")


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
