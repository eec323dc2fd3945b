"""Report figures for the uRNN: Figures 1-3's learning curves, every model against the task's
memoryless baseline, one panel per task and length."""
from __future__ import annotations

from pathlib import Path

from common.plots import curve_plot
from common.records import all_curves


def figures(runs, out_dir: Path) -> list[tuple[str, Path]]:
    curves = all_curves(runs)
    if not {"task", "model", "test_loss", "baseline"} <= set(curves.columns):
        return []
    made = []
    for family, title in (("copying", "Copying memory (Fig. 1)"), ("adding", "Adding (Fig. 2)"),
                          ("mnist", "Pixel MNIST (Fig. 3)")):
        subset = curves[curves["task"].str.contains(family)]
        if subset.empty:
            continue
        n_seeds = subset["seed"].nunique()
        # toy tasks: the y-axis stops at 2.5x the baseline (as the paper's figures), cutting the first steps' spike
        ylim = None if family == "mnist" else (0, 2.5 * subset["baseline"].max())
        path = curve_plot(subset, y="test_loss", x="step", hue="model", col="task", baseline="baseline", ylim=ylim,
                          path=Path(out_dir) / f"urnn_{family}.png", title=f"{title}: test loss vs training step")
        made.append((f"{title}: test loss of each model against the training step (mean of {n_seeds} seed(s), "
                     "band: range of the seeds); the dashed line is the task's memoryless baseline"
                     + ("." if ylim is None else f"; the y-axis stops at {ylim[1]:.3g}, 2.5x the baseline."), path))
    return made
