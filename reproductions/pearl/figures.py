"""Report figures for PEARL: the meta-test return against the environment steps of meta-training, for
PEARL, the deterministic-z ablation and RL², one panel per task family (the paper's Fig. 3 axes)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from common.plots import save

ALGO_LABELS = {"pearl": "PEARL", "pearl_det": "PEARL, deterministic z", "rl2": "RL²"}


def figures(runs, out_dir: Path) -> list[tuple[str, Path]]:
    frames = []
    for run in runs:
        curves = run.curves()
        if "test_return" not in curves:
            continue
        labels = run.record["labels"]
        frames.append(curves.dropna(subset=["test_return"]).assign(
            seed=run.seed, family=labels["family"], algo=ALGO_LABELS[labels["algo"]]))
    if not frames:
        return []
    tests = pd.concat(frames, ignore_index=True)
    grid = sns.relplot(data=tests, x="step", y="test_return", hue="algo", col="family", kind="line",
                       errorbar=("pi", 100), height=3.0, aspect=1.4, facet_kws={"sharey": False, "sharex": False})
    for ax in grid.axes.flat:
        ax.set_xscale("log")
    grid.set_axis_labels("environment steps of meta-training", "meta-test return (last trajectory)")
    return [("Meta-test return on held-out tasks against environment steps (log axis), the mean over seeds and "
             "their range; the sparse point robot's return is the sparse one",
             save(grid.figure, Path(out_dir) / "pearl_test_return.png"))]
