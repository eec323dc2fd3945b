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

from common.config import check_names, check_range
from common.context import RunContext, fork_rng
from common.papers import UsageError
from common.preprocessing import global_contrast_normalize, zca_apply, zca_fit
from reproductions.binaryconnect.binaryconnect import (CNN_KERNELS, MODES, QuantizedLayer, backward_multipliers,
                                                       cnn, count_multiplications, exponent_range, mlp,
                                                       squared_hinge_loss)

# The paper tier: hantek/BinaryConnect's mnist.py, cifar10.py and svhn.py. Only these keys are --set-able.
CONFIG = {
    "datasets": ["mnist", "cifar10", "svhn"],
    "mnist_variants": ["full", "binary_det", "binary_stoch", "binary_stoch_qb", "ternary_qb"],
    "cifar10_variants": ["full", "binary_stoch_qb", "ternary_qb"],
    "svhn_variants": ["full", "binary_stoch_qb", "ternary_qb"],
    "mnist_hidden": 1024,          # 3 hidden layers of 1024 ReLUs
    "mnist_layers": 3,
    "mnist_train": 50000,          # train[:50000]; train[50000:] validates
    "mnist_valid": 10000,
    "mnist_epochs": 1000,
    "mnist_batch": 200,
    "mnist_lr_start": 0.3,
    "mnist_lr_end": 0.01,
    "cnn_channels": [128, 128, 256, 256, 512, 512, 1024],  # the seven convolutions (CIFAR-10 and SVHN)
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
    "smoke": {"datasets": ["mnist", "cifar10"],
              "mnist_variants": ["full", "binary_det", "binary_stoch_qb", "ternary_qb"],
              "cifar10_variants": ["full", "ternary_qb"], "mnist_hidden": 32, "mnist_train": 1000, "mnist_valid": 500,
              "mnist_epochs": 2, "mnist_batch": 100, "cnn_channels": [4, 4, 8, 8, 8, 8, 16], "cnn_fc": 16,
              "cifar10_train": 400, "cifar10_valid": 200, "cifar10_epochs": 2, "eval_every": 1,
              "bn_stats_examples": 400},
    # ~13 min of single-thread CPU time per seed (README, Tiers): MNIST 3x256 for 20 epochs, CIFAR-10 with
    # an eighth of the channels on a 10,000-image training subset for 15 epochs
    "cpu": {"datasets": ["mnist", "cifar10"], "mnist_hidden": 256, "mnist_epochs": 20, "mnist_valid": 5000,
            "cnn_channels": [16, 16, 32, 32, 64, 64, 128], "cnn_fc": 128, "cifar10_train": 10000,
            "cifar10_valid": 2000, "cifar10_epochs": 15, "eval_every": 3, "bn_stats_examples": 10000},
}
FEW_STEPS = {"datasets": ["mnist", "cifar10"], "mnist_variants": ["binary_stoch_qb"],
             "cifar10_variants": ["ternary_qb"], "mnist_train": 400, "mnist_valid": 200, "mnist_epochs": 1, "cifar10_train": 200, "cifar10_valid": 100,
             "cifar10_epochs": 1, "bn_stats_examples": 200}
LIBRARIES = ()
DATASETS = ("mnist", "cifar10")  # svhn is read only when `datasets` names it (the paper tier)

DATASET_NAMES = ("mnist", "cifar10", "svhn")
TRAIN_IMAGES = {"mnist": 60000, "cifar10": 50000, "svhn": 73257}  # what each data set's training file holds
VALID_FROM = {"mnist": 50000, "cifar10": 45000}  # train[VALID_FROM:] validates; SVHN's last `svhn_valid` do


# -- configuration --------------------------------------------------------------------------------
def parse_variant(name: str) -> tuple[str, bool]:
    """'binary_stoch_qb' -> ('binary_stoch', True): a weight mode and whether backprop is quantized."""
    mode, qb = (name[:-3], True) if name.endswith("_qb") else (name, False)
    if mode not in MODES:
        raise UsageError(f"unknown variant {name!r}; valid: one of {', '.join(MODES)}, optionally with '_qb'")
    return mode, qb


def valid_from(cfg: dict, name: str) -> int:
    """Where a data set's validation images start in its training file (they are the rest of it)."""
    return VALID_FROM.get(name, TRAIN_IMAGES["svhn"] - cfg["svhn_valid"])


def _integers(key: str, value, low: int | None = None, high: int | None = None) -> None:
    """An integer (or a list of them) in [low, high]."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(v, bool) or not isinstance(v, int) for v in items):
        raise UsageError(f"{key} takes {'integers' if isinstance(value, (list, tuple)) else 'an integer'}, "
                         f"got {value!r}")
    check_range(key, value, low, high)


def _positive(key: str, value) -> None:
    check_range(key, value)
    if value <= 0:
        raise UsageError(f"{key} must be > 0, got {value}")


def _once_each(key: str, values: list) -> None:
    repeated = sorted({f"{v}" for v in values if values.count(v) > 1})
    if repeated:
        raise UsageError(f"{key}: {', '.join(repeated)} listed more than once; list each at most once")


def validate(cfg: dict) -> None:
    """Every key's kind and range, before any data is read or anything trains: a bad value is one line
    naming the key and what is valid (exit code 2), and no record is written. Every data set's keys are
    checked, named in `datasets` or not. `run()` assumes a config that passed."""
    for key in (k for k, v in CONFIG.items() if isinstance(v, list)):
        if not isinstance(cfg[key], (list, tuple)):
            raise UsageError(f"{key} takes a list, e.g. {','.join(map(str, CONFIG[key]))}; got {cfg[key]!r}")
    if not cfg["datasets"]:
        raise UsageError(f"datasets is empty; valid: {', '.join(DATASET_NAMES)}")
    _once_each("datasets", check_names("datasets", cfg["datasets"], DATASET_NAMES))
    for name in DATASET_NAMES:
        key = f"{name}_variants"
        if not cfg[key]:
            raise UsageError(f"{key} is empty; valid: one of {', '.join(MODES)}, optionally with '_qb'")
        for variant in cfg[key]:
            try:
                parse_variant(variant)
            except UsageError as err:
                raise UsageError(f"{key}: {err}") from None
        _once_each(key, list(cfg[key]))
        _integers(f"{name}_epochs", cfg[f"{name}_epochs"], 1)
        _integers(f"{name}_batch", cfg[f"{name}_batch"], 1)
        _positive(f"{name}_lr_start", cfg[f"{name}_lr_start"])
        _positive(f"{name}_lr_end", cfg[f"{name}_lr_end"])
        if cfg[f"{name}_lr_end"] > cfg[f"{name}_lr_start"]:
            raise UsageError(f"{name}_lr_end ({cfg[f'{name}_lr_end']}) must be <= {name}_lr_start "
                             f"({cfg[f'{name}_lr_start']}): the rate decays")
        # the validation images are the end of the training file, the training images its start
        _integers(f"{name}_valid", cfg[f"{name}_valid"], 1, TRAIN_IMAGES[name] - VALID_FROM.get(name, 1))
        _integers(f"{name}_train", cfg[f"{name}_train"], 1, valid_from(cfg, name))
        if cfg[f"{name}_train"] < cfg[f"{name}_batch"]:
            raise UsageError(f"{name}_train ({cfg[f'{name}_train']}) must be at least {name}_batch "
                             f"({cfg[f'{name}_batch']})")
    _integers("cnn_channels", cfg["cnn_channels"], 1)
    if len(cfg["cnn_channels"]) != len(CNN_KERNELS):
        raise UsageError(f"cnn_channels must list {len(CNN_KERNELS)} channel counts (one per convolution), "
                         f"got {len(cfg['cnn_channels'])}")
    for key in ("mnist_hidden", "mnist_layers", "cnn_fc", "eval_every", "bn_stats_examples", "qb_exponent_bits"):
        _integers(key, cfg[key], 1)
    _integers("qb_max_exponent", cfg["qb_max_exponent"])
    low, high = exponent_range(cfg["qb_exponent_bits"], cfg["qb_max_exponent"])
    if low < -126 or high > 127:  # round_to_power_of_two writes float32 exponent fields
        raise UsageError(f"qb_exponent_bits and qb_max_exponent give exponents {low} … {high}; float32 holds "
                         f"-126 … 127")
    _positive("bn_epsilon", cfg["bn_epsilon"])


# -- data -----------------------------------------------------------------------------------------
def load_mnist(cfg: dict, device: torch.device) -> dict[str, torch.Tensor]:
    """Pixels in [0, 1], centred by the training images' mean (pylearn2's `center=True`)."""
    from common.datasets import mnist
    images, labels = mnist("train")
    test_images, test_labels = mnist("test")
    n_train, n_valid = cfg["mnist_train"], cfg["mnist_valid"]
    x = torch.from_numpy(images.reshape(-1, 784).astype(np.float32) / 255)
    mean = x[:n_train].mean(0)
    data = {"train": x[:n_train] - mean, "train_y": torch.from_numpy(labels[:n_train]),
            "valid": x[50000:50000 + n_valid] - mean, "valid_y": torch.from_numpy(labels[50000:50000 + n_valid]),
            "test": torch.from_numpy(test_images.reshape(-1, 784).astype(np.float32) / 255) - mean,
            "test_y": torch.from_numpy(test_labels)}
    return {k: v.to(device) for k, v in data.items()}


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32))


def load_colour(name: str, cfg: dict, images, labels, test_images, test_labels, device: torch.device):
    """GCN then ZCA (fitted on the training images used), as (N, 3, 32, 32) float tensors; prepared on the
    CPU, then moved to `device` once."""
    n_train, n_valid, start = cfg[f"{name}_train"], cfg[f"{name}_valid"], valid_from(cfg, name)
    mean, whiten = zca_fit(global_contrast_normalize(images_to_tensor(images[:n_train])))

    def prepare(x: np.ndarray) -> torch.Tensor:
        flat = zca_apply(global_contrast_normalize(images_to_tensor(x)), mean, whiten)
        return flat.reshape(-1, 32, 32, 3).permute(0, 3, 1, 2).contiguous()

    data = {"train": prepare(images[:n_train]), "train_y": torch.from_numpy(labels[:n_train]),
            "valid": prepare(images[start:start + n_valid]),
            "valid_y": torch.from_numpy(labels[start:start + n_valid]),
            "test": prepare(test_images), "test_y": torch.from_numpy(test_labels)}
    return {k: v.to(device) for k, v in data.items()}


def load_cifar10(cfg: dict, device: torch.device) -> dict[str, torch.Tensor]:
    """Only CIFAR-10's first 1,000 test images exist here: the test error is measured on those."""
    from common.datasets import cifar10
    return load_colour("cifar10", cfg, *cifar10("train"), *cifar10("test"), device=device)


def load_svhn(cfg: dict, device: torch.device) -> dict[str, torch.Tensor]:
    from common.datasets import svhn
    return load_colour("svhn", cfg, *svhn("train"), *svhn("test"), device=device)


LOADERS = {"mnist": load_mnist, "cifar10": load_cifar10, "svhn": load_svhn}


# -- model and training ---------------------------------------------------------------------------
def build(name: str, mode: str, qb: bool, cfg: dict) -> nn.Sequential:
    """The network, initialized on the CPU (the same draws whatever the device); callers move it."""
    exponents = exponent_range(cfg["qb_exponent_bits"], cfg["qb_max_exponent"])
    if name == "mnist":
        return mlp(784, cfg["mnist_hidden"], cfg["mnist_layers"], 10, mode, qb, exponents, cfg["bn_epsilon"])
    return cnn(cfg["cnn_channels"], cfg["cnn_fc"], 10, mode, qb, exponents, cfg["bn_epsilon"])


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
    wrong = sum((model(x[i:i + batch]).argmax(1) != y[i:i + batch]).sum() for i in range(0, len(x), batch))
    return 100.0 * int(wrong) / len(x)  # one number read back per evaluation


@torch.no_grad()
def forward_weights_in_set(model: nn.Module) -> float:
    """1.0 if every quantized layer's training-time forward weights lie in {-1, +1} (binary) or
    {-1, 0, +1} (ternary), else 0.0."""
    model.train()
    ok = True
    with fork_rng(next(model.parameters()).device):
        for m in model.modules():
            if isinstance(m, QuantizedLayer) and m.mode != "full":
                allowed = torch.tensor([-1.0, 0.0, 1.0] if m.mode == "ternary" else [-1.0, 1.0], device=m.weight.device)
                ok &= bool(torch.isin(m.forward_weights(), allowed).all())
    return float(ok)


def backward_multipliers_are_powers_of_two(model: nn.Module, x: torch.Tensor) -> float:
    """1.0 if, in one training-mode backward pass on the batch x, every QB layer computed its weight
    gradient and every multiplier it used (the quantized layer inputs, as handed to the product) is 0 or
    ±2^k with k an integer in the layer's exponent range; else 0.0. The parameters' gradients are cleared
    afterwards."""
    qb_layers = sum(isinstance(m, QuantizedLayer) and m.quantized_backprop for m in model.modules())
    model.train()
    with fork_rng(x.device), backward_multipliers() as used:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    ok = len(used) == qb_layers
    for q, (lo, hi) in used:
        k = torch.log2(q[q != 0].abs())
        ok &= bool((k == k.round()).all() and (k >= lo).all() and (k <= hi).all())
    return float(ok)


def train_variant(name: str, variant: str, data: dict, cfg: dict, ctx: RunContext) -> dict[str, float]:
    """Train one network to `<name>_epochs`, logging its curves; returns its final metrics. A stage: a
    resumed run skips a finished network (and continues an unfinished one from its last epoch)."""
    key = f"{name}_{variant}"
    return ctx.stage(key, lambda: _train(key, name, variant, data, cfg, ctx))


def _train(key: str, name: str, variant: str, data: dict, cfg: dict, ctx: RunContext) -> dict[str, float]:
    mode, qb = parse_variant(variant)
    epochs, batch = cfg[f"{name}_epochs"], cfg[f"{name}_batch"]
    lr_start, lr_end = cfg[f"{name}_lr_start"], cfg[f"{name}_lr_end"]
    x, y = data["train"], data["train_y"]
    bn_examples = x[:max(batch, cfg["bn_stats_examples"])]

    model = build(name, mode, qb, cfg).to(ctx.device)
    state = {"epoch": 0, "best": (float("inf"), float("nan"), 0), "last_test_error": float("nan"), "steps": 0}
    saved = ctx.restore(key)
    if saved is not None:
        model.load_state_dict(saved["model"])
        state = saved["state"]
    clock, start_steps = time.perf_counter(), state["steps"]
    for epoch in ctx.progress(range(state["epoch"], epochs), desc=key):
        lr = lr_start * (lr_end / lr_start) ** (epoch / epochs)  # exponential decay per epoch
        model.train()
        order = torch.randperm(len(x), device=x.device)
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
    with fork_rng(ctx.device):
        full_total = count_multiplications(build(name, "full", False, cfg).to(ctx.device), batch_x)["total"]
    metrics.update({f"{key}_mults_{part}": float(n) for part, n in counts.items()})
    metrics[f"{key}_mults_fraction_of_full"] = counts["total"] / full_total
    if mode != "full":
        metrics[f"{key}_forward_weights_in_set"] = forward_weights_in_set(model)
    if qb:
        metrics[f"{key}_backward_used_powers_of_two"] = backward_multipliers_are_powers_of_two(model, batch_x)
    return metrics


def run(cfg: dict, ctx: RunContext) -> dict[str, float]:
    """One seed; `cfg` has passed `validate` (the harness calls it first)."""
    # every named data set is read before anything trains: a missing one (SVHN) fails first
    data = {name: LOADERS[name](cfg, ctx.device) for name in cfg["datasets"]}
    metrics: dict[str, float] = {}
    for name in cfg["datasets"]:
        for variant in cfg[f"{name}_variants"]:
            metrics.update(train_variant(name, variant, data[name], cfg, ctx))
    return metrics
