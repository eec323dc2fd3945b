"""Report figures for AEVB: Figure 2's lower-bound curves on the paper's axes, samples from each
trained model, and the learned 2-D manifolds (Figs. 4-5)."""
from __future__ import annotations

import math
from pathlib import Path

from common.plots import curve_plot, image_grid
from common.records import all_curves, first_arrays

# Figure 2's axes: x from 1e5 training samples (log), y as the paper plots it
AXES = {"mnist": ("MNIST", (-150, -100)), "frey": ("Frey Face", (0, 1600))}


def _y_range(paper_ylim: tuple[int, int], final_values) -> tuple[int, int]:
    """The paper's y-axis, stretched down (in steps of 10) so that every curve's end point is on it."""
    lowest = min(final_values, default=paper_ylim[0])
    return (min(paper_ylim[0], 10 * math.floor(lowest / 10)), paper_ylim[1])


def figures(runs, out_dir: Path) -> list[tuple[str, Path]]:
    out_dir = Path(out_dir)
    made: list[tuple[str, Path]] = []
    curves = all_curves(runs)
    if {"dataset", "nz", "elbo_train", "elbo_test"} <= set(curves.columns):
        long = curves.melt(id_vars=["step", "seed", "dataset", "nz"], value_vars=["elbo_train", "elbo_test"],
                           var_name="split", value_name="lower bound")
        long = long.assign(split=long["split"].map({"elbo_train": "train", "elbo_test": "test"}),
                           Nz=long["nz"].astype(int)).rename(columns={"step": "training samples evaluated"})
        for dataset, (title, paper_ylim) in AXES.items():
            subset = long[long["dataset"] == dataset]
            if subset.empty:
                continue
            ends = subset[subset["training samples evaluated"] == subset["training samples evaluated"].max()]
            ylim = _y_range(paper_ylim, ends["lower bound"])
            n_seeds = subset["seed"].nunique()
            path = curve_plot(subset, x="training samples evaluated", y="lower bound", hue="split", col="Nz",
                              logx=True, ylim=ylim,
                              path=out_dir / f"vae_{dataset}_figure2.png",
                              title=f"{title}: lower bound per datapoint vs training samples evaluated")
            made.append((f"Figure 2, {title}: the variational lower bound per datapoint on the training subset "
                         f"and the test set against the number of training samples evaluated (log scale; mean of "
                         f"{n_seeds} seed(s), band: range of the seeds), on the paper's y-axis {paper_ylim[0]} … {paper_ylim[1]}"
                         + (f", extended down to {ylim[0]} to show every curve's end" if ylim != paper_ylim else "")
                         + ".", path))

    config = runs[0].config if runs else {}
    for dataset, (name, _) in AXES.items():
        for nz in config.get(f"{dataset}_latents", []):
            found = first_arrays(runs, f"{dataset}_nz{nz}")
            if found is None:
                continue
            seed, arrays = found
            path = image_grid(arrays["samples"][:32], out_dir / f"vae_{dataset}_nz{nz}_samples.png", ncols=16,
                              cell=0.6, suptitle=f"{name}, Nz = {nz}: decoder means of z ~ N(0, I) (seed {seed})")
            made.append((f"{name}, Nz = {nz}: decoder means for random draws from the prior (seed {seed}).", path))
            if "manifold" in arrays:
                grid = arrays["manifold"]
                side = grid.shape[0]
                path = image_grid(grid.reshape(side * side, *grid.shape[2:]),
                                  out_dir / f"vae_{dataset}_nz{nz}_manifold.png", ncols=side, cell=0.45,
                                  suptitle=f"{name}: learned 2-D manifold (seed {seed})")
                made.append((f"{name}, Nz = 2: decoder means over a grid of latent values through the inverse "
                             "Gaussian CDF, as in the paper's Figure 4.", path))
    return made
