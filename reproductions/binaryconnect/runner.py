"""Neural Networks with Few Multiplications (Lin et al. 2015): the runner. One seed trains, per dataset,
one network per variant and reports its test error and its multiplications per training step:

  mnist    784-1024-1024-1024-10 MLP, batch norm after every layer, squared hinge (L2-SVM) output
  cifar10  the official 7-convolution CNN (128 ... 1024 channels, one 1024 fully connected layer)
  svhn     the same CNN (paper tier; SVHN is user-supplied)

A variant is a weight mode (full, binary_det, binary_stoch, ternary) with an optional `_qb` suffix for
quantized back propagation, e.g. `binary_stoch_qb` is the paper's "binary connect + QB". Training is
the official code's: plain SGD (no momentum) on the squared hinge loss, the learning rate decaying
exponentially per epoch from `lr_start` to `lr_end`, the real-valued weights clipped to [-1, 1]; every
`eval_every` epochs batch norm's population statistics are recomputed on the training set and the
validation and test errors measured; the reported test error is the one at the best validation error.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from common.config import parse_names
from common.context import RunContext
from common.papers import UsageError
from common.preprocessing import global_contrast_normalize, zca_apply, zca_fit
from reproductions.binaryconnect.binaryconnect import (MODES, QuantizedLayer, cnn, count_multiplications,
                                                       exponent_range, mlp, round_to_power_of_two,
                                                       squared_hinge_loss)

# The paper tier: hantek/BinaryConnect's mnist.py, cifar10.py and svhn.py. Only these keys are --set-able.
CONFIG = {
    "datasets": "mnist,cifar10,svhn",
    "mnist_variants": "full,binary_det,binary_stoch,binary_stoch_qb,ternary_qb",
    "cifar10_variants": "full,binary_stoch_qb,ternary_qb",
    "svhn_variants": "full,binary_stoch_qb,ternary_qb",
    "mnist_hidden": 1024,          # 3 hidden layers of 1024 ReLUs
    "mnist_layers": 3,
    "mnist_train": 50000,          # train[:50000]; train[50000:] validates
    "mnist_valid": 10000,
    "mnist_epochs": 1000,
    "mnist_batch": 200,
    "mnist_lr_start": 0.3,
    "mnist_lr_end": 0.01,
    "cnn_channels": "128,128,256,256,512,512,1024",  # the seven convolutions (CIFAR-10 and SVHN)
    "cnn_fc": 1024,
    "cifar10_train": 45000,        # train[:45000]; train[45000:] validates
    "cifar10_valid": 5000,
    "cifar10_epochs": 300,
    "cifar10_batch": 100,
    "cifar10_lr_start": 0.3,
    "cifar10_lr_end": 0.001,
    "svhn_train": 67257,           # train_32x32.mat minus the last 6000, which validate
    "svhn_valid": 6000,
    "svhn_epochs": 60,
    "svhn_batch": 100,
    "svhn_lr_start": 0.3,
    "svhn_lr_end": 0.001,
    "qb_exponent_bits": 3,         # quantized backprop: 2^3 exponents ...
    "qb_max_exponent": 3,          # ... 2^-4 … 2^3 (the official clip to [-4, 3])
    "bn_epsilon": 1e-4,
    "eval_every": 2,               # epochs between evaluations (the official monitor_step)
    "bn_stats_examples": 50000,    # training examples whose batch statistics make batch norm's population ones
}

TIERS = {
    # seconds, deterministic: tiny nets and subsets, two epochs
    "smoke": {"datasets": "mnist,cifar10", "mnist_variants": "full,binary_det,binary_stoch_qb,ternary_qb",
              "cifar10_variants": "full,ternary_qb", "mnist_hidden": 32, "mnist_train": 1000, "mnist_valid": 500,
              "mnist_epochs": 2, "mnist_batch": 100, "cnn_channels": "4,4,8,8,8,8,16", "cnn_fc": 16,
              "cifar10_train": 400, "cifar10_valid": 200, "cifar10_epochs": 2, "eval_every": 1,
              "bn_stats_examples": 400},
    # ~13 min of single-thread CPU time per seed (README, Tiers): MNIST 3x256 for 20 epochs, CIFAR-10 with
    # an eighth of the channels on a 10,000-image training subset for 15 epochs
    "cpu": {"datasets": "mnist,cifar10", "mnist_hidden": 256, "mnist_epochs": 20, "mnist_valid": 5000,
            "cnn_channels": "16,16,32,32,64,64,128", "cnn_fc": 128, "cifar10_train": 10000, "cifar10_valid": 2000,
            "cifar10_epochs": 15, "eval_every": 3, "bn_stats_examples": 10000},
    "paper": {},
}
SEEDS = {"smoke": 1, "cpu": 3, "paper": 3}
FEW_STEPS = {"datasets": "mnist,cifar10", "mnist_variants": "binary_stoch_qb", "cifar10_variants": "ternary_qb",
             "mnist_train": 400, "mnist_valid": 200, "mnist_epochs": 1, "cifar10_train": 200, "cifar10_valid": 100,
             "cifar10_epochs": 1, "bn_stats_examples": 200}
LIBRARIES = ()
DATASETS = ("mnist", "cifar10")  # svhn is read only when `datasets` names it (the paper tier)

DATASET_NAMES = ("mnist", "cifar10", "svhn")


# -- configuration --------------------------------------------------------------------------------
def parse_variant(name: str) -> tuple[str, bool]:
    """'binary_stoch_qb' -> ('binary_stoch', True): a weight mode and whether backprop is quantized."""
    mode, qb = (name[:-3], True) if name.endswith("_qb") else (name, False)
    if mode not in MODES:
        raise UsageError(f"unknown variant {name!r}; valid: one of {', '.join(MODES)}, optionally with '_qb'")
    return mode, qb


def parse_variants(text: str, key: str) -> list[str]:
    variants = [v.strip() for v in text.split(",") if v.strip()]
    if not variants:
        raise UsageError(f"{key} is empty; valid: one of {', '.join(MODES)}, optionally with '_qb'")
    for v in variants:
        parse_variant(v)
    return variants


def parse_channels(text: str) -> list[int]:
    try:
        channels = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise UsageError(f"cnn_channels must be 7 comma-separated integers, got {text!r}") from None
    if len(channels) != 7 or min(channels) < 1:
        raise UsageError(f"cnn_channels must be 7 comma-separated positive integers, got {text!r}")
    return channels


# -- data -----------------------------------------------------------------------------------------
def split_sizes(cfg: dict, name: str, total: int, valid_from: int) -> tuple[int, int]:
    n_train, n_valid = cfg[f"{name}_train"], cfg[f"{name}_valid"]
    if not (1 <= n_train <= valid_from and 1 <= n_valid <= total - valid_from):
        raise UsageError(f"{name}_train must be in [1, {valid_from}] and {name}_valid in [1, {total - valid_from}]"
                         f" (train[{valid_from}:] validates); got {n_train} and {n_valid}")
    return n_train, n_valid


def load_mnist(cfg: dict) -> dict[str, torch.Tensor]:
    """Pixels in [0, 1], centred by the training images' mean (pylearn2's `center=True`)."""
    from common.datasets import mnist
    images, labels = mnist("train")
    test_images, test_labels = mnist("test")
    n_train, n_valid = split_sizes(cfg, "mnist", len(images), 50000)
    x = torch.from_numpy(images.reshape(-1, 784).astype(np.float32) / 255)
    mean = x[:n_train].mean(0)
    return {"train": x[:n_train] - mean, "train_y": torch.from_numpy(labels[:n_train]),
            "valid": x[50000:50000 + n_valid] - mean, "valid_y": torch.from_numpy(labels[50000:50000 + n_valid]),
            "test": torch.from_numpy(test_images.reshape(-1, 784).astype(np.float32) / 255) - mean,
            "test_y": torch.from_numpy(test_labels)}


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32))


def load_colour(name: str, cfg: dict, images, labels, test_images, test_labels, valid_from: int):
    """GCN then ZCA (fitted on the training images used), as (N, 3, 32, 32) float tensors."""
    n_train, n_valid = split_sizes(cfg, name, len(images), valid_from)
    mean, whiten = zca_fit(global_contrast_normalize(images_to_tensor(images[:n_train])))

    def prepare(x: np.ndarray) -> torch.Tensor:
        flat = zca_apply(global_contrast_normalize(images_to_tensor(x)), mean, whiten)
        return flat.reshape(-1, 32, 32, 3).permute(0, 3, 1, 2).contiguous()

    return {"train": prepare(images[:n_train]), "train_y": torch.from_numpy(labels[:n_train]),
            "valid": prepare(images[valid_from:valid_from + n_valid]),
            "valid_y": torch.from_numpy(labels[valid_from:valid_from + n_valid]),
            "test": prepare(test_images), "test_y": torch.from_numpy(test_labels)}


def load_cifar10(cfg: dict) -> dict[str, torch.Tensor]:
    """Only CIFAR-10's first 1,000 test images exist here: the test error is measured on those."""
    from common.datasets import cifar10
    return load_colour("cifar10", cfg, *cifar10("train"), *cifar10("test"), valid_from=45000)


def load_svhn(cfg: dict) -> dict[str, torch.Tensor]:
    from common.datasets import svhn
    images, labels = svhn("train")
    return load_colour("svhn", cfg, images, labels, *svhn("test"), valid_from=len(images) - cfg["svhn_valid"])


LOADERS = {"mnist": load_mnist, "cifar10": load_cifar10, "svhn": load_svhn}


# -- model and training ---------------------------------------------------------------------------
def build(name: str, mode: str, qb: bool, cfg: dict) -> nn.Sequential:
    exponents = exponent_range(cfg["qb_exponent_bits"], cfg["qb_max_exponent"])
    if name == "mnist":
        return mlp(784, cfg["mnist_hidden"], cfg["mnist_layers"], 10, mode, qb, exponents, cfg["bn_epsilon"])
    return cnn(parse_channels(cfg["cnn_channels"]), cfg["cnn_fc"], 10, mode, qb, exponents, cfg["bn_epsilon"])


def sgd_step(model: nn.Module, lr: float) -> None:
    """Plain SGD; quantized layers' real-valued weights take the Glorot-scaled rate and are clipped to [-1, 1]."""
    with torch.no_grad():
        for module in model.modules():
            scale = module.lr_scale if isinstance(module, QuantizedLayer) else 1.0
            for p in module.parameters(recurse=False):
                p -= lr * scale * p.grad
            if isinstance(module, QuantizedLayer):
                module.clip_()


@torch.no_grad()
def set_bn_statistics(model: nn.Module, x: torch.Tensor, batch: int) -> None:
    """Batch norm's population mean and variance: the average of the per-batch statistics over `x`,
    computed with the evaluation weights (the official BN_fast_eval)."""
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.train()
    for i in range(0, len(x) - batch + 1, batch):
        model(x[i:i + batch])
    model.eval()


@torch.no_grad()
def error_percent(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    wrong = sum(int((model(x[i:i + batch]).argmax(1) != y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    return 100.0 * wrong / len(x)


@torch.no_grad()
def forward_weights_in_set(model: nn.Module) -> float:
    """1.0 if every quantized layer's training-time forward weights lie in {-1, +1} (binary) or
    {-1, 0, +1} (ternary), else 0.0."""
    model.train()
    ok = True
    with torch.random.fork_rng(devices=[]):
        for m in model.modules():
            if isinstance(m, QuantizedLayer) and m.mode != "full":
                allowed = torch.tensor([-1.0, 0.0, 1.0] if m.mode == "ternary" else [-1.0, 1.0])
                ok &= bool(torch.isin(m.forward_weights(), allowed).all())
    return float(ok)


@torch.no_grad()
def backward_multipliers_are_powers_of_two(model: nn.Module, x: torch.Tensor) -> float:
    """1.0 if, on the batch x, every layer input quantized for the weight gradient is 0 or ±2^k with k
    an integer in the exponent range, else 0.0."""
    inputs: list[tuple[torch.Tensor, tuple[int, int]]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: inputs.append((i[0], m.exponents)))
             for m in model.modules() if isinstance(m, QuantizedLayer) and m.quantized_backprop]
    model.train()
    with torch.random.fork_rng(devices=[]):
        model(x)
        ok = True
        for layer_input, (lo, hi) in inputs:
            q = round_to_power_of_two(layer_input, lo, hi)
            k = torch.log2(q[q != 0].abs())
            ok &= bool((k == k.round()).all() and (k >= lo).all() and (k <= hi).all())
    for h in hooks:
        h.remove()
    return float(ok)


def train_variant(name: str, variant: str, data: dict, cfg: dict, ctx: RunContext) -> dict[str, float]:
    """Train one network to `<name>_epochs`, logging its curves; returns its final metrics."""
    key = f"{name}_{variant}"
    done = ctx.restore(f"{key}_done")
    if done is not None:
        return done["metrics"]
    mode, qb = parse_variant(variant)
    epochs, batch = cfg[f"{name}_epochs"], cfg[f"{name}_batch"]
    lr_start, lr_end = cfg[f"{name}_lr_start"], cfg[f"{name}_lr_end"]
    x, y = data["train"], data["train_y"]
    bn_examples = x[:max(batch, cfg["bn_stats_examples"])]

    model = build(name, mode, qb, cfg)
    state = {"epoch": 0, "best": (float("inf"), float("nan"), 0), "last_test_error": float("nan"), "steps": 0}
    saved = ctx.restore(key)
    if saved is not None:
        model.load_state_dict(saved["model"])
        state = saved["state"]
    clock, start_steps = time.perf_counter(), state["steps"]
    for epoch in ctx.progress(range(state["epoch"], epochs), desc=key):
        lr = lr_start * (lr_end / lr_start) ** (epoch / epochs)  # exponential decay per epoch
        model.train()
        order = torch.randperm(len(x))
        losses = []
        for i in range(0, len(x) - batch + 1, batch):  # full minibatches only
            idx = order[i:i + batch]
            loss = squared_hinge_loss(model(x[idx]), y[idx])
            model.zero_grad(set_to_none=True)
            loss.backward()
            sgd_step(model, lr)
            losses.append(loss.detach())
        state["steps"] += len(losses)
        state["epoch"] = epoch + 1
        if state["epoch"] % cfg["eval_every"] == 0 or state["epoch"] == epochs:
            set_bn_statistics(model, bn_examples, batch)
            valid_error = error_percent(model, data["valid"], data["valid_y"])
            test_error = error_percent(model, data["test"], data["test_y"])
            state["last_test_error"] = test_error
            if valid_error <= state["best"][0]:
                state["best"] = (valid_error, test_error, state["epoch"])
            ctx.log(state["epoch"], dataset=name, variant=variant, train_loss=torch.stack(losses).mean(),
                    valid_error=valid_error, test_error=test_error, lr=lr)
        ctx.checkpoint(key, {"model": model.state_dict(), "state": state})
    seconds = time.perf_counter() - clock
    if state["steps"] > start_steps:
        ctx.record_throughput(f"{key}_steps_per_s", (state["steps"] - start_steps) / seconds)

    best_valid, best_test, best_epoch = state["best"]
    metrics = {f"{key}_test_error": best_test, f"{key}_valid_error": best_valid,
               f"{key}_best_epoch": float(best_epoch), f"{key}_final_test_error": state["last_test_error"]}
    batch_x = x[:batch]
    counts = count_multiplications(model, batch_x)
    with torch.random.fork_rng(devices=[]):
        full_total = count_multiplications(build(name, "full", False, cfg), batch_x)["total"]
    metrics.update({f"{key}_mults_{part}": float(n) for part, n in counts.items()})
    metrics[f"{key}_mults_fraction_of_full"] = counts["total"] / full_total
    if mode != "full":
        metrics[f"{key}_forward_weights_in_set"] = forward_weights_in_set(model)
    if qb:
        metrics[f"{key}_backward_powers_of_two"] = backward_multipliers_are_powers_of_two(model, batch_x)
    ctx.checkpoint(f"{key}_done", {"metrics": metrics})
    return metrics


def validate(cfg: dict) -> dict[str, list[str]]:
    """Each named dataset's variants, checked (with every other setting that could only fail later)
    before any data is read or anything trains: bad input exits with code 2 and writes no record."""
    names = parse_names(cfg["datasets"], "datasets", DATASET_NAMES)
    if not names:
        raise UsageError(f"datasets is empty; valid: {', '.join(DATASET_NAMES)}")
    parse_channels(cfg["cnn_channels"])
    for name in names:
        epochs, batch = cfg[f"{name}_epochs"], cfg[f"{name}_batch"]
        lr_start, lr_end = cfg[f"{name}_lr_start"], cfg[f"{name}_lr_end"]
        if epochs < 1 or batch < 1 or cfg["eval_every"] < 1 or not 0 < lr_end <= lr_start:
            raise UsageError(f"{name}_epochs, {name}_batch and eval_every must be >= 1 and 0 < {name}_lr_end <= "
                             f"{name}_lr_start; got {epochs}, {batch}, {cfg['eval_every']}, {lr_end}, {lr_start}")
        if cfg[f"{name}_train"] < batch:
            raise UsageError(f"{name}_train ({cfg[f'{name}_train']}) must be at least {name}_batch ({batch})")
    return {name: parse_variants(cfg[f"{name}_variants"], f"{name}_variants") for name in names}


def run(cfg: dict, ctx: RunContext) -> dict[str, float]:
    plans = validate(cfg)
    data = {name: LOADERS[name](cfg) for name in plans}  # a missing dataset (SVHN) fails before any training
    metrics: dict[str, float] = {}
    for name, variants in plans.items():
        for variant in variants:
            metrics.update(train_variant(name, variant, data[name], cfg, ctx))
    return metrics
