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
        path = curve_plot(subset, y="test_loss", x="step", hue="model", col="task", baseline="baseline",
                          path=Path(out_dir) / f"urnn_{family}.png", title=f"{title}: test loss vs training step")
        made.append((f"{title}: test loss of each model against the training step (mean of {n_seeds} seed(s), "
                     "95% band); the dashed line is the task's memoryless baseline.", path))
    return made
