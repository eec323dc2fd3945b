"""Plot helpers shared by the papers' `figures.py` modules (matplotlib Agg + seaborn)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(style="whitegrid", context="paper")


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def curve_plot(curves: pd.DataFrame, y: str, path: Path, x: str = "step", hue: str | None = None,
               title: str = "", logy: bool = False, col: str | None = None, logx: bool = False,
               ylim: tuple[float, float] | None = None, style: str | None = None,
               baseline: str | None = None) -> Path:
    """Mean over seeds with the seeds' range as the band (min to max: with 3 seeds a bootstrap "95%"
    band would be that range under a wrong name, and costs a resampling per x), one line per `hue`,
    one panel per `col`. `baseline` names a column holding a
    reference level (e.g. a task's memoryless loss), drawn as a dashed black line in each panel."""
    grid = sns.relplot(data=curves, x=x, y=y, hue=hue, col=col, style=style, kind="line", errorbar=("pi", 100),
                       height=3.2, aspect=1.4, facet_kws={"sharey": False})
    if baseline is not None:
        for panel, ax in grid.axes_dict.items() if col else [(None, grid.ax)]:
            level = curves[baseline] if panel is None else curves.loc[curves[col] == panel, baseline]
            ax.axhline(level.dropna().iloc[0], color="black", linestyle="--", linewidth=1)
    if logy:
        grid.set(yscale="log")
    if logx:
        grid.set(xscale="log")
    if ylim is not None:
        grid.set(ylim=ylim)
    if title:
        grid.figure.suptitle(title, y=1.03)
    return save(grid.figure, path)


def image_grid(images: np.ndarray, path: Path, ncols: int = 7, titles: list[str] | None = None,
               cmap: str = "gray", suptitle: str = "", symmetric: bool = False, cell: float = 1.0) -> Path:
    """Draw a stack of 2-D images (N, H, W) as a grid, each scaled on its own."""
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    row_height = cell * (1.3 if titles else 1.0)  # room for each image's title above it
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * cell, nrows * row_height), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        image = images[i]
        if symmetric:
            bound = float(np.abs(image).max()) or 1.0
            ax.imshow(image, cmap=cmap, vmin=-bound, vmax=bound)
        else:
            ax.imshow(image, cmap=cmap)
        if titles:
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    return save(fig, path)
