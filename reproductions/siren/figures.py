"""Figures of the SIREN report, drawn from run records (common.records.LoadedRun).

Curves average over seeds; pictures come from the first seed that saved them. A figure whose arrays
are missing is skipped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.plots import curve_plot, plt, save
from common.records import all_curves, first_arrays

MODEL_ORDER = ("gt", "siren", "relu_pe", "relu", "tanh")
NAMES = {"gt": "ground truth", "siren": "SIREN", "relu": "ReLU", "relu_pe": "ReLU P.E.", "tanh": "tanh"}


def _ordered(arrays: dict) -> list[str]:
    return [k for k in MODEL_ORDER if k in arrays] + sorted(k for k in arrays if k not in MODEL_ORDER
                                                            and arrays[k].ndim == 2)


def _psnr_curves(curves: pd.DataFrame, out_dir: Path) -> list[tuple[str, Path]]:
    figs = []
    if curves.empty or "task" not in curves:
        return figs
    specs = [("image", "psnr", "Image fitting (Fig. 1): PSNR of each model on camera.png vs step"),
             ("poisson", "psnr", "Fitting from gradients only (Poisson, Table 1): PSNR of the reconstruction "
                                 "(offset matched to the image mean) vs step"),
             ("audio", "snr_db", "Audio fitting (Fig. 3): SNR (dB) of the fitted waveform vs step")]
    for task, y, caption in specs:
        part = curves[curves["task"] == task]
        if part.empty or y not in part or part[y].isna().all():
            continue
        path = curve_plot(part.dropna(subset=[y]), y=y, hue="model", path=out_dir / f"siren_{task}_{y}.png",
                          title=f"{task}: {y} (mean over seeds, 95% CI)")
        figs.append((caption, path))
    return figs


def _image_grid(arrays: dict, path: Path, title: str, errors: bool) -> Path:
    keys = _ordered(arrays)
    gt = arrays["gt"].astype(np.float32) if "gt" in arrays else None
    rows = 2 if (errors and gt is not None) else 1
    fig, axes = plt.subplots(rows, len(keys), figsize=(2.3 * len(keys), 2.4 * rows), squeeze=False)
    for i, key in enumerate(keys):
        img = arrays[key].astype(np.float32)
        ax = axes[0, i]
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        ax.set_title(NAMES.get(key, key), fontsize=9)
        ax.axis("off")
        if rows == 2:
            ax = axes[1, i]
            ax.axis("off")
            if key != "gt":
                err = np.abs(img - gt) / 255.0
                ax.imshow(err, cmap="magma", vmin=0, vmax=0.25)
                ax.set_title(f"|error|, mean {err.mean():.3f}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def _derivatives(arrays: dict, path: Path) -> Path:
    """Row 1: gradient magnitude (image Sobel, SIREN ∇Φ, ReLU ∇Φ); row 2: Laplacians."""
    cols = [("sobel", "laplace_gt", "image (Sobel / discrete Laplacian)")]
    cols += [(f"grad_{k}", f"laplace_{k}", NAMES[k]) for k in ("siren", "relu") if f"grad_{k}" in arrays]
    fig, axes = plt.subplots(2, len(cols), figsize=(2.8 * len(cols), 5.6), squeeze=False)
    ref_g = np.hypot(*arrays["sobel"].astype(np.float32))
    g_max = float(np.percentile(ref_g, 99)) or 1.0
    ref_l = arrays["laplace_gt"].astype(np.float32)
    l_max = float(np.percentile(np.abs(ref_l), 98)) or 1.0
    for i, (g_key, l_key, name) in enumerate(cols):
        g = np.hypot(*arrays[g_key].astype(np.float32))
        lap = arrays[l_key].astype(np.float32)
        axes[0, i].imshow(g, cmap="gray", vmin=0, vmax=g_max)
        axes[0, i].set_title(f"{name}\n|∇|", fontsize=8)
        axes[1, i].imshow(lap, cmap="RdBu", vmin=-l_max, vmax=l_max)
        axes[1, i].set_title(f"Δ (mean |Δ| = {np.abs(lap).mean():.3g})", fontsize=8)
        for ax in axes[:, i]:
            ax.axis("off")
    fig.suptitle("Derivatives of the fitted image (per-pixel units, same colour scale per row)", fontsize=10)
    return save(fig, path)


def _audio(arrays: dict, path: Path) -> Path:
    models = [k for k in ("siren", "relu_pe", "relu", "tanh") if k in arrays]
    gt = arrays["gt"].astype(np.float32)
    rate = float(arrays["rate"]) if "rate" in arrays else 44100.0
    time_ms = np.arange(len(gt)) / rate * 1e3
    zoom = slice(len(gt) // 2, len(gt) // 2 + min(len(gt) // 2, int(0.01 * rate)))  # 10 ms window
    fig, axes = plt.subplots(len(models) + 1, 2, figsize=(10, 1.6 * (len(models) + 1)), squeeze=False,
                             sharey=True)
    axes[0, 0].plot(time_ms, gt, lw=0.4, color="k")
    axes[0, 0].set_title("ground truth (whole fitted window)", fontsize=8)
    axes[0, 1].plot(time_ms[zoom], gt[zoom], lw=0.8, color="k")
    axes[0, 1].set_title("10 ms zoom", fontsize=8)
    for i, key in enumerate(models, start=1):
        pred = arrays[key].astype(np.float32)
        axes[i, 0].plot(time_ms, gt, lw=0.4, color="0.7")
        axes[i, 0].plot(time_ms, pred, lw=0.4)
        axes[i, 0].set_title(f"{NAMES[key]} (grey: ground truth)", fontsize=8)
        axes[i, 1].plot(time_ms[zoom], gt[zoom], lw=0.8, color="0.7")
        axes[i, 1].plot(time_ms[zoom], pred[zoom], lw=0.8)
    for ax in axes[-1]:
        ax.set_xlabel("time in window (ms)")
    fig.subplots_adjust(hspace=0.6)
    return save(fig, path)


def _activations(arrays: dict, path: Path) -> Path:
    from scipy import stats
    inits = [(k, label) for k, label in (("paper", "paper init (ω0=30)"), ("naive", "default init, ω0=1"),
                                         ("naive30", "default init, ω0=30")) if f"{k}_hist" in arrays]
    n_layers = arrays[f"{inits[0][0]}_hist"].shape[0]
    show = sorted({1, n_layers // 2, n_layers - 1})
    edges = np.linspace(-1, 1, arrays[f"{inits[0][0]}_hist"].shape[1] + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    arcsine = stats.arcsine(loc=-1, scale=2).pdf(centres)
    fig, axes = plt.subplots(1, len(inits) + 1, figsize=(3.3 * (len(inits) + 1), 3.0), squeeze=False)
    for i, (key, label) in enumerate(inits):
        ax = axes[0, i]
        hist = arrays[f"{key}_hist"].astype(np.float32)
        for layer in show:
            ax.step(centres, hist[layer], where="mid", lw=1, label=f"layer {layer}")
        ax.plot(centres, arcsine, "k--", lw=0.8, label="arcsine(-1,1)")
        ax.set_ylim(0, max(4.0, float(np.nanmax(arcsine[1:-1])) * 1.2))
        ax.set_title(f"{label}\nmax KS = {float(arrays[f'{key}_ks'].max()):.3f}", fontsize=8)
        ax.set_xlabel("sine output")
        ax.legend(fontsize=6)
    ax = axes[0, -1]
    for key, label in inits:
        std = arrays[f"{key}_pre_std"].astype(np.float32)
        ax.semilogy(np.arange(len(std)), std, marker="o", ms=3, label=label)
    ax.set_xlabel("layer")
    ax.set_ylabel("std of pre-activation ω0(Wx+b)")
    ax.legend(fontsize=6)
    fig.subplots_adjust(wspace=0.35)
    fig.suptitle("Activation statistics at initialization across depth (§3.2)", fontsize=10, y=1.08)
    return save(fig, path)


def figures(runs, out_dir: Path) -> list[tuple[str, Path]]:
    out_dir = Path(out_dir)
    figs = _psnr_curves(all_curves(runs), out_dir)

    first = {name: found[1] for name in ("image", "derivs", "poisson", "audio", "acts")
             if (found := first_arrays(runs, name))}
    image = first.get("image")
    if image and "gt" in image:
        figs.append(("Image fits after training (first seed), with absolute error maps on the [0, 1] scale",
                     _image_grid(image, out_dir / "siren_image_fits.png", "Image fitting", errors=True)))
    derivs = first.get("derivs")
    if derivs and "sobel" in derivs and "laplace_gt" in derivs:
        figs.append(("Gradient magnitude and Laplacian: the image's Sobel / discrete Laplacian vs the autograd "
                     "∇Φ and ΔΦ of the fitted SIREN and ReLU nets (ReLU's Laplacian is 0 almost everywhere)",
                     _derivatives(derivs, out_dir / "siren_derivatives.png")))
    poisson = first.get("poisson")
    if poisson and "gt" in poisson:
        figs.append(("Reconstructions from the gradient field only (first seed), offset matched to the image mean",
                     _image_grid(poisson, out_dir / "siren_poisson.png", "Poisson: fit from gradients", errors=True)))
    audio = first.get("audio")
    if audio and "gt" in audio:
        figs.append(("Audio: fitted waveforms over the fitted window of gt_bach.wav, and a 10 ms zoom",
                     _audio(audio, out_dir / "siren_audio.png")))
    acts = first.get("acts")
    if acts and any(k.endswith("_hist") for k in acts):
        figs.append(("Sine-output histograms at three depths vs the arcsine density, and pre-activation std vs "
                     "depth, for the paper's init and two naive inits",
                     _activations(acts, out_dir / "siren_activations.png")))
    return figs
