"""Figures of the GRAN report, drawn from run records (common.records.LoadedRun): training curves, sample
grids, the canvas after each step (the paper's step-by-step drawing figure) and the GAM battle table.

Curves average over seeds; pictures come from the first seed that saved them; the battle table shows
each seed's ratios and the mean over seeds. A figure whose arrays are missing is skipped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.plots import curve_plot, plt, save
from common.records import all_curves, first_arrays
from reproductions.gran.runner import RATIO_CAP


def _as_image(img: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 -> (H, W) or (H, W, 3) for imshow."""
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def _samples(arrays: dict, path: Path) -> Path:
    names = list(arrays)
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.9), squeeze=False)
    for ax, name in zip(axes[0], names):
        imgs = arrays[name][:64]
        k = int(np.ceil(np.sqrt(len(imgs))))
        c, h, w = imgs.shape[1:]
        grid = np.zeros((c, k * h, k * w), dtype=np.uint8)
        for i, img in enumerate(imgs):
            grid[:, (i // k) * h:(i // k + 1) * h, (i % k) * w:(i % k + 1) * w] = img
        ax.imshow(_as_image(grid), cmap="gray", vmin=0, vmax=255)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle("Samples (the same z for every model; first seed)", fontsize=10)
    return save(fig, path)


def _drawing(arrays: dict, path: Path) -> Path:
    """One panel per GRAN: rows are images, columns the canvas after step 1..T."""
    names = sorted(arrays, key=lambda n: int(n.removeprefix("gran")))
    rows = min(6, arrays[names[0]].shape[1])
    cols = sum(arrays[n].shape[0] for n in names) + len(names) - 1
    fig, axes = plt.subplots(rows, cols, figsize=(0.9 * cols, 0.95 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    col = 0
    for name in names:
        steps = arrays[name]  # (T, N, C, H, W)
        for t in range(steps.shape[0]):
            for r in range(rows):
                axes[r, col].imshow(_as_image(steps[t, r]), cmap="gray", vmin=0, vmax=255)
            axes[0, col].set_title(f"{name}\nt={t + 1}" if t == 0 else f"t={t + 1}", fontsize=7)
            col += 1
        col += 1
    fig.suptitle("The image after each step, (tanh(Σ_{s≤t} ΔC_s) + 1)/2 (first seed)", fontsize=10)
    return save(fig, path)


def _winner(arrays: dict, i: int) -> str:
    if "valid" in arrays and not bool(arrays["valid"][i]):
        return "invalid"
    return {0: "tie", 1: str(arrays["m1"][i]), 2: str(arrays["m2"][i])}[int(arrays["winner"][i])]


def battle_table(runs) -> pd.DataFrame:
    """One row per battle: r_test, r_sample and winner per seed, and the mean ratios over seeds."""
    rows = []
    for run in sorted(runs, key=lambda r: r.seed):
        arrays = run.arrays("battles")
        if not arrays:
            continue
        for i in range(len(arrays["m1"])):
            rows.append({"M1": str(arrays["m1"][i]), "M2": str(arrays["m2"][i]), "seed": run.seed,
                         "r_test": float(arrays["r_test"][i]), "r_sample": float(arrays["r_sample"][i]),
                         "winner": _winner(arrays, i)})
    return pd.DataFrame(rows)


def _fmt(r: float) -> str:
    return "inf" if r >= RATIO_CAP else f"{r:.3f}"


def _table_figure(table: pd.DataFrame, path: Path) -> Path:
    grouped = table.groupby(["M1", "M2"], sort=False)
    summary = grouped.agg(r_test=("r_test", "mean"), r_sample=("r_sample", "mean"),
                          winners=("winner", lambda w: ", ".join(w))).reset_index()
    cells = [[r.M1, r.M2, _fmt(r.r_test), _fmt(r.r_sample), r.winners] for r in summary.itertuples()]
    n_seeds = table["seed"].nunique()
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(cells) + 0.9))
    ax.axis("off")
    tab = ax.table(cellText=cells, colLabels=["M1", "M2", f"r_test (mean of {n_seeds})",
                                              f"r_sample (mean of {n_seeds})", "winner per seed"],
                   loc="center", cellLoc="center", colWidths=[0.14, 0.14, 0.15, 0.15, 0.42])
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    tab.scale(1, 1.3)
    ax.set_title("GAM battles: r_test = ε(D1(x_test))/ε(D2(x_test)), r_sample = ε(D1(G2(z)))/ε(D2(G1(z)));\n"
                 "M1 wins if r_sample < 1 and |r_test − 1| ≤ tol, M2 if r_sample > 1", fontsize=9)
    return save(fig, path)


def figures(runs, out_dir: Path) -> list[tuple[str, Path]]:
    out_dir = Path(out_dir)
    figs = []
    curves = all_curves(runs)
    if "model" in curves:
        long = curves.melt(id_vars=["step", "model", "seed"], value_vars=["loss_d", "loss_g"], var_name="loss")
        figs.append(("Discriminator and generator losses per model (mean over seeds, 95% CI)",
                     curve_plot(long, y="value", hue="model", col="loss", path=out_dir / "gran_losses.png",
                                title="adversarial losses")))
    samples = (first_arrays(runs, "samples") or (None, None))[1]
    if samples:
        figs.append(("Samples of every model from the same 64 noise vectors (first seed)",
                     _samples(samples, out_dir / "gran_samples.png")))
    drawing = (first_arrays(runs, "drawing") or (None, None))[1]
    if drawing:
        figs.append(("Step-by-step drawing (Fig. 3 style): the image after each canvas step for each GRAN",
                     _drawing(drawing, out_dir / "gran_drawing.png")))
    table = battle_table(runs)
    if not table.empty:
        figs.append(("GAM battle table (§4, Tables 2-3 style): mean ratios over seeds and the winner per seed",
                     _table_figure(table, out_dir / "gran_battles.png")))
    return figs
