"""Report figures for BEAR: the normalized-return table (dataset x algorithm, per environment), the
critics' Q-values against the return bound on a symmetric-log axis (Fig. 1's divergence), the MMD and
alpha of BEAR's dual step, the returns over training, and the behaviour policies' learning curves."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from common.plots import save

ALGO_LABELS = {"bear": "BEAR (MMD)", "bear_kl": "BEAR (KL)", "bc": "BC", "sac": "naive SAC"}


def _labelled_curves(runs) -> pd.DataFrame:
    frames = []
    for run in runs:
        curves = run.curves()
        if curves.empty:
            continue
        frames.append(curves.assign(seed=run.seed, **{k: str(v) for k, v in run.record["labels"].items()}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def return_table(runs, path: Path) -> Path | None:
    """Normalized return per environment x dataset x algorithm: mean over seeds, with each seed's value."""
    rows = []
    for run in runs:
        labels, metrics = run.record["labels"], run.record["metrics"]
        if "algo" in labels and "return" in metrics:
            rows.append({**labels, "seed": run.seed, "return": metrics["return"]})
    if not rows:
        return None
    table = pd.DataFrame(rows)
    envs = sorted(table["env"].unique())
    fig, axes = plt.subplots(1, len(envs), figsize=(6.5 * len(envs), 2.6), squeeze=False)
    for ax, env in zip(axes[0], envs):
        mine = table[table["env"] == env]
        datasets = [d for d in ("random", "medium", "expert", "medium-replay", "medium-expert")
                    if d in set(mine["dataset"])]
        algos = [a for a in ALGO_LABELS if a in set(mine["algo"])]
        cells, means = [], np.full((len(datasets), len(algos)), np.nan)
        for i, dataset in enumerate(datasets):
            row = []
            for j, algo in enumerate(algos):
                values = mine[(mine["dataset"] == dataset) & (mine["algo"] == algo)].sort_values("seed")["return"]
                if len(values):
                    means[i, j] = values.mean()
                    row.append(f"{values.mean():.1f}\n({', '.join(f'{v:.0f}' for v in values)})")
                else:
                    row.append("")
            cells.append(row)
        sns.heatmap(means, annot=np.array(cells), fmt="", cmap="RdYlGn", vmin=-10, vmax=110, cbar=False, ax=ax,
                    xticklabels=[ALGO_LABELS[a] for a in algos], yticklabels=datasets, annot_kws={"fontsize": 8})
        ax.set_title(f"{env}: normalized return, mean (per seed)", fontsize=9)
    return save(fig, path)


def figures(runs, out_dir: Path) -> list[tuple[str, Path]]:
    out_dir = Path(out_dir)
    made: list[tuple[str, Path]] = []
    curves = _labelled_curves(runs)
    if curves.empty:
        return made
    learners = curves.dropna(subset=["algo"]) if "algo" in curves else curves.iloc[0:0]
    table = return_table(runs, out_dir / "bear_returns.png")
    if table is not None:
        made.append(("Normalized return (0: the uniform policy, 100: the expert snapshot, measured here on v5), "
                     "the mean of the last 3 evaluations per seed; each cell: the mean over seeds and each seed's "
                     "value", table))
    if not learners.empty:
        learners = learners.assign(panel=learners["env"] + " / " + learners["dataset"],
                                   algo=learners["algo"].map(ALGO_LABELS))
        bounds = {(r.record["labels"]["env"], r.record["labels"]["dataset"]): r.record["metrics"].get("q_bound")
                  for r in runs if "algo" in r.record["labels"]}
        q = learners.dropna(subset=["q_mean"]).copy()
        if not q.empty:
            q["Q / (r_max / (1 - gamma))"] = [value / bounds[(e, d)] for value, e, d in
                                              zip(q["q_mean"], q["env"], q["dataset"])]
            grid = sns.relplot(data=q, x="step", y="Q / (r_max / (1 - gamma))", hue="algo", col="panel", col_wrap=3,
                               kind="line", errorbar=("pi", 100), height=2.8, aspect=1.3, facet_kws={"sharey": False})
            for ax in grid.axes.flat:
                ax.set_yscale("symlog", linthresh=0.01)
                ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
            grid.figure.suptitle("Mean Q on the data's (s, a) over the return bound (dashed: the bound)", y=1.03)
            made.append(("The critics' mean Q on minibatches of the dataset, divided by r_max / (1 - gamma) (symmetric "
                         "log axis; above the dashed line no trajectory could earn it). Mean over seeds, band: the "
                         "seeds' range", save(grid.figure, out_dir / "bear_q_values.png")))
        scores = learners.dropna(subset=["eval_score"])
        if not scores.empty:
            grid = sns.relplot(data=scores, x="step", y="eval_score", hue="algo", col="panel", col_wrap=3, kind="line",
                               errorbar=("pi", 100), height=2.8, aspect=1.3, facet_kws={"sharey": False})
            made.append(("Normalized return of each evaluation during training (mean over seeds, band: the seeds' range)",
                         save(grid.figure, out_dir / "bear_eval_returns.png")))
        dual = learners[learners["algo"] == ALGO_LABELS["bear"]].dropna(subset=["constraint"])
        if not dual.empty:
            long = dual.rename(columns={"constraint": "MMD"}).melt(
                id_vars=["step", "panel", "seed"], value_vars=["MMD", "alpha"], var_name="quantity")
            grid = sns.relplot(data=long, x="step", y="value", hue="panel", row="quantity", kind="line",
                               errorbar=("pi", 100), height=2.6, aspect=2.6, facet_kws={"sharey": False})
            for ax in grid.axes.flat:
                ax.set_yscale("log")
            grid.axes.flat[0].axhline(0.05, color="black", linestyle="--", linewidth=1)
            made.append(("BEAR (MMD): the sampled MMD on pre-tanh actions, and alpha = exp(log alpha) from the dual "
                         "step (clamped at e^10); dashed: epsilon = 0.05. Mean over seeds, band: the seeds' range",
                         save(grid.figure, out_dir / "bear_constraint_alpha.png")))
    behaviour = curves.dropna(subset=["behaviour_eval_return"]) if "behaviour_eval_return" in curves else None
    if behaviour is not None and not behaviour.empty:
        grid = sns.relplot(data=behaviour, x="step", y="behaviour_eval_return", col="env", kind="line", marker="o",
                           height=2.8, aspect=1.4, facet_kws={"sharey": False})
        made.append(("The behaviour SAC runs (one per environment, seed 0): the deterministic return of each "
                     "snapshot; medium is the first at a third of the best, expert the best",
                     save(grid.figure, out_dir / "bear_behaviour.png")))
    return made
