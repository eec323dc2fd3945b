"""Report figures for Neural Networks with Few Multiplications: the test-error curves of every variant
per dataset, and the multiplications of one training step per variant (forward, backward, update)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from common.plots import curve_plot, save
from common.records import all_curves

DATASET_TITLES = {"mnist": "MNIST MLP", "cifar10": "CIFAR-10 CNN", "svhn": "SVHN CNN"}
PARTS = ("forward", "backward", "update")


def multiplication_chart(metrics: dict[str, float], dataset: str, variants: list[str], path: Path) -> Path:
    """Stacked bars (log scale) of the multiplications per training step, the total printed on each."""
    fig, ax = plt.subplots(figsize=(1.3 * len(variants) + 2, 3.4))
    positions = np.arange(len(variants))
    bottom = np.zeros(len(variants))
    for part in PARTS:
        counts = np.array([metrics[f"{dataset}_{v}_mults_{part}"] for v in variants])
        ax.bar(positions, counts, bottom=bottom, label=part)
        bottom += counts
    for x, v, total in zip(positions, variants, bottom):
        fraction = metrics[f"{dataset}_{v}_mults_fraction_of_full"]
        ax.text(x, total * 1.15, f"{total:.3g}\n({100 * fraction:.3g}%)", ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylim(bottom.min() / 5, bottom.max() * 20)
    ax.set_xticks(positions, variants, rotation=20, ha="right")
    ax.set_ylabel("multiplications per training step")
    ax.set_title(f"{DATASET_TITLES[dataset]}: multiplications per step (share of full precision)")
    ax.legend(fontsize=7, loc="upper right")
    return save(fig, path)


def figures(runs, out_dir: Path) -> list[tuple[str, Path]]:
    out_dir = Path(out_dir)
    made: list[tuple[str, Path]] = []
    curves = all_curves(runs)
    if {"dataset", "variant", "test_error"} <= set(curves.columns):
        for dataset, title in DATASET_TITLES.items():
            subset = curves[curves["dataset"] == dataset].rename(columns={"step": "epoch", "test_error": "test error (%)"})
            if subset.empty:
                continue
            n_seeds = subset["seed"].nunique()
            path = curve_plot(subset, x="epoch", y="test error (%)", hue="variant",
                              path=out_dir / f"binaryconnect_{dataset}_test_error.png",
                              title=f"{title}: test error per variant")
            made.append((f"{title}: test error (%) against epochs for each variant (mean of {n_seeds} seed(s), "
                         "band: range of the seeds); binary_stoch_qb is the paper's binary connect + QB, ternary_qb its ternary "
                         "connect + QB.", path))
    if runs:
        first = min(runs, key=lambda r: r.seed)
        config, metrics = first.config, first.record["metrics"]
        for dataset in DATASET_TITLES:
            variants = list(config.get(f"{dataset}_variants") or [])
            if not variants or f"{dataset}_{variants[0]}_mults_total" not in metrics:
                continue
            path = multiplication_chart(metrics, dataset, variants,
                                        out_dir / f"binaryconnect_{dataset}_multiplications.png")
            made.append((f"{DATASET_TITLES[dataset]}: multiplications in one training step (batch "
                         f"{config[f'{dataset}_batch']}), split into forward pass, backward pass and "
                         "update, by the counting rules of the README; the label is the total and its share of the "
                         "full-precision step's.", path))
    return made
