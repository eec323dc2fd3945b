"""Report figures for the GAN: samples beside their nearest training images (Fig. 2), D(x) on real and
generated data during training for both generator losses, and the Parzen log-likelihood per epoch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.plots import curve_plot, image_grid

LOSS_NAMES = {"non_saturating": "non-saturating: max log D(G(z))", "saturating": "saturating: min log(1 − D(G(z)))"}


def figures(runs, out_dir: Path) -> list[tuple[str, Path]]:
    out_dir = Path(out_dir)
    made: list[tuple[str, Path]] = []
    runs = sorted(runs, key=lambda r: r.seed)

    arrays = next((a for a in (r.arrays("samples") for r in runs) if a is not None), None)
    if arrays is not None:
        seed = next(r.seed for r in runs if r.arrays("samples") is not None)
        samples, neighbours = arrays["samples"].astype(np.float32), arrays["neighbours"].astype(np.float32)
        pairs = np.stack([samples, neighbours], axis=1).reshape(-1, *samples.shape[1:])
        titles = [t for d in arrays["distances"] for t in ("sample", f"NN {d:.1f}")]
        path = image_grid(pairs, out_dir / "gan_samples_nearest.png", ncols=12, titles=titles, cmap="gray",
                          suptitle=f"GAN samples (left) and their nearest training image (right), seed {seed}")
        made.append((f"Generated MNIST digits (seed {seed}), each followed by its nearest training image in L2 "
                     "distance (shown above it), as in Fig. 2 of the paper: the samples are not copies of the "
                     "training set.", path))

    frames = [r.curves() for r in runs]
    frames = [f for f in frames if not f.empty and {"d_real", "d_fake", "loss"} <= set(f.columns)]
    if frames:
        curves = pd.concat(frames, ignore_index=True).dropna(subset=["d_real", "d_fake"])
        long = curves.melt(id_vars=["step", "seed", "loss"], value_vars=["d_real", "d_fake"], var_name="input",
                           value_name="D")
        long = long.assign(loss=long["loss"].map(LOSS_NAMES).fillna(long["loss"]),
                           input=long["input"].map({"d_real": "real x", "d_fake": "G(z)"}))
        n_seeds = long["seed"].nunique()
        path = curve_plot(long, y="D", hue="input", col="loss", path=out_dir / "gan_d_outputs.png",
                          title="mean D(x) on the training minibatch (with dropout)")
        made.append(("Mean discriminator output on real minibatches and on generated ones during training, for "
                     f"the non-saturating loss the paper trains and the saturating loss of Eq. 1 (mean of {n_seeds} "
                     "seed(s), band: range of the seeds). At the equilibrium of §4 both go to 1/2.", path))

        parzen = [f.dropna(subset=["parzen_ll"]) for f in frames if "parzen_ll" in f.columns]
        parzen = pd.concat(parzen, ignore_index=True) if parzen else pd.DataFrame()
        if not parzen.empty:
            path = curve_plot(parzen, y="parzen_ll", x="epoch", path=out_dir / "gan_parzen_curve.png",
                              title="Parzen log-likelihood per epoch (part of the test set)")
            made.append(("Parzen-window log-likelihood of the generator after each epoch (σ re-selected on the "
                         "validation images each time, scored on the first test images; nats, higher is better; "
                         f"mean of {n_seeds} seed(s)). Table 1 reports 225 ± 2 at the end of training.", path))
    return made
