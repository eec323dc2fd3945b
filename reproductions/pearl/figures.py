"""Report figures for PEARL: the meta-test return against the environment steps of meta-training, for
PEARL, the deterministic-z ablation and RL², one panel per task family (the paper's Fig. 3 axes); the return
of each trajectory of the last meta-test (posterior sampling, §4.2); and the sparse point robot's success
rates with z from the prior and from the posterior (the kl_lambda ablation beside PEARL)."""
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
    items = [("Meta-test return on held-out tasks against environment steps (log axis), the mean over seeds and "
              "their range; the sparse point robot's return is the sparse one",
              save(grid.figure, Path(out_dir) / "pearl_test_return.png"))]
    trajectories = _last_test_trajectories(runs)
    if not trajectories.empty:
        grid = sns.relplot(data=trajectories, x="trajectory", y="return", hue="algo", col="family", kind="line",
                           marker="o", errorbar=("pi", 100), height=3.0, aspect=1.4,
                           facet_kws={"sharey": False, "sharex": False})
        grid.set_axis_labels("trajectory of the meta-test", "return (mean over held-out tasks)")
        items.append(("Posterior sampling: the return of each trajectory of the last meta-test, in order (mean over "
                      "seeds and their range). The first trajectories act with z from the prior (exploration), the "
                      "later ones with z from the posterior of the context gathered so far",
                      save(grid.figure, Path(out_dir) / "pearl_trajectories.png")))
    success = _success_table(runs)
    if success is not None:
        items.append(("Sparse point robot: how often the held-out goal's radius is reached, by trajectories with z "
                      "from the prior and from the posterior (mean [min, max] over seeds); the deterministic z is the "
                      "kl_lambda ablation (§6.3)", success))
    return items


def _last_test_trajectories(runs) -> pd.DataFrame:
    rows = []
    for run in runs:
        labels = run.record["labels"]
        if labels["algo"] == "rl2":
            continue
        curves = run.curves()
        columns = sorted((c for c in curves if c.startswith("trajectory_") and c.endswith("_return")),
                         key=lambda c: int(c.split("_")[1]))
        tests = curves.dropna(subset=columns[:1]) if columns else curves.iloc[:0]
        if tests.empty:
            continue
        last = tests.iloc[-1]
        rows += [{"family": labels["family"], "algo": ALGO_LABELS[labels["algo"]], "seed": run.seed,
                  "trajectory": int(c.split("_")[1]), "return": last[c]} for c in columns]
    return pd.DataFrame(rows)


def _success_table(runs) -> pd.DataFrame | None:
    rows = []
    for algo in ("pearl", "pearl_det"):
        chosen = [r for r in runs if r.record["labels"] == {"family": "point_sparse", "algo": algo}]
        metrics = pd.DataFrame([r.record["metrics"] for r in chosen])
        if metrics.empty or "posterior_success" not in metrics:
            continue
        rows.append({"algorithm": ALGO_LABELS[algo], "seeds": len(chosen),
                     **{name: f"{metrics[key].mean():.3f} [{metrics[key].min():.3f}, {metrics[key].max():.3f}]"
                        for name, key in (("success, z from the prior", "prior_success"),
                                          ("success, z from the posterior", "posterior_success"))}})
    return pd.DataFrame(rows) if rows else None
