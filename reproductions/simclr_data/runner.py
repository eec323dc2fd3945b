"""Cole et al. 2022 at CIFAR scale: the runner. A tier is an experiment of three kinds of point.

  stage=pretrain,method=<m>,data=<tag>   trains an encoder on a pretraining set and publishes it:
      simclr       SimCLR (simclr.py): NT-Xent over two augmented views, LARS, warm-up + cosine decay
      supervised   the same encoder + a linear layer, cross-entropy on the labelled images (crop and flip);
                   "supervised from scratch" at a label count, and supervised pretraining for Fig. 4
      untrained    the encoder as initialised: the linear probe's floor (a sanity point)
  stage=probe,method=<m>,data=<tag>      a linear probe on that encoder's frozen features (§3: "linear
                   evaluation"): multinomial logistic regression (scikit-learn, L-BFGS) on standardised
                   features of the labelled images, its L2 strength chosen on a held-out fifth of them
  stage=finetune,method=simclr,data=<tag>,labels=<n>   the SimCLR encoder + a linear layer, trained end to
                   end on n labelled images with the supervised recipe (§3: "fine-tuning")

The data tag names the pretraining set: `cifar10k` is the first 10,000 images of the fixed 40,000-image
CIFAR-10 pool (data.py), `ood` images are Fashion-MNIST and MNIST in equal parts, `fmnist40k` is
Fashion-MNIST only, `-sp1.2` / `-down16` are the pool with salt-and-pepper noise (p = 1.2%) or
downsampled to 16×16 and back (corruptions of the pretraining images only; every evaluation image is
clean). A supervised tag `cifar250` is a balanced labelled subset of the pool.

Metrics (accuracies in percent; "<ds>" is cifar10 or fashion_mnist):

  <ds>_accuracy          top-1 on the held-out evaluation images (CIFAR-10: the 10,000 held-out training
                         images; Fashion-MNIST: its 10,000 test images), all labelled images used
  <ds>_coarse_accuracy   the same predictions mapped to the coarse label set (data.COARSE_GROUPS): a
                         10-way classifier judged at the coarser level, as Fig. 5 judges species-level
                         classifiers at coarser taxonomic levels
  cifar10_test_accuracy  on the 1,000 official CIFAR-10 test images this machine has
  <ds>_accuracy_<n>      probe only: the probe trained on n labelled images (balanced, nested)
  final_loss             pretraining: the mean loss over the last logged window
  positive_top1          SimCLR: how often a view's most similar other view is its positive (last window)
  corruption_psnr        a corrupted pretraining set: its PSNR against the clean images, in dB
"""
from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn import functional as F

from common.config import check_names, check_range
from common.context import RunContext
from common.experiments import Needs, Point
from common.papers import UsageError
from reproductions.simclr_data import augment, data
from reproductions.simclr_data.resnet import resnet
from reproductions.simclr_data.simclr import (LARS, ProjectionHead, lars_param_groups, nt_xent,
                                              scaled_learning_rate, warmup_cosine_lr)

STAGES = ("pretrain", "probe", "finetune")
METHODS = ("simclr", "supervised", "untrained")
SOURCES = ("cifar10", "fashion_mnist", "mnist")
LABELLED = ("cifar10", "fashion_mnist")  # the sources with coarse label sets (data.COARSE_GROUPS)
SOURCE_SIZE = {"cifar10": data.POOL_SIZE, "fashion_mnist": 60_000, "mnist": 60_000}
CORRUPTIONS = ("none", "salt_pepper", "downsample")
CHANNELS_LAST = torch.channels_last

# The paper tier: SimCLR's CIFAR-10 recipe (simclr.SIMCLR_CIFAR10, the official README command) on a
# ResNet-18 with the CIFAR stem, 1,000 epochs of the 40k pool for every pretraining set (a fixed budget);
# a standard supervised CIFAR recipe (M: Cole et al.'s own supervised settings are not known here).
CONFIG = {
    "stage": "pretrain",
    "method": "simclr",
    "images": {"cifar10": 40_000, "fashion_mnist": 0, "mnist": 0},  # the pretraining set, by source
    "corruption": "none",       # of the pretraining images (Fig. 4): none, salt_pepper or downsample
    "salt_pepper_p": 0.0,       # the probability that a pixel turns black or white
    "downsample_to": 16,        # area-average to this side, then resize back to 32 (16: the paper's "2×")
    "labels": 40_000,           # supervised and finetune: labelled images of the source, balanced over classes
    "encoder": {"depth": 18, "width": 1.0},
    "simclr": {
        "steps": 78_125,        # 1,000 epochs of 40,000 images at batch 512
        "optimizer": "lars",    # lars (official) or adamw (for short schedules: README, Tiers)
        "batch_size": 512, "base_lr": 1.0, "lr_scaling": "linear", "weight_decay": 1e-4, "momentum": 0.9,
        "warmup_fraction": 0.01,  # 10 of 1,000 epochs
        "temperature": 0.5, "head_layers": 2, "projection_dim": 128, "colour_strength": 0.5, "blur": False,
    },
    "supervised": {             # from scratch (method=supervised) and fine-tuning (stage=finetune)
        "steps": 31_250,        # 200 epochs of 40,000 images at batch 256
        "batch_size": 256, "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
        "warmup_fraction": 0.0,
    },
    "finetune_lr": 0.05,        # fine-tuning's peak learning rate (SimCLR App. B.5: 0.05 x B/256 ... M)
    "probe": {
        "datasets": ["cifar10"],               # where the frozen features are probed
        "train_images": 40_000,                # labelled images the probe is fitted on (CIFAR-10: the pool)
        "label_counts": [250, 1000, 4000],     # smaller labelled sets, for the label curve (Fig. 2)
        "C": [0.01, 0.1, 1.0, 10.0],           # inverse L2 strengths tried (SimCLR App. B.8 sweeps 45)
        "max_iter": 1000,
    },
    "eval_images": 10_000,      # held-out images every accuracy is measured on (at most 10,000; CIFAR-10 test: 1,000)
    "eval_batch": 1024,
    "log_every": 50,
    "checkpoint_every": 500,
}

TIERS = {
    "smoke": {"encoder": {"depth": 8, "width": 0.25}, "labels": 100, "eval_images": 200, "log_every": 2,
              "simclr": {"steps": 4, "batch_size": 16, "warmup_fraction": 0.25},
              "supervised": {"steps": 4, "batch_size": 16},
              "probe": {"train_images": 300, "label_counts": [50], "C": [0.1, 1.0], "max_iter": 200}},
    # README, Tiers: a ResNet-8; every SimCLR run 500 steps of 128 pairs (128k images through the encoder),
    # every supervised or fine-tuning run 500 steps of 128 images; temperature 0.2 from the pilots
    "cpu": {"encoder": {"depth": 8, "width": 1.0},
            "simclr": {"steps": 500, "batch_size": 128, "warmup_fraction": 0.05, "temperature": 0.2},
            "supervised": {"steps": 500, "batch_size": 128}, "log_every": 25, "checkpoint_every": 100,
            "eval_batch": 256},  # a ResNet-8 forward pass runs 1.65x faster at 256 than at 1024 on one core
    "paper": {},
}
FEW_STEPS = {"encoder": {"width": 0.25},  # ResNet-18 at a quarter of its widths: the test's CPU time
             "simclr": {"steps": 2, "batch_size": 8}, "supervised": {"steps": 2, "batch_size": 8},
             "probe": {"train_images": 60, "label_counts": [20], "C": [1.0], "max_iter": 50},
             "eval_images": 20, "eval_batch": 50, "log_every": 1}
LIBRARIES = ("scikit-learn",)
DATASETS = ("cifar10", "fashion-mnist", "mnist")

# -- the experiment ---------------------------------------------------------------------------------------------
# Pretraining sets (Questions 1, 3, 4 of the README), as {tag: settings}. Salt-and-pepper rates are matched
# to the downsampling levels in mean squared error on the pool (README, Claims): MSE(down16) = 238 and
# MSE(down8) = 654 (0-255 scale), and MSE(salt-and-pepper at p) = 20,400 p.
SIZES = {"cifar2.5k": 2_500, "cifar5k": 5_000, "cifar10k": 10_000, "cifar20k": 20_000, "cifar40k": 40_000}
CORRUPTED = {"cifar40k-sp1.2": {"corruption": "salt_pepper", "salt_pepper_p": 0.012},
             "cifar40k-sp3.2": {"corruption": "salt_pepper", "salt_pepper_p": 0.032},
             "cifar40k-down16": {"corruption": "downsample", "downsample_to": 16},
             "cifar40k-down8": {"corruption": "downsample", "downsample_to": 8}}


def _images(cifar10: int = 0, fashion_mnist: int = 0, mnist: int = 0) -> dict:
    return {"images": {"cifar10": cifar10, "fashion_mnist": fashion_mnist, "mnist": mnist}}


SIMCLR_SETS = {**{tag: _images(n) for tag, n in SIZES.items()},
               "cifar20k+ood20k": _images(20_000, 10_000, 10_000),   # N in-domain + N out-of-domain
               "cifar10k+ood10k": _images(10_000, 5_000, 5_000),     # N/2 + N/2
               "fmnist40k": _images(fashion_mnist=40_000),
               **{tag: {**_images(40_000), **c} for tag, c in CORRUPTED.items()}}
SUPERVISED_SETS = {"cifar250": {**_images(40_000), "labels": 250}, "cifar1k": {**_images(40_000), "labels": 1_000},
                   "cifar4k": {**_images(40_000), "labels": 4_000}, "cifar40k": _images(40_000),
                   "fmnist40k": _images(fashion_mnist=40_000),
                   **{tag: {**_images(40_000), **c} for tag, c in CORRUPTED.items()}}
PROBED_SUPERVISED = ("cifar40k", *CORRUPTED)
BOTH_DOMAINS = ("cifar40k", "cifar20k", "cifar20k+ood20k", "cifar10k+ood10k", "fmnist40k")
FINETUNE_LABELS = {"250": 250, "1k": 1_000, "4k": 4_000, "40k": 40_000}


# What a pretraining point reads: its config, its hash and the address of the encoder it publishes leave
# the rest out, so that changing the probe (or the other method's recipe) neither retrains an encoder nor
# reruns its record. Probe and fine-tuning points keep the whole config, so a change to the recipe that made
# their encoder reruns them too.
DATA_KEYS = ("stage", "method", "images", "corruption", "salt_pepper_p", "downsample_to", "encoder",
             "log_every", "checkpoint_every")
SCOPES = {"simclr": DATA_KEYS + ("simclr",),
          "supervised": DATA_KEYS + ("labels", "supervised", "eval_images", "eval_batch"),
          "untrained": ("stage", "method", "encoder")}


def _pretrain(method: str, tag: str, settings: dict) -> Point:
    labels = {"stage": "pretrain", "method": method, "data": tag}
    return Point(",".join(f"{k}={v}" for k, v in labels.items()), labels,
                 {"stage": "pretrain", "method": method, **settings}, scope=SCOPES[method])


def _consumer(stage: str, producer: Point, settings: dict, **extra_labels) -> Point:
    labels = {**producer.labels, "stage": stage, **extra_labels}
    return Point(",".join(f"{k}={v}" for k, v in labels.items()), labels, {"stage": stage, **settings},
                 requires={"encoder": Needs(producer.name)})


def _probe(producer: Point) -> Point:
    datasets = ["cifar10", "fashion_mnist"] if producer.labels["data"] in BOTH_DOMAINS else ["cifar10"]
    return _consumer("probe", producer, {"probe": {"datasets": datasets}})


def _study() -> list[Point]:
    simclr = {tag: _pretrain("simclr", tag, s) for tag, s in SIMCLR_SETS.items()}
    supervised = {tag: _pretrain("supervised", tag, s) for tag, s in SUPERVISED_SETS.items()}
    untrained = _pretrain("untrained", "none", {})
    probes = [_probe(p) for p in simclr.values()] + [_probe(supervised[t]) for t in PROBED_SUPERVISED]
    finetunes = [_consumer("finetune", simclr["cifar40k"], {"labels": n}, labels=tag)
                 for tag, n in FINETUNE_LABELS.items()]
    return [*simclr.values(), *supervised.values(), untrained, *probes, _probe(untrained), *finetunes]


def _smoke() -> list[Point]:
    """Every code path on a few hundred images: mixed sources, both corruptions, all three stages."""
    simclr = _pretrain("simclr", "mix-sp", {**_images(200, 100, 100), "corruption": "salt_pepper",
                                            "salt_pepper_p": 0.05})
    supervised = _pretrain("supervised", "cifar-down8", {**_images(300), "corruption": "downsample",
                                                         "downsample_to": 8})
    untrained = _pretrain("untrained", "none", {})
    fmnist = _pretrain("supervised", "fmnist", _images(fashion_mnist=300))
    return [simclr, supervised, untrained, fmnist, _consumer("probe", simclr, {"probe": {"datasets": list(LABELLED)}}),
            _probe(supervised), _probe(untrained), _consumer("finetune", simclr, {"labels": 100}, labels="100")]


POINTS = {"smoke": _smoke(), "cpu": _study(), "paper": _study()}


def validate(cfg: dict) -> None:
    """Checks every key the config has: a pretraining point's config holds only what it reads (SCOPES)."""
    check_names("stage", cfg["stage"], STAGES)
    check_names("method", cfg["method"], METHODS)
    if "images" in cfg:
        _validate_data(cfg)
    try:
        resnet(cfg["encoder"]["depth"], cfg["encoder"]["width"])
    except ValueError as err:
        raise UsageError(f"encoder: {err}") from None
    if "simclr" in cfg:
        s = cfg["simclr"]
        for key in ("steps", "batch_size", "head_layers", "projection_dim"):
            check_range(f"simclr.{key}", s[key], 1)
        check_names("simclr.lr_scaling", s["lr_scaling"], ("linear", "sqrt"))
        check_names("simclr.optimizer", s["optimizer"], ("lars", "adamw"))
        for key in ("base_lr", "weight_decay", "colour_strength"):
            check_range(f"simclr.{key}", s[key], 0)
        check_range("simclr.temperature", s["temperature"], 1e-6)
        check_range("simclr.momentum", s["momentum"], 0, 0.999999)
        check_range("simclr.warmup_fraction", s["warmup_fraction"], 0, 1)
    if "supervised" in cfg:
        s = cfg["supervised"]
        for key in ("steps", "batch_size"):
            check_range(f"supervised.{key}", s[key], 1)
        for key in ("lr", "weight_decay"):
            check_range(f"supervised.{key}", s[key], 0)
        check_range("supervised.momentum", s["momentum"], 0, 0.999999)
        check_range("supervised.warmup_fraction", s["warmup_fraction"], 0, 1)
    if "finetune_lr" in cfg:
        check_range("finetune_lr", cfg["finetune_lr"], 0)
    if "probe" in cfg:
        probe = cfg["probe"]
        check_names("probe.datasets", probe["datasets"], LABELLED)
        check_range("probe.train_images", probe["train_images"], 20, data.POOL_SIZE)
        check_range("probe.label_counts", probe["label_counts"], 20, probe["train_images"],
                    " (at least 2 per class, at most probe.train_images)")
        if not probe["C"]:
            raise UsageError("probe.C: give at least one inverse regularisation strength, e.g. 1.0")
        check_range("probe.C", probe["C"], 1e-12)
        check_range("probe.max_iter", probe["max_iter"], 1)
    if "eval_images" in cfg:
        check_range("eval_images", cfg["eval_images"], 10, data.EVAL_SIZE)
    for key in ("eval_batch", "log_every", "checkpoint_every"):
        if key in cfg:
            check_range(key, cfg[key], 1)


def _validate_data(cfg: dict) -> None:
    """The pretraining set, its corruption and the labelled images."""
    check_names("corruption", cfg["corruption"], CORRUPTIONS)
    unknown = set(cfg["images"]) - set(SOURCES)
    if unknown:
        raise UsageError(f"images: unknown source {sorted(unknown)}; valid: {', '.join(SOURCES)}")
    for source, n in cfg["images"].items():
        check_range(f"images.{source}", n, 0, SOURCE_SIZE[source])
    sources = [s for s, n in cfg["images"].items() if n]
    if cfg["stage"] == "pretrain" and cfg["method"] != "untrained" and not sources:
        raise UsageError("images: the pretraining set is empty; give at least one source a count, e.g. "
                         "--set images.cifar10=10000")
    check_range("salt_pepper_p", cfg["salt_pepper_p"], 1e-6 if cfg["corruption"] == "salt_pepper" else 0, 1)
    check_range("downsample_to", cfg["downsample_to"], 1, data.IMAGE_SIZE)
    if "labels" not in cfg:
        return
    check_range("labels", cfg["labels"], 10, SOURCE_SIZE["fashion_mnist"], " (balanced over 10 classes)")
    if cfg["stage"] == "pretrain" and cfg["method"] == "supervised":
        if len(sources) != 1 or sources[0] not in LABELLED:
            raise UsageError(f"images: supervised training needs exactly one labelled source, one of "
                             f"{', '.join(LABELLED)}; got {sources or 'none'}")
        check_range("labels", cfg["labels"], 10, cfg["images"][sources[0]], " (balanced over 10 classes; at "
                    "most the source's pretraining images)")
    if cfg["stage"] == "finetune":
        check_range("labels", cfg["labels"], 10, data.POOL_SIZE, " (balanced over 10 classes; at most the pool)")


def run(cfg: dict, ctx: RunContext) -> dict:
    if cfg["stage"] == "probe":
        return probe(cfg, ctx)
    if cfg["stage"] == "finetune":
        return finetune(cfg, ctx)
    return pretrain(cfg, ctx)


# -- data --------------------------------------------------------------------------------------------------------
def labelled_source(source: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n images of a source's fixed order, with labels: the CIFAR-10 pool, or a seeded order of
    the Fashion-MNIST / MNIST training images."""
    if source == "cifar10":
        images, labels = data.cifar10_splits()["pool"]
        return images[:n], labels[:n]
    return data.ood_images(source, "train", n)


def evaluation_sets(source: str, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The held-out images accuracies are measured on, by metric prefix: {"<source>_": the first n
    evaluation images} and, for CIFAR-10, {"cifar10_test_": the first n of the 1,000 official test images}."""
    if source == "cifar10":
        splits = data.cifar10_splits()
        images, labels = splits["eval"]
        test_images, test_labels = splits["test"]
        return {"cifar10_": (images[:n], labels[:n]), "cifar10_test_": (test_images[:n], test_labels[:n])}
    images, labels = data.ood_images(source, "test")
    return {f"{source}_": (images[:n], labels[:n])}


def psnr(clean: np.ndarray, corrupted: np.ndarray) -> float:
    mse = np.mean((clean.astype(np.float64) - corrupted.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse)) if mse > 0 else float("inf")


def pretraining_set(cfg: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """The pretraining images (uint8 (N, 32, 32, 3)), their labels, and {"corruption_psnr": dB} when they
    are corrupted. The corruption is drawn from the fixed data seed, so every method and run seed sees
    the same images."""
    parts = [labelled_source(s, n) for s, n in cfg["images"].items() if n]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if cfg["corruption"] == "none":
        return images, labels, {}
    if cfg["corruption"] == "salt_pepper":
        corrupted = data.salt_and_pepper(images, cfg["salt_pepper_p"], torch.Generator().manual_seed(data.SPLIT_SEED))
    else:
        corrupted = data.downsample_upsample(images, cfg["downsample_to"])
    return corrupted, labels, {"corruption_psnr": psnr(images, corrupted)}


# -- the encoder -----------------------------------------------------------------------------------------------
def make_encoder(depth: int, width: float, device) -> nn.Module:
    return resnet(depth, width).to(device, memory_format=CHANNELS_LAST)


def encoder_payload(encoder: nn.Module, cfg: dict) -> dict:
    return {"state": encoder.state_dict(), "depth": cfg["encoder"]["depth"], "width": float(cfg["encoder"]["width"])}


def load_encoder(ctx: RunContext) -> nn.Module:
    """The encoder this point requires, checksum-verified (common.artifacts), on the run's device."""
    payload = ctx.require("encoder")
    encoder = make_encoder(int(payload["depth"]), float(payload["width"]), ctx.device)
    encoder.load_state_dict(payload["state"])
    return encoder


def batch_of(images: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n indices drawn without replacement (with replacement when the set is smaller than n)."""
    size = len(images)
    if size >= n:
        return torch.randperm(size, generator=generator, device=images.device)[:n]
    return torch.randint(size, (n,), generator=generator, device=images.device)


class Classifier(nn.Module):
    """The encoder with a linear layer on h: supervised training and fine-tuning."""

    def __init__(self, encoder: nn.Module, classes: int):
        super().__init__()
        self.encoder, self.linear = encoder, nn.Linear(encoder.feature_dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.encoder(x))


# -- the training loop shared by SimCLR, supervised training and fine-tuning -------------------------------------
def fit(name: str, model: nn.Module, optimizer, batch_loss, recipe: dict, peak_lr: float, cfg: dict,
        ctx: RunContext, generator: torch.Generator) -> dict:
    """`recipe["steps"]` steps of `batch_loss(generator) -> (loss, extras)` with linear warm-up and cosine
    decay of the learning rate (simclr.warmup_cosine_lr); curves every `log_every` steps; a checkpoint
    every `checkpoint_every` steps, from which `--resume` continues with the same random streams.
    Returns the means of the last logged window."""
    steps, warmup = recipe["steps"], round(recipe["warmup_fraction"] * recipe["steps"])
    start, window = 0, {}
    saved = ctx.restore(name)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"].cpu())
        start = int(saved["step"])
    model.train()
    last, clock, images = {}, time.perf_counter(), 0
    for step in ctx.progress(range(start, steps), name, total=steps - start):
        lr = warmup_cosine_lr(step, steps, warmup, peak_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, extras, batch_images = batch_loss(generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        images += batch_images
        for key, value in {"loss": loss.detach(), **extras}.items():
            window.setdefault(key, []).append(value)
        if (step + 1) % cfg["log_every"] == 0 or step + 1 == steps:
            last = {key: torch.stack(values).mean().item() for key, values in window.items()}
            ctx.log(step + 1, lr=lr, **last)
            window = {}
        if (step + 1) % cfg["checkpoint_every"] == 0 and step + 1 < steps:
            ctx.checkpoint(name, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                  "generator": generator.get_state(), "step": step + 1})
    if images:
        ctx.record_throughput(f"{name}_images_per_s", images / (time.perf_counter() - clock))
    return last


def simclr_batch_loss(encoder: nn.Module, head: nn.Module, images: torch.Tensor, s: dict):
    """One SimCLR step's loss (§2.1): N images, two views each, pushed through the encoder as one batch of
    2N (so BN normalises over both views, as one device's share of the official global BN does)."""
    def batch_loss(generator):
        n = s["batch_size"]
        v1, v2 = augment.two_views(images[batch_of(images, n, generator)], generator, s["colour_strength"], s["blur"])
        z = head(encoder(torch.cat([v1, v2]).contiguous(memory_format=CHANNELS_LAST)))
        loss = nt_xent(z[:n], z[n:], s["temperature"])
        with torch.no_grad():  # is each view's most similar other view its positive?
            u = F.normalize(z.detach(), dim=1)
            sims = (u @ u.T).fill_diagonal_(-2)
            positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
            top1 = (sims.argmax(1) == positives).float().mean()
        return loss, {"positive_top1": top1}, 2 * n
    return batch_loss


def classifier_batch_loss(model: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int):
    """Cross-entropy on a batch under SimCLR's crop and flip (no colour distortion)."""
    def batch_loss(generator):
        idx = batch_of(images, batch_size, generator)
        x = augment.random_resized_crop(augment.to_float(images[idx]), generator, flip_p=augment.FLIP_P)
        loss = F.cross_entropy(model(x.contiguous(memory_format=CHANNELS_LAST)), labels[idx])
        return loss, {}, batch_size
    return batch_loss


def train_classifier(name: str, model: Classifier, images: np.ndarray, labels: np.ndarray, peak_lr: float,
                     cfg: dict, ctx: RunContext) -> dict:
    recipe = cfg["supervised"]
    model.to(ctx.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=peak_lr, momentum=recipe["momentum"],
                                nesterov=recipe["nesterov"] and recipe["momentum"] > 0,
                                weight_decay=recipe["weight_decay"])
    x = torch.from_numpy(images).to(ctx.device)
    y = torch.from_numpy(labels).to(ctx.device)
    generator = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    return fit(name, model, optimizer, classifier_batch_loss(model, x, y, recipe["batch_size"]), recipe, peak_lr,
               cfg, ctx, generator)


# -- evaluation ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def apply(module: nn.Module, images: np.ndarray, cfg: dict, ctx: RunContext) -> np.ndarray:
    """module(images) in eval mode, in batches, no augmentation: features or logits, float32 on the CPU."""
    module.eval()
    out = []
    for start in range(0, len(images), cfg["eval_batch"]):
        x = augment.to_float(images[start:start + cfg["eval_batch"]], ctx.device)
        out.append(module(x.contiguous(memory_format=CHANNELS_LAST)).float().cpu())
    return torch.cat(out).numpy()


def scores(predicted: np.ndarray, labels: np.ndarray, source: str, prefix: str) -> dict:
    """`<prefix>accuracy` and `<prefix>coarse_accuracy` (the same predictions judged at the coarse level),
    in percent."""
    coarse = data.coarse_map(source)
    return {f"{prefix}accuracy": 100 * float(np.mean(predicted == labels)),
            f"{prefix}coarse_accuracy": 100 * float(np.mean(coarse[predicted] == coarse[labels]))}


def evaluate_classifier(model: Classifier, source: str, cfg: dict, ctx: RunContext) -> dict:
    metrics = {}
    for prefix, (images, labels) in evaluation_sets(source, cfg["eval_images"]).items():
        metrics.update(scores(apply(model, images, cfg, ctx).argmax(1), labels, source, prefix))
    return metrics


# -- the three stages --------------------------------------------------------------------------------------------
def pretrain(cfg: dict, ctx: RunContext) -> dict:
    encoder = make_encoder(cfg["encoder"]["depth"], cfg["encoder"]["width"], ctx.device)
    if cfg["method"] == "untrained":
        ctx.publish("encoder", encoder_payload(encoder, cfg))
        return {"pretrain_images": 0.0}
    images, labels, metrics = pretraining_set(cfg)
    if cfg["method"] == "simclr":
        s = cfg["simclr"]
        head = ProjectionHead(encoder.feature_dim, s["projection_dim"], s["head_layers"]).to(ctx.device)
        model = nn.ModuleDict({"encoder": encoder, "head": head})
        peak = scaled_learning_rate(s["base_lr"], s["batch_size"], s["lr_scaling"])
        groups = lars_param_groups(model, s["weight_decay"])  # BN parameters and biases: no weight decay
        optimizer = (LARS(groups, lr=peak, momentum=s["momentum"]) if s["optimizer"] == "lars" else
                     torch.optim.AdamW([{k: v for k, v in g.items() if k != "adapt"} for g in groups], lr=peak))
        generator = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
        last = fit("simclr", model, optimizer, simclr_batch_loss(encoder, head, torch.from_numpy(images).to(ctx.device), s),
                   s, peak, cfg, ctx, generator)
        metrics.update(final_loss=last["loss"], positive_top1=last["positive_top1"], pretrain_images=float(len(images)))
    else:
        source = next(s for s, n in cfg["images"].items() if n)
        chosen = data.subset(labels, cfg["labels"], data.SPLIT_SEED)
        model = Classifier(encoder, len(data.FINE_CLASSES[source]))
        last = train_classifier("supervised", model, images[chosen], labels[chosen], cfg["supervised"]["lr"], cfg, ctx)
        metrics.update(final_loss=last["loss"], pretrain_images=float(len(chosen)),
                       **evaluate_classifier(model, source, cfg, ctx))
    ctx.publish("encoder", encoder_payload(encoder, cfg))
    return metrics


def probe(cfg: dict, ctx: RunContext) -> dict:
    """The linear evaluation of a frozen encoder on each dataset in `probe.datasets`."""
    encoder = load_encoder(ctx)
    p, metrics = cfg["probe"], {}
    for source in p["datasets"]:
        train_images, train_labels = labelled_source(source, p["train_images"])
        clock = time.perf_counter()
        train_features = apply(encoder, train_images, cfg, ctx)
        evaluation = {prefix: (apply(encoder, images, cfg, ctx), labels)
                      for prefix, (images, labels) in evaluation_sets(source, cfg["eval_images"]).items()}
        extracted = len(train_images) + sum(len(labels) for _, labels in evaluation.values())
        ctx.record_throughput(f"{source}_features_per_s", extracted / (time.perf_counter() - clock))
        predict = fit_probe(train_features, train_labels, p)
        for prefix, (features, labels) in evaluation.items():
            metrics.update(scores(predict(features), labels, source, prefix))
        features, labels = evaluation[f"{source}_"]
        for n in (n for n in p["label_counts"] if n < len(train_labels)):  # the label curve (Fig. 2)
            chosen = data.subset(train_labels, n, data.SPLIT_SEED)
            predicted = fit_probe(train_features[chosen], train_labels[chosen], p)(features)
            metrics[f"{source}_accuracy_{n}"] = 100 * float(np.mean(predicted == labels))
    return metrics


def fit_probe(features: np.ndarray, labels: np.ndarray, p: dict):
    """Multinomial logistic regression on standardised features (scikit-learn, L-BFGS), with the inverse L2
    strength C that does best on a stratified fifth of the labelled images, refitted on all of them.
    Returns predict(features) -> labels."""
    scaler = StandardScaler().fit(features)
    x = scaler.transform(features)
    best_c = p["C"][0]
    if len(p["C"]) > 1:
        held = max(round(0.2 * len(labels)), len(np.unique(labels)))  # every class in the held-out part
        fit_x, held_x, fit_y, held_y = train_test_split(x, labels, test_size=held, stratify=labels,
                                                        random_state=data.SPLIT_SEED)
        scores = [LogisticRegression(C=c, max_iter=p["max_iter"]).fit(fit_x, fit_y).score(held_x, held_y)
                  for c in p["C"]]
        best_c = p["C"][int(np.argmax(scores))]
    model = LogisticRegression(C=best_c, max_iter=p["max_iter"]).fit(x, labels)
    return lambda f: model.predict(scaler.transform(f))


def finetune(cfg: dict, ctx: RunContext) -> dict:
    """The SimCLR encoder + a new linear layer, trained end to end on `labels` CIFAR-10 pool images with the
    supervised recipe at the fine-tuning learning rate."""
    images, labels = labelled_source("cifar10", data.POOL_SIZE)
    chosen = data.subset(labels, cfg["labels"], data.SPLIT_SEED)
    model = Classifier(load_encoder(ctx), len(data.CIFAR10_CLASSES))
    last = train_classifier("finetune", model, images[chosen], labels[chosen], cfg["finetune_lr"], cfg, ctx)
    return {"final_loss": last["loss"], **evaluate_classifier(model, "cifar10", cfg, ctx)}
