"""ELU (Clevert, Unterthiner & Hochreiter 2015): the runner. One seed runs, in order:

  mnist     §4.1, Fig. 2: an 8 × 128 fully connected classifier per activation (ELU, ReLU, LReLU,
            SReLU), plain SGD; the training cross-entropy and, per hidden layer, the median over
            units of each unit's mean activation, logged during training
  ae        §4.2, Fig. 3: the 1000-500-250-30 MNIST autoencoder per activation and learning rate;
            reconstruction error (mean squared error per pixel) on the training and test sets
  compare   §4.3, Fig. 4: a CNN of the paper's family with ELU and ReLU, each with and without batch
            norm; training loss during training and test error at the end (CIFAR-100 with the 11-layer
            net at the paper tier, a small CNN of the same style on CIFAR-10 at the cpu tier)
  sota      §4.4, Table 1: the 18-layer ELU network on CIFAR-10 and CIFAR-100 (paper tier only)

Within an experiment every model starts from the same random stream, so the activations differ only
by the unit: same initial weights (same shapes, same He draws) and the same minibatch order.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch.nn import functional as F

from common.config import check_names, check_range
from common.context import RunContext
from common.papers import UsageError
from common.preprocessing import global_contrast_normalize, zca_apply, zca_fit
from reproductions.elu.elu import (ACTIVATIONS, StackedCNN, autoencoder, classifier, median_unit_means,
                                   pad_crop_flip, parse_stacks)

# The paper tier (§4). Only these keys are --set-able; each is typed by its value. M: from memory of
# the paper (shared/papers.md marks these details M), not confirmed against the text.
CONFIG = {
    # §4.1 MNIST classifier (8 × 128 C; SGD lr 0.01, batch 64, 300 epochs, He init M)
    "mnist_activations": ["elu", "relu", "lrelu", "srelu"],
    "mnist_depth": 8,
    "mnist_hidden": 128,
    "mnist_epochs": 300,
    "mnist_lr": 0.01,
    "mnist_batch": 64,
    "mnist_train": 0,                 # training images used (0: all 60,000)
    "mnist_evals_per_epoch": 1,
    "mnist_loss_images": 0,           # training images the logged cross-entropy is computed on (0: all used)
    "mnist_stat_images": 1000,        # fixed training images for the activation statistics
    # §4.2 autoencoder (1000-500-250-30 C; learning rates and epochs M)
    "ae_activations": ["elu", "relu", "lrelu", "srelu"],
    "ae_encoder": [1000, 500, 250, 30],
    "ae_lrs": [0.01, 0.001, 0.0001],
    "ae_epochs": 500,
    "ae_batch": 64,
    "ae_train": 0,
    "ae_evals_per_epoch": 1,
    # §4.3 ELU vs ReLU with and without batch norm (11 conv layers C; the stacks, dropout and schedule M)
    "compare_dataset": "cifar100",
    "compare_net": "192x5|192x1,240x3|240x1,260x2|260x1,280x2|280x1,300x2|300x1",  # + a class layer (below)
    "compare_dropout": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.0],  # one rate per stack, the class layer's included
    "compare_variants": ["elu", "relu", "elu_bn", "relu_bn"],
    "compare_train": 0,
    "compare_steps": 165_000,
    "compare_lr_drops": [35000, 85000, 135000],
    "compare_augment": True,
    # §4.4 the 18-layer network (18 conv layers, 6.55% / 24.28% C; stacks, dropout and schedule M)
    "sota_datasets": ["cifar10", "cifar100"],
    "sota_net": ("384x3|384x1,384x2,640x2,640x2|640x1,768x2,768x2,768x2|768x1,896x2,896x2|"
                 "896x3,1024x2,1024x2|1024x1,1152x2|1152x1"),
    "sota_dropout": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.0, 0.0],
    "sota_train": 0,                  # training images used (0: all)
    "sota_steps": 165_000,
    "sota_lr_drops": [35000, 85000, 135000],
    # shared by the CNN experiments (§4.3-4.4, M)
    "cnn_batch": 100,
    "cnn_lr": 0.01,
    "cnn_momentum": 0.9,
    "cnn_weight_decay": 0.0005,
    "cnn_pad": 4,                     # augmentation: zero-pad 4 pixels, random 32×32 crop, horizontal flip
    "cnn_zca": True,                  # global contrast normalization, then ZCA whitening
    "cnn_evals": 50,                  # logged points of the training loss per model
    "test_images": 0,                 # test images scored (0: all)
    "elu_alpha": 1.0,
    "checkpoint_every": 5000,         # steps between resume checkpoints within one model
}

TIERS = {
    # seconds, deterministic: narrow nets, a few hundred images, a few dozen steps, every path once
    "smoke": {"mnist_hidden": 16, "mnist_epochs": 2, "mnist_train": 640, "mnist_evals_per_epoch": 2,
              "mnist_loss_images": 320, "mnist_stat_images": 200, "ae_encoder": [64, 32, 16, 4], "ae_lrs": [0.01],
              "ae_epochs": 1, "ae_train": 640, "compare_dataset": "cifar10", "compare_net": "8x3|8x1",
              "compare_dropout": [0.0, 0.0, 0.0], "compare_train": 200, "compare_steps": 8, "compare_lr_drops": [],
              "compare_augment": False, "sota_datasets": [], "cnn_batch": 50, "cnn_evals": 4,
              "cnn_zca": False, "test_images": 200, "checkpoint_every": 3},
    # ~14 min of single-thread CPU time per seed (README, measured): the MNIST classifier for 15 epochs,
    # the autoencoder at two learning rates for 3 epochs (0.05 and 0.03: at the paper's 0.01 and 0.001 no
    # net leaves the mean image within 3 epochs; README, deviations), and a 7-layer CNN of the paper's style on
    # 20,000 CIFAR-10 training images for 4 epochs; no 18-layer net
    "cpu": {"mnist_epochs": 15, "mnist_evals_per_epoch": 4, "mnist_loss_images": 10_000, "ae_lrs": [0.05, 0.03],
            "ae_epochs": 3, "ae_evals_per_epoch": 2, "compare_dataset": "cifar10",
            "compare_net": "32x5|32x1,64x3|64x1,96x2|96x1", "compare_dropout": [0.0, 0.0, 0.0, 0.0, 0.0],
            "compare_train": 20_000, "compare_steps": 800, "compare_lr_drops": [], "compare_augment": False,
            "sota_datasets": [], "cnn_evals": 40, "checkpoint_every": 1000},
}
FEW_STEPS = {"mnist_epochs": 1, "mnist_train": 128, "mnist_loss_images": 64, "mnist_stat_images": 64,
             "ae_epochs": 1, "ae_train": 128, "ae_lrs": [0.01], "compare_dataset": "cifar10", "compare_train": 4,
             "compare_steps": 2, "sota_datasets": ["cifar10"], "sota_train": 4, "sota_steps": 2, "cnn_batch": 2,
             "cnn_evals": 1, "test_images": 4}
LIBRARIES = ()
DATASETS = ("mnist", "cifar10")

CNN_DATASETS = ("cifar10", "cifar100")
VARIANTS = ("elu", "relu", "elu_bn", "relu_bn", "lrelu", "srelu", "lrelu_bn", "srelu_bn")
EXPERIMENT_SEED = {"mnist": 11, "ae": 23, "compare": 37, "sota": 41}


# -- configuration ---------------------------------------------------------------------------------------
TRAIN_IMAGES = {"mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000}  # training images each data set holds


def _integers(key: str, value, low: int | None = None, high: int | None = None) -> None:
    """An integer (or a list of them) in [low, high]."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(v, bool) or not isinstance(v, int) for v in items):
        raise UsageError(f"{key} takes {'integers' if isinstance(value, (list, tuple)) else 'an integer'}, "
                         f"got {value!r}")
    check_range(key, value, low, high)


def _positive(key: str, value) -> None:
    """A number (or a list of them) > 0."""
    check_range(key, value)
    if any(v <= 0 for v in (value if isinstance(value, (list, tuple)) else [value])):
        raise UsageError(f"{key} must be > 0, got {value}")


def _once_each(key: str, values: list) -> None:
    repeated = sorted({f"{v}" for v in values if values.count(v) > 1})
    if repeated:
        raise UsageError(f"{key}: {', '.join(repeated)} listed more than once; list each at most once")


def _flag(key: str, value) -> None:
    if not isinstance(value, bool):
        raise UsageError(f"{key} takes true or false, got {value!r}")


def _subset(key: str, images: int, dataset: str, batch_key: str, cfg: dict) -> None:
    """A training-subset size: 0 (all) or up to the data set's size, and at least one minibatch."""
    _integers(key, images, 0, TRAIN_IMAGES[dataset])
    if (images or TRAIN_IMAGES[dataset]) < cfg[batch_key]:
        raise UsageError(f"{key} ({images}) must be 0 (all) or at least {batch_key} ({cfg[batch_key]})")


def validate(cfg: dict) -> None:
    """Every key's kind and range, before anything loads, trains or is written: a bad value is one line
    naming the key and what is valid (exit code 2). `run()` assumes a config that passed."""
    for key in (k for k, v in CONFIG.items() if isinstance(v, list)):
        if not isinstance(cfg[key], (list, tuple)):
            raise UsageError(f"{key} takes a list, e.g. {','.join(map(str, CONFIG[key]))}; got {cfg[key]!r}")
    for key in ("mnist_depth", "mnist_hidden", "mnist_epochs", "mnist_batch", "mnist_evals_per_epoch",
                "mnist_stat_images", "ae_epochs", "ae_batch", "ae_evals_per_epoch", "compare_steps", "sota_steps",
                "cnn_batch", "cnn_evals", "checkpoint_every"):
        _integers(key, cfg[key], 1)
    for key in ("mnist_loss_images", "test_images", "cnn_pad"):
        _integers(key, cfg[key], 0)
    for key in ("mnist_lr", "ae_lrs", "cnn_lr", "elu_alpha"):
        _positive(key, cfg[key])
    check_range("cnn_momentum", cfg["cnn_momentum"], 0, 1)
    check_range("cnn_weight_decay", cfg["cnn_weight_decay"], 0)
    for key in ("compare_augment", "cnn_zca"):
        _flag(key, cfg[key])
    for key, valid in (("mnist_activations", ACTIVATIONS), ("ae_activations", ACTIVATIONS),
                       ("compare_variants", VARIANTS), ("sota_datasets", CNN_DATASETS)):
        _once_each(key, check_names(key, cfg[key], valid))
    if not isinstance(cfg["compare_dataset"], str):
        raise UsageError(f"compare_dataset takes one name from {', '.join(CNN_DATASETS)}, "
                         f"got {cfg['compare_dataset']!r}")
    check_names("compare_dataset", cfg["compare_dataset"], CNN_DATASETS)
    _once_each("ae_lrs", list(cfg["ae_lrs"]))
    _integers("ae_encoder", cfg["ae_encoder"], 1)
    if not cfg["ae_encoder"]:
        raise UsageError("ae_encoder is empty; give the encoder's layer sizes, e.g. 1000,500,250,30")
    _integers("compare_lr_drops", cfg["compare_lr_drops"], 0)
    _integers("sota_lr_drops", cfg["sota_lr_drops"], 0)
    _subset("mnist_train", cfg["mnist_train"], "mnist", "mnist_batch", cfg)
    _subset("ae_train", cfg["ae_train"], "mnist", "ae_batch", cfg)
    _subset("compare_train", cfg["compare_train"], cfg["compare_dataset"], "cnn_batch", cfg)
    _subset("sota_train", cfg["sota_train"], "cifar10", "cnn_batch", cfg)
    for net, dropout in (("compare_net", "compare_dropout"), ("sota_net", "sota_dropout")):
        if not isinstance(cfg[net], str):
            raise UsageError(f"{net} takes the stack notation, e.g. '192x5|192x1,240x3', got {cfg[net]!r}")
        try:
            stacks = parse_stacks(f"{cfg[net]}|1x1")
        except ValueError as err:
            raise UsageError(f"{net}: {err}") from None
        check_range(dropout, cfg[dropout], 0, 1, " (a dropout rate)")
        if len(cfg[dropout]) != len(stacks):
            raise UsageError(f"{dropout} gives {len(cfg[dropout])} rates for {len(stacks)} stacks of {net} (its "
                             f"stacks and the class layer's); give one rate per stack")


def lr_tag(lr: float) -> str:
    """A learning rate as a metric-name piece: 0.01 -> '0p01'."""
    return f"{lr:g}".replace("-", "m").replace(".", "p")


def seed_model(ctx: RunContext, experiment: str) -> None:
    """Every model of an experiment starts from the same stream (same init, same minibatch order)."""
    torch.manual_seed(ctx.seed * 1000 + EXPERIMENT_SEED[experiment])


# -- data --------------------------------------------------------------------------------------------------
def mnist_tensors(train_images: int, test_images: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Pixels / 255 as (N, 784) rows, read on the CPU and moved to `device` once (all of MNIST is 0.2 GB)."""
    from common.datasets import mnist
    (x, y), (xt, yt) = mnist("train"), mnist("test")
    n, nt = train_images or len(x), test_images or len(xt)
    data = {"x": torch.from_numpy(x[:n].reshape(n, -1).astype(np.float32) / 255), "y": torch.from_numpy(y[:n]),
            "x_test": torch.from_numpy(xt[:nt].reshape(nt, -1).astype(np.float32) / 255),
            "y_test": torch.from_numpy(yt[:nt])}
    return {k: v.to(device) for k, v in data.items()}


def cifar_tensors(name: str, train_images: int, test_images: int, zca: bool,
                  device: torch.device) -> dict[str, torch.Tensor]:
    """(N, 3, 32, 32) float images; with `zca`, globally contrast-normalized then ZCA-whitened by a
    transform fitted on the training images used (§4.3). Prepared on the CPU (the covariance in float64,
    which not every accelerator has), then moved to `device` once."""
    from common import datasets
    (x, y), (xt, yt) = getattr(datasets, name)("train"), getattr(datasets, name)("test")
    n, nt = train_images or len(x), test_images or len(xt)
    x = torch.from_numpy(x[:n]).permute(0, 3, 1, 2).float() / 255
    xt = torch.from_numpy(xt[:nt]).permute(0, 3, 1, 2).float() / 255
    if zca:  # on flattened rows; the covariance of 3,072 values in float64
        x, xt = (global_contrast_normalize(v.reshape(len(v), -1)) for v in (x, xt))
        mean, w = (t.float() for t in zca_fit(x.double()))
        x, xt = (zca_apply(v, mean, w).reshape(-1, 3, 32, 32) for v in (x, xt))
    else:
        mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
        x, xt = (x - mean) / std, (xt - mean) / std
    return {"x": x.contiguous().to(device), "y": torch.from_numpy(y[:n]).to(device),
            "x_test": xt.contiguous().to(device), "y_test": torch.from_numpy(yt[:nt]).to(device),
            "classes": 100 if name == "cifar100" else 10}


# -- one training loop for every model ------------------------------------------------------------------------
class Batches:
    """Minibatches from a fresh random permutation of the training set every epoch (torch's global stream
    of `device`, where the indices are drawn and kept)."""

    def __init__(self, n: int, batch: int, device: torch.device):
        self.n, self.batch, self.device, self.order, self.cursor = n, batch, device, None, 0

    def next(self) -> torch.Tensor:
        if self.order is None or self.cursor + self.batch > self.n:
            self.order, self.cursor = torch.randperm(self.n, device=self.device), 0
        idx = self.order[self.cursor:self.cursor + self.batch]
        self.cursor += self.batch
        return idx

    def state(self) -> dict:
        return {"order": self.order, "cursor": self.cursor}

    def load(self, state: dict) -> None:
        self.order, self.cursor = state["order"], state["cursor"]


def fit(key: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int, batch: int, n_train: int,
        loss_on, evaluate, eval_steps: list[int], ctx: RunContext, checkpoint_every: int,
        lr_at=None, generator: torch.Generator | None = None) -> None:
    """Train for `steps` minibatches. `loss_on(idx)` returns the minibatch loss; at each step in
    `eval_steps`, `evaluate(step, window_loss)` logs (window_loss is the mean minibatch loss since the
    previous evaluation). Resumable from checkpoints under `key`, with `generator` (one `loss_on` draws
    from, besides torch's global streams) where it was."""
    batches = Batches(n_train, batch, ctx.device)
    saved = ctx.restore(key)
    step, window = 0, []
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        batches.load(saved["batches"])
        step, window = saved["step"], list(saved["window"])
        if generator is not None:
            generator.set_state(saved["generator"].cpu())  # a generator's state is a CPU tensor on any device
    pending = [s for s in eval_steps if s > step]
    clock, first = time.perf_counter(), step
    model.train()
    for step in ctx.progress(range(step + 1, steps + 1), desc=key, total=steps - step):
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
        loss = loss_on(batches.next())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window.append(loss.detach())
        if pending and step == pending[0]:
            pending.pop(0)
            model.eval()
            with torch.no_grad():
                evaluate(step, float(torch.stack(window).mean()))
            model.train()
            window = []
        if step % checkpoint_every == 0 and step < steps:
            extra = {} if generator is None else {"generator": generator.get_state()}
            ctx.checkpoint(key, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                 "batches": batches.state(), "step": step, "window": window, **extra})
    if steps > first:
        ctx.record_throughput(f"{key}_steps_per_s", (steps - first) / (time.perf_counter() - clock))
    model.eval()


def evenly(steps: int, count: int) -> list[int]:
    """`count` evaluation steps spread evenly over a run, the last one at `steps`."""
    return sorted({max(1, round(steps * (k + 1) / count)) for k in range(max(count, 1))})


@torch.no_grad()
def batched(fn, x: torch.Tensor, size: int = 2000) -> torch.Tensor:
    return torch.cat([fn(x[i:i + size]) for i in range(0, len(x), size)])


# -- §4.1: the MNIST classifier ------------------------------------------------------------------------------
def run_mnist(cfg: dict, ctx: RunContext) -> dict[str, float]:
    acts = cfg["mnist_activations"]
    data = mnist_tensors(cfg["mnist_train"], cfg["test_images"], ctx.device)
    x, y = data["x"], data["y"]
    score_x, score_y = x[:cfg["mnist_loss_images"] or len(x)], y[:cfg["mnist_loss_images"] or len(y)]
    stat_x = x[:cfg["mnist_stat_images"]]
    steps_per_epoch = len(x) // cfg["mnist_batch"]
    steps = steps_per_epoch * cfg["mnist_epochs"]
    evals = evenly(steps, cfg["mnist_epochs"] * cfg["mnist_evals_per_epoch"])
    metrics: dict[str, float] = {}
    losses: dict[str, list[float]] = {}

    def train(act: str, key: str) -> dict:
        seed_model(ctx, "mnist")
        model = classifier(x.shape[1], cfg["mnist_hidden"], cfg["mnist_depth"], 10, act, cfg["elu_alpha"])
        model = model.to(ctx.device)
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg["mnist_lr"])

        def evaluate(step, window_loss):
            epoch = step / steps_per_epoch
            train_loss = float(F.cross_entropy(batched(model, score_x), score_y))
            ctx.log(step, experiment="mnist", model=act, epoch=epoch, train_loss=train_loss,
                    window_loss=window_loss)
            per_layer = median_unit_means(model(stat_x, keep_hidden=True)[1])
            for layer, value in enumerate(per_layer, start=1):
                ctx.log(step, experiment="mnist_activation", model=act, epoch=epoch, layer=layer,
                        median_activation=value)

        fit(key, model, optimizer, steps, cfg["mnist_batch"], len(x),
            lambda idx: F.cross_entropy(model(x[idx]), y[idx]), evaluate, evals, ctx, cfg["checkpoint_every"])
        curve = [r["train_loss"] for r in ctx.curves if r.get("experiment") == "mnist" and r["model"] == act]
        median_abs = [abs(r["median_activation"]) for r in ctx.curves
                      if r.get("experiment") == "mnist_activation" and r["model"] == act]
        errors = (batched(model, data["x_test"]).argmax(1) != data["y_test"]).float().mean()
        return {"metrics": {f"{key}_train_loss": curve[-1], f"{key}_test_error": float(errors),
                            f"{key}_abs_median_activation": float(np.mean(median_abs)) if median_abs else 0.0},
                "curve": curve}

    for act in acts:
        key = f"mnist_{act}"
        done = ctx.stage(key, lambda: train(act, key))
        metrics.update(done["metrics"])
        losses[act] = list(done["curve"])
    if "elu" in acts and len(acts) > 1:
        others = [a for a in acts if a != "elu"]
        # Fig. 2a: ELU's median mean activation is the closest to zero (margin > 0 when it is)
        metrics["mnist_elu_activation_margin"] = (min(metrics[f"mnist_{a}_abs_median_activation"] for a in others)
                                                  - metrics["mnist_elu_abs_median_activation"])
        # Fig. 2b: the share of logged points at which ELU's training loss is the lowest of all
        lowest = [losses["elu"][i] < min(losses[a][i] for a in others) for i in range(len(losses["elu"]))]
        metrics["mnist_elu_lowest_loss_fraction"] = float(np.mean(lowest))
    return metrics


# -- §4.2: the MNIST autoencoder ---------------------------------------------------------------------------------
def run_autoencoder(cfg: dict, ctx: RunContext) -> dict[str, float]:
    acts, lrs, encoder = cfg["ae_activations"], cfg["ae_lrs"], cfg["ae_encoder"]
    data = mnist_tensors(cfg["ae_train"], cfg["test_images"], ctx.device)
    x = data["x"]
    baseline = float(F.mse_loss(x.mean(0).expand_as(data["x_test"]), data["x_test"]))  # predict the mean image
    steps_per_epoch = len(x) // cfg["ae_batch"]
    steps = steps_per_epoch * cfg["ae_epochs"]
    evals = evenly(steps, cfg["ae_epochs"] * cfg["ae_evals_per_epoch"])
    metrics: dict[str, float] = {}

    def train(act: str, lr: float, key: str) -> dict:
        seed_model(ctx, "ae")
        model = autoencoder(x.shape[1], encoder, act, cfg["elu_alpha"]).to(ctx.device)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)

        def mse(images):
            return float(F.mse_loss(batched(model, images), images))

        def evaluate(step, window_loss):
            ctx.log(step, experiment="ae", model=act, lr=f"{lr:g}", epoch=step / steps_per_epoch,
                    train_mse=mse(x[:10_000]), test_mse=mse(data["x_test"]), mean_image_mse=baseline)

        # at a high learning rate one net may blow up: its NaN is this net's result, not the end of the run
        with ctx.may_diverge(key) as outcome:
            fit(key, model, optimizer, steps, cfg["ae_batch"], len(x), lambda idx: F.mse_loss(model(x[idx]), x[idx]),
                evaluate, evals, ctx, cfg["checkpoint_every"])
        if outcome.diverged:
            return {"metrics": {}, "divergence": outcome.metrics(), "arrays": {}}
        # the pictures are part of the stage's result, so a resumed run still draws them
        return {"metrics": {f"{key}_train_mse": mse(x), f"{key}_test_mse": mse(data["x_test"])},
                "divergence": outcome.metrics(),
                "arrays": {"originals": data["x_test"][:10].reshape(-1, 28, 28),
                           "reconstructions": batched(model, data["x_test"][:10]).reshape(-1, 28, 28)}}

    for lr in lrs:
        for act in acts:
            key = f"ae_lr{lr_tag(lr)}_{act}"
            done = ctx.stage(key, lambda: train(act, lr, key))
            if done["arrays"]:
                ctx.save_arrays(key, **done["arrays"])
            metrics.update(done["metrics"])
            metrics.update(done["divergence"])
        tag = lr_tag(lr)
        trained = [a for a in acts if f"ae_lr{tag}_{a}_test_mse" in metrics]  # the nets that did not diverge
        if "elu" in trained and len(trained) > 1:  # Fig. 3: ELU's error no higher than the others' (margin >= 0)
            metrics[f"ae_lr{tag}_elu_margin"] = (min(metrics[f"ae_lr{tag}_{a}_test_mse"] for a in trained if a != "elu")
                                                 - metrics[f"ae_lr{tag}_elu_test_mse"])
        # how many of the nets reconstruct better than the mean training image: below it, the comparison
        # is about the units; above it, about which net reached the trivial solution first (a diverged net
        # does not count)
        metrics[f"ae_lr{tag}_below_mean_image"] = float(sum(metrics[f"ae_lr{tag}_{a}_test_mse"] < baseline
                                                            for a in trained))
    metrics["ae_mean_image_test_mse"] = baseline
    return metrics


# -- §4.3-4.4: CNNs -----------------------------------------------------------------------------------------------
def train_cnn(key: str, data: dict, spec: str, dropout: list[float], variant: str, steps: int, drops: list[int],
              augment: bool, cfg: dict, ctx: RunContext, experiment: str) -> dict[str, float]:
    """SGD with momentum and weight decay, the learning rate divided by 10 at each step in `drops`."""
    act, batch_norm = variant.removesuffix("_bn"), variant.endswith("_bn")
    # the stacks, then one 1×1 layer with a unit per class, averaged over the map (§4.3-4.4)
    spec = f"{spec}|{data['classes']}x1"
    # initialized on the CPU (the same draws on every device), then moved
    model = StackedCNN(spec, 3, data["x"].shape[-1], act, batch_norm, dropout, cfg["elu_alpha"]).to(ctx.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["cnn_lr"], momentum=cfg["cnn_momentum"],
                                weight_decay=cfg["cnn_weight_decay"])
    x, y = data["x"], data["y"]
    generator = torch.Generator(device=ctx.device).manual_seed(ctx.seed)  # the augmentation's, on the device

    def loss_on(idx):
        images = pad_crop_flip(x[idx], cfg["cnn_pad"], generator) if augment else x[idx]
        return F.cross_entropy(model(images), y[idx])

    def evaluate(step, window_loss):
        ctx.log(step, experiment=experiment, model=variant, epoch=step * cfg["cnn_batch"] / len(x),
                train_loss=window_loss)

    fit(key, model, optimizer, steps, cfg["cnn_batch"], len(x), loss_on, evaluate, evenly(steps, cfg["cnn_evals"]),
        ctx, cfg["checkpoint_every"], lr_at=lambda step: cfg["cnn_lr"] * 0.1 ** sum(step > d for d in drops),
        generator=generator if augment else None)
    curve = [r["train_loss"] for r in ctx.curves if r.get("experiment") == experiment and r["model"] == variant]
    errors = (batched(model, data["x_test"], 500).argmax(1) != data["y_test"]).float().mean()
    return {f"{key}_train_loss_mean": float(np.mean(curve)), f"{key}_final_train_loss": curve[-1],
            f"{key}_test_error": float(errors)}


def run_compare(cfg: dict, ctx: RunContext) -> dict[str, float]:
    variants, dropout, drops = cfg["compare_variants"], cfg["compare_dropout"], cfg["compare_lr_drops"]
    data = cifar_tensors(cfg["compare_dataset"], cfg["compare_train"], cfg["test_images"], cfg["cnn_zca"], ctx.device)
    metrics: dict[str, float] = {}
    for variant in variants:
        key = f"compare_{variant}"

        def train(variant=variant, key=key):
            seed_model(ctx, "compare")
            return train_cnn(key, data, cfg["compare_net"], dropout, variant, cfg["compare_steps"], drops,
                             cfg["compare_augment"], cfg, ctx, "compare")

        metrics.update(ctx.stage(key, train))
    if {"elu", "relu_bn"} <= set(variants):  # Fig. 4: ELU without BN trains at least as fast as ReLU with BN
        metrics["compare_elu_vs_relu_bn"] = (metrics["compare_relu_bn_train_loss_mean"]
                                             - metrics["compare_elu_train_loss_mean"])
    if {"elu", "relu"} <= set(variants):
        metrics["compare_elu_vs_relu"] = metrics["compare_relu_train_loss_mean"] - metrics["compare_elu_train_loss_mean"]
    return metrics


def run_sota(cfg: dict, ctx: RunContext) -> dict[str, float]:
    names, dropout, drops = cfg["sota_datasets"], cfg["sota_dropout"], cfg["sota_lr_drops"]
    metrics: dict[str, float] = {}
    for name in names:
        key = f"sota_{name}"

        def train(name=name, key=key):  # the data is loaded inside the stage: a finished one needs none
            data = cifar_tensors(name, cfg["sota_train"], cfg["test_images"], cfg["cnn_zca"], ctx.device)
            seed_model(ctx, "sota")
            return train_cnn(key, data, cfg["sota_net"], dropout, "elu", cfg["sota_steps"], drops, True, cfg, ctx, key)

        metrics.update(ctx.stage(key, train))
    return metrics


def run(cfg: dict, ctx: RunContext) -> dict[str, float]:
    """One seed of every experiment; `cfg` has passed `validate` (the harness calls it first)."""
    metrics = {}
    for experiment in (run_mnist, run_autoencoder, run_compare, run_sota):
        metrics.update(experiment(cfg, ctx))
    return metrics
