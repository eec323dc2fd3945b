"""Report figures for IRNN: the test loss of every model against training steps, one panel per task
(adding at each T, pixel and permuted MNIST), with the task's memoryless baseline dashed (Figs. 2-3),
and the MNIST test accuracy curves."""
from __future__ import annotations

from pathlib import Path

from common.plots import curve_plot
from common.records import all_curves


def figures(runs, out_dir: Path) -> list[tuple[str, Path]]:
    out_dir = Path(out_dir)
    made: list[tuple[str, Path]] = []
    curves = all_curves(runs)
    if not {"task", "model", "test_loss", "baseline"} <= set(curves.columns):
        return made
    curves = curves.assign(model=curves["model"].astype(str), task=curves["task"].astype(str))
    n_seeds = curves["seed"].nunique() if "seed" in curves.columns else 1

    adding = curves[curves["task"].str.startswith("adding")]
    if not adding.empty:
        lengths = sorted(adding["task"].unique(), key=lambda t: int(t.split("T")[-1]))
        path = curve_plot(adding.rename(columns={"test_loss": "test MSE"}), y="test MSE", hue="model",
                          col="task", baseline="baseline", path=out_dir / "irnn_adding_curves.png",
                          ylim=(0, 0.3),  # the untrained models start near MSE 1; the action is below 0.167
                          title="Adding problem: test MSE vs training step (dashed: predict 1, MSE 0.167)")
        made.append(((f"Adding problem at T = {', '.join(t.split('T')[-1] for t in lengths)}: test MSE of each "
                     f"model against training steps (mean of {n_seeds} seed(s), band: range of the seeds); the dashed line is "
                     "the memoryless baseline 0.167 (always predict 1), as in the paper's Figure 2; y-axis cut at 0.3."), path))

    mnist = curves[curves["task"].str.contains("mnist")]
    if not mnist.empty:
        path = curve_plot(mnist.rename(columns={"test_loss": "test cross-entropy"}), y="test cross-entropy",
                          hue="model", col="task", baseline="baseline", path=out_dir / "irnn_mnist_loss.png",
                          title="Pixel MNIST: test cross-entropy vs step (dashed: uniform guess, ln 10)")
        made.append(((f"Pixel and permuted-pixel MNIST: test cross-entropy of each model against training steps "
                     f"(mean of {n_seeds} seed(s), band: range of the seeds); the dashed line is the memoryless baseline "
                     "ln 10 (a uniform guess over the classes)."), path))
        if "test_accuracy" in mnist.columns:
            acc = mnist.assign(chance=0.1).rename(columns={"test_accuracy": "test accuracy"})
            path = curve_plot(acc, y="test accuracy", hue="model", col="task", baseline="chance",
                              path=out_dir / "irnn_mnist_accuracy.png",
                              title="Pixel MNIST: test accuracy vs step (dashed: chance, 10%)")
            made.append(((f"Pixel and permuted-pixel MNIST: test accuracy against training steps (mean of "
                         f"{n_seeds} seed(s)); the paper's Figure 3 and Table 2 report IRNN 97% and 82%, "
                         "LSTM 65% and 36%, RNN-tanh 35% at 28x28."), path))
    return made
