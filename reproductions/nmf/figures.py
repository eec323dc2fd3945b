"""Report figures for Lee & Seung NMF: objective curves per rule, and NMF vs PCA basis images."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from common.plots import curve_plot, image_grid
from common.records import all_curves, first_arrays

RULE_NAMES = {"euclidean": "Euclidean ‖V−WH‖²", "kl": "KL divergence D(V‖WH)"}
DATA_NAMES = {"faces": "CBCL faces", "synthetic": "synthetic V = W₀H₀ + noise"}


def _thin(curves: pd.DataFrame, points: int = 150) -> pd.DataFrame:
    """Keep ~`points` log-spaced steps per series: thousands of steps per series make slow, unreadable plots."""
    steps = np.unique(curves["step"].to_numpy())
    if len(steps) <= points:
        return curves
    grid = np.unique(np.round(np.geomspace(1, steps.max(), points)).astype(int))
    keep = np.union1d(steps[np.searchsorted(steps, grid).clip(0, len(steps) - 1)], [0, steps.max()])
    return curves[curves["step"].isin(keep)]


def figures(runs, out_dir: Path) -> list[tuple[str, Path]]:
    out_dir = Path(out_dir)
    made: list[tuple[str, Path]] = []
    runs = sorted(runs, key=lambda r: r.seed)

    curves = all_curves(runs)
    if {"rule", "data", "objective"} <= set(curves.columns):
        curves = _thin(curves)
        curves = curves.assign(rule=curves["rule"].map(RULE_NAMES).fillna(curves["rule"]))
        n_seeds = curves["seed"].nunique()
        for data in sorted(curves["data"].unique()):
            subset = curves[curves["data"] == data]
            path = curve_plot(subset, y="objective", col="rule", logy=True,
                              path=out_dir / f"nmf_{data}_objective.png",
                              title=f"{DATA_NAMES.get(data, data)}: objective per iteration")
            made.append((f"{DATA_NAMES.get(data, data)}: the objective of each multiplicative rule against "
                         f"iterations (log scale; mean of {n_seeds} seed(s), band: range of the seeds). Theorems 1 and 2 say "
                         "neither curve may ever rise.", path))

    found = first_arrays(runs, "bases")
    if found is not None:
        seed, arrays = found
        panels = [("nmf_kl", "NMF, KL rule", False), ("nmf_euclidean", "NMF, Euclidean rule", False),
                  ("pca", "PCA (eigenfaces)", True)]
        for key, title, signed in panels:
            if key not in arrays:
                continue
            images = arrays[key]
            ncols = math.ceil(math.sqrt(len(images)))
            path = image_grid(images, out_dir / f"nmf_bases_{key}.png", ncols=ncols,
                              cmap="RdBu_r" if signed else "gray_r", symmetric=signed,
                              suptitle=f"{title}: {len(images)} basis images (seed {seed})")
            if signed:
                caption = (f"PCA basis images of the CBCL faces (seed {seed}; red positive, blue negative): "
                           "holistic, every pixel used, as in Fig. 1 of Lee & Seung (1999).")
            else:
                caption = (f"{title} basis images (columns of W) of the CBCL faces (seed {seed}; dark = "
                           "large): localized parts, most pixels near zero, as in Fig. 1 of Lee & Seung (1999).")
            made.append((caption, path))
    return made
