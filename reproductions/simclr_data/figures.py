"""Report figures for the SimCLR data study, one per question, each with the paper's finding in its caption:
the size curve, the label curve, the domain table, the corruption plot and the granularity table."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from common.plots import save
from reproductions.simclr_data.runner import CORRUPTED, SIMCLR_SETS, SIZES

METHOD_NAMES = {"simclr": "SimCLR", "supervised": "supervised", "untrained": "untrained"}
DOMAIN_SETS = ("cifar20k", "cifar10k+ood10k", "cifar20k+ood20k", "cifar40k", "fmnist40k")
CLEAN_PSNR = 40.0  # where the corruption plot draws the uncorrupted pool


def _metrics(runs) -> pd.DataFrame:
    """One row per run: its point labels, seed, labelled-image count (config `labels`) and metrics."""
    rows = [{**run.record["labels"], "seed": run.seed, "n_labels": run.record["config"].get("labels"),
             **run.record["metrics"]} for run in runs if run.record.get("labels")]
    return pd.DataFrame(rows)


def _mean_range(values: pd.Series) -> str:
    return f"{values.mean():.1f} [{values.min():.1f}, {values.max():.1f}]" if len(values) else "not run"


def figures(runs, out_dir: Path) -> list:
    table = _metrics(runs)
    if table.empty or "stage" not in table:
        return []
    out = Path(out_dir)
    items = []
    probes = table[table["stage"] == "probe"]
    simclr_probes = probes[probes["method"] == "simclr"]

    sizes = simclr_probes[simclr_probes["data"].isin(SIZES)].assign(images=lambda d: d["data"].map(SIZES))
    if not sizes.empty:
        fig, ax = plt.subplots(figsize=(4.2, 3.0))
        sns.lineplot(data=sizes, x="images", y="cifar10_accuracy", errorbar=("pi", 100), marker="o", ax=ax)
        sns.scatterplot(data=sizes, x="images", y="cifar10_accuracy", color="grey", s=12, ax=ax, legend=False)
        ax.set(xscale="log", xlabel="pretraining images (CIFAR-10, fixed steps)", ylabel="linear probe accuracy (%)")
        items.append(("Question 1, how much data: the CIFAR-10 linear probe against the number of pretraining images "
                      "(every seed as a dot; the line is their mean, the band their range). The paper (Fig. 1): more "
                      "images help, with modest gains beyond 500k",
                      save(fig, out / "simclr_data_size.png")))

    labels = _label_curve(table)
    if not labels.empty:
        fig, ax = plt.subplots(figsize=(4.6, 3.2))
        sns.lineplot(data=labels, x="labels", y="accuracy", hue="method", errorbar=("pi", 100), marker="o", ax=ax)
        ax.set(xscale="log", xlabel="labelled CIFAR-10 images", ylabel="accuracy (%)")
        items.append(("Question 2, how many labels: the SimCLR encoder (40k pool) with a linear probe and fine-tuned, "
                      "against the same network trained from scratch, at 250 to 40,000 labels (mean over seeds, band: "
                      "their range). The paper (Fig. 2): with few labels pretraining is far ahead; with many its "
                      "advantage shrinks, and a linear probe stays below supervised training",
                      save(fig, out / "simclr_data_labels.png")))

    domains = simclr_probes[simclr_probes["data"].isin(DOMAIN_SETS)]
    if not domains.empty:
        rows = []
        for tag in DOMAIN_SETS:
            runs_of = domains[domains["data"] == tag]
            images = SIMCLR_SETS[tag]["images"]
            rows.append({"pretraining set": tag, "CIFAR-10": images["cifar10"],
                         "out of domain": images["fashion_mnist"] + images["mnist"],
                         "CIFAR-10 probe (%)": _mean_range(runs_of.get("cifar10_accuracy", pd.Series(dtype=float)).dropna()),
                         "Fashion-MNIST probe (%)": _mean_range(
                             runs_of.get("fashion_mnist_accuracy", pd.Series(dtype=float)).dropna()),
                         "seeds": len(runs_of)})
        items.append(("Question 3, which domain: linear-probe accuracy (mean [min, max] over seeds) by pretraining set; "
                      "out-of-domain images are Fashion-MNIST and MNIST in equal parts. The paper (Table 2): "
                      "adding images from other domains does not help, and a pooled set is worse than an in-domain "
                      "set of the same size", pd.DataFrame(rows)))

    corrupted = _corruption_table(table)
    if not corrupted.empty:
        grid = sns.relplot(data=corrupted, x="psnr", y="cifar10_accuracy", hue="corruption", col="method",
                           kind="line", marker="o", errorbar=("pi", 100), height=3.0, aspect=1.2)
        grid.set_axis_labels("pretraining images' PSNR (dB)", "linear probe accuracy (%)")
        items.append(("Question 4, how clean: the linear probe (on clean CIFAR-10 images) against the corruption of the "
                      "pretraining images, for SimCLR and supervised pretraining; salt-and-pepper rates are matched "
                      "in mean squared error to 2x and 4x downsampling, and the clean pool is drawn at 40 dB. The "
                      "paper (Fig. 4): SSL suffers far more than supervised learning from corrupted images, "
                      "and far more from lower resolution than from salt-and-pepper noise",
                      save(grid.figure, out / "simclr_data_corruption.png")))

    curves = _pretraining_curves(runs)
    if not curves.empty:
        grid = sns.relplot(data=curves, x="step", y="value", hue="data", col="measure", kind="line",
                           errorbar=("pi", 100), height=3.0, aspect=1.3, facet_kws={"sharey": False})
        grid.set_axis_labels("SimCLR step", "")
        items.append(("SimCLR pretraining: the NT-Xent loss and how often a view's nearest other view is its positive, "
                      "per pretraining set (mean over seeds, band: their range)",
                      save(grid.figure, out / "simclr_data_pretraining.png")))

    granularity = _granularity_table(table)
    if granularity is not None:
        items.append(("Question 5, how fine: supervised training against the SimCLR linear probe on the fine classes "
                      "and on the coarse groups (both trained on the fine classes; mean [min, max] over seeds). The "
                      "paper (Fig. 5): the SSL-supervised gap grows as the labels get finer", granularity))
    return items


def _pretraining_curves(runs) -> pd.DataFrame:
    frames = []
    for run in runs:
        labels = run.record.get("labels") or {}
        if labels.get("stage") != "pretrain" or labels.get("method") != "simclr":
            continue
        curves = run.curves()
        if "positive_top1" not in curves:
            continue
        long = curves.melt(id_vars="step", value_vars=["loss", "positive_top1"], var_name="measure").dropna()
        frames.append(long.assign(seed=run.seed, data=labels["data"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _label_curve(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    probe = table[(table["stage"] == "probe") & (table["method"] == "simclr") & (table["data"] == "cifar40k")]
    for _, run in probe.iterrows():
        for n in (250, 1000, 4000):
            if pd.notna(run.get(f"cifar10_accuracy_{n}")):
                rows.append({"labels": n, "accuracy": run[f"cifar10_accuracy_{n}"], "method": "SimCLR + linear probe"})
        rows.append({"labels": 40_000, "accuracy": run["cifar10_accuracy"], "method": "SimCLR + linear probe"})
    for _, run in table[table["stage"] == "finetune"].iterrows():
        rows.append({"labels": run["n_labels"], "accuracy": run["cifar10_accuracy"], "method": "SimCLR + fine-tuning"})
    scratch = ("cifar250", "cifar1k", "cifar4k", "cifar40k")
    supervised = table[(table["stage"] == "pretrain") & (table["method"] == "supervised") & table["data"].isin(scratch)]
    for _, run in supervised.iterrows():
        rows.append({"labels": run["n_labels"], "accuracy": run["cifar10_accuracy"], "method": "from scratch"})
    return pd.DataFrame(rows)


def _corruption_table(table: pd.DataFrame) -> pd.DataFrame:
    """Probe accuracy by corruption strength, the PSNR its pretraining runs recorded; the clean pool (at
    CLEAN_PSNR) starts both corruptions' lines."""
    pretrain = table[(table["stage"] == "pretrain") & table["data"].isin(CORRUPTED)]
    psnr = pretrain.groupby("data")["corruption_psnr"].mean() if "corruption_psnr" in pretrain else pd.Series(dtype=float)
    rows = []
    probes = table[(table["stage"] == "probe") & table["method"].isin(["simclr", "supervised"])]
    for _, run in probes[probes["data"].isin(["cifar40k", *CORRUPTED])].iterrows():
        if run["data"] == "cifar40k":
            points = [("salt-and-pepper", CLEAN_PSNR), ("downsampling", CLEAN_PSNR)]
        elif run["data"] in psnr:
            kind = "salt-and-pepper" if CORRUPTED[run["data"]]["corruption"] == "salt_pepper" else "downsampling"
            points = [(kind, psnr[run["data"]])]
        else:
            continue
        rows += [{"method": METHOD_NAMES[run["method"]], "corruption": kind, "seed": run["seed"], "psnr": level,
                  "cifar10_accuracy": run["cifar10_accuracy"]} for kind, level in points]
    return pd.DataFrame(rows)


def _granularity_table(table: pd.DataFrame) -> pd.DataFrame | None:
    rows = []
    for source, tag, fine_name, coarse_name in (("cifar10", "cifar40k", "10 classes", "2 groups"),
                                                ("fashion_mnist", "fmnist40k", "10 classes", "5 groups")):
        supervised = table[(table["stage"] == "pretrain") & (table["method"] == "supervised") & (table["data"] == tag)]
        probe = table[(table["stage"] == "probe") & (table["method"] == "simclr") & (table["data"] == tag)]
        if supervised.empty or probe.empty or f"{source}_accuracy" not in probe:
            continue
        for level, metric in ((fine_name, f"{source}_accuracy"), (coarse_name, f"{source}_coarse_accuracy")):
            paired = supervised.set_index("seed")[metric] - probe.set_index("seed")[metric]
            rows.append({"dataset": source, "label set": level,
                         "supervised (%)": _mean_range(supervised[metric]), "SimCLR probe (%)": _mean_range(probe[metric]),
                         "gap (points)": _mean_range(paired.dropna())})
    return pd.DataFrame(rows) if rows else None
