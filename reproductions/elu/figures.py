"""Report figures for ELU: Fig. 2 (MNIST: median unit activation and training cross-entropy against
epochs), Fig. 3 (autoencoder reconstruction error against epochs, one panel per learning rate) and
Fig. 4 (CNN training loss of ELU and ReLU, with and without batch norm)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.plots import curve_plot, image_grid
from common.records import all_curves, first_arrays
from reproductions.elu.runner import lr_tag


def figures(runs, out_dir: Path) -> list[tuple[str, Path]]:
    out_dir = Path(out_dir)
    made: list[tuple[str, Path]] = []
    curves = all_curves(runs)
    if "experiment" not in curves.columns:
        return made
    curves = curves.assign(experiment=curves["experiment"].astype(str), model=curves["model"].astype(str))
    n_seeds = curves["seed"].nunique()

    activation = curves[curves["experiment"] == "mnist_activation"]
    if not activation.empty:
        # Fig. 2a: per layer the median over units of each unit's mean activation; here also averaged over layers
        mean_over_layers = (activation.groupby(["seed", "model", "step", "epoch"], as_index=False)["median_activation"]
                            .mean().rename(columns={"median_activation": "median unit activation"}))
        path = curve_plot(mean_over_layers, x="epoch", y="median unit activation", hue="model",
                          path=out_dir / "elu_mnist_activation.png",
                          title="MNIST 8×128: median (over units) mean activation, averaged over the 8 layers")
        made.append((f"Figure 2a: MNIST, 8 hidden layers of 128 units. Each unit's mean activation on 1,000 fixed "
                     f"training images, the median over a layer's units, averaged over the 8 layers, against "
                     f"epochs (mean of {n_seeds} seed(s), band: range of the seeds). The paper's claim: ELU stays closest to zero.",
                     path))
        per_layer = activation.rename(columns={"median_activation": "median unit activation"})
        path = curve_plot(per_layer[per_layer["layer"].isin([1, 4, 8])], x="epoch", y="median unit activation",
                          hue="model", col="layer", path=out_dir / "elu_mnist_activation_layers.png",
                          title="MNIST 8×128: median unit activation in layers 1, 4 and 8")
        made.append(("Figure 2a by layer: the same statistic in the first, fourth and last hidden layer.", path))

    mnist = curves[curves["experiment"] == "mnist"]
    if not mnist.empty:
        path = curve_plot(mnist.rename(columns={"train_loss": "training cross-entropy"}), x="epoch",
                          y="training cross-entropy", hue="model", logy=True, path=out_dir / "elu_mnist_loss.png",
                          title="MNIST 8×128: training cross-entropy vs epochs (SGD, lr 0.01)")
        made.append((f"Figure 2b: MNIST training cross-entropy (on a fixed training subset) against epochs, log "
                     f"scale (mean of {n_seeds} seed(s), band: range of the seeds).", path))

    ae = curves[curves["experiment"] == "ae"]
    if not ae.empty:
        baseline = {"baseline": "mean_image_mse"} if "mean_image_mse" in ae.columns else {}
        path = curve_plot(ae.assign(lr=ae["lr"].astype(str)).rename(columns={"test_mse": "test reconstruction MSE"}),
                          x="epoch", y="test reconstruction MSE", hue="model", col="lr", logy=True, **baseline,
                          path=out_dir / "elu_autoencoder.png",
                          title="MNIST autoencoder 1000-500-250-30: test reconstruction error vs epochs")
        made.append((f"Figure 3: the MNIST autoencoder's test reconstruction error (mean squared error per pixel) "
                     f"against epochs, one panel per SGD learning rate (mean of {n_seeds} seed(s), band: range of the seeds); dashed where "
                     f"recorded: the error of predicting the mean training image.", path))
        for lr in sorted(ae["lr"].astype(float).unique(), reverse=True):
            tag = lr_tag(lr)
            rows, titles, seed = [], [], None
            for act in sorted(ae["model"].unique()):
                found = first_arrays(runs, f"ae_lr{tag}_{act}")
                if found is None:
                    continue
                seed, arrays = found
                if not rows:
                    rows.append(arrays["originals"][:8])
                    titles += ["test image"] * 8
                rows.append(arrays["reconstructions"][:8])
                titles += [act] * 8
            if rows:
                path = image_grid(np.concatenate(rows), out_dir / f"elu_autoencoder_lr{tag}_reconstructions.png",
                                  ncols=8, titles=titles, cell=0.8,
                                  suptitle=f"Autoencoder, lr {lr:g}: test images and reconstructions (seed {seed})")
                made.append((f"The autoencoder at lr {lr:g}: eight test images (top row) and each activation's "
                             f"reconstruction of them at the end of training (seed {seed}).", path))

    compare = curves[curves["experiment"] == "compare"]
    if not compare.empty:
        path = curve_plot(compare.rename(columns={"train_loss": "training loss"}), x="epoch", y="training loss",
                          hue="model", path=out_dir / "elu_cnn_loss.png",
                          title="CNN: training loss of ELU and ReLU, with (_bn) and without batch norm")
        made.append((f"Figure 4 at this tier's scale: the CNN's training loss (mean minibatch cross-entropy between "
                     f"logged points) against epochs for ELU and ReLU, each with and without batch norm (mean of "
                     f"{n_seeds} seed(s), band: range of the seeds).", path))
    return made
