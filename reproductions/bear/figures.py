"""Report figures for BEAR: the normalized-return table (dataset x algorithm, per environment), the
critics' Q-values against the return bound on a symmetric-log axis (Fig. 1's divergence), the MMD and
alpha of BEAR's dual step, the returns over training, and the behaviour policies' learning curves."""
from __future__ import annotations

from pathlib import Path

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


def return_table(runs) -> pd.DataFrame | None:
    """Normalized return per environment x dataset (rows) and algorithm (columns): the mean over seeds,
    then each seed's value in seed order."""
    rows = []
    for run in runs:
        labels, metrics = run.record["labels"], run.record["metrics"]
        if "algo" in labels and "return" in metrics:
            rows.append({**labels, "seed": run.seed, "return": metrics["return"]})
    if not rows:
        return None
    table = pd.DataFrame(rows).sort_values("seed")
    order = {d: i for i, d in enumerate(("random", "medium", "expert", "medium-replay", "medium-expert"))}
    cells = []
    for (env, dataset), mine in sorted(table.groupby(["env", "dataset"]), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        row = {"environment": env, "dataset": dataset}
        for algo, label in ALGO_LABELS.items():
            values = mine[mine["algo"] == algo]["return"]
            row[label] = f"{values.mean():.1f} ({', '.join(f'{v:.0f}' for v in values)})" if len(values) else "—"
        cells.append(row)
    return pd.DataFrame(cells)


def figures(runs, out_dir: Path) -> list[tuple[str, Path | pd.DataFrame]]:
    out_dir = Path(out_dir)
    made: list[tuple[str, Path]] = []
    curves = _labelled_curves(runs)
    if curves.empty:
        return made
    learners = curves.dropna(subset=["algo"]) if "algo" in curves else curves.iloc[0:0]
    table = return_table(runs)
    if table is not None:
        made.append(("Normalized return (0: the uniform policy, 100: the expert snapshot, both measured here on v5), "
                     "the mean of the last 3 evaluations of each run; each cell: the mean over seeds, then each "
                     "seed's value", table))
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
