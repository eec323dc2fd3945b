"""Neural Networks with Few Multiplications (Lin, Courbariaux, Memisevic & Bengio 2015): the pieces.

* Binary connect (the paper's "binary connect" section, after Courbariaux et al. 2015): every weight is used as w_b ∈ {-1, +1} in the forward
  pass, deterministically (sign) or stochastically with P(w_b = +1) = hard_sigmoid(w) = clip((w+1)/2, 0, 1).
* Ternary connect ("ternary connect"): w_t ∈ {-1, 0, +1}, w_t = sign(w) with probability |w|, else 0.
* Quantized back propagation ("quantized back propagation"): in the weight gradient δᵀ·x, the layer inputs x are rounded
  stochastically (and unbiasedly) to signed powers of two with a bounded exponent (3 bits: 2^-4 … 2^3,
  the official code's clip), so the products become bit shifts.

The real-valued weights w live in [-1, 1] and are what SGD updates: the gradient with respect to the
quantized weights is applied to w unchanged (a straight-through estimator) and w is clipped to [-1, 1]
after every update. The official code keeps W in [-W0, W0] and binarizes to ±W0 with W0 the Glorot
bound / 2; because every layer is followed by batch normalization that per-layer constant cancels, and
the same trajectory in w = W / W0 units takes a learning rate scaled by 1 / W0² (`lr_scale`).
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from common.context import fork_rng

MODES = ("full", "binary_det", "binary_stoch", "ternary")


# -- weight quantizers (binary and ternary connect) ------------------------------------------------------------------------
def hard_sigmoid(w: torch.Tensor) -> torch.Tensor:
    return ((w + 1) / 2).clamp(0, 1)


def quantize_weights(w: torch.Tensor, mode: str) -> torch.Tensor:
    """The forward-pass weights of `mode` for real-valued weights w ∈ [-1, 1]."""
    if mode == "binary_det":  # sign, with sign(0) = +1
        return torch.where(w >= 0, 1.0, -1.0)
    if mode == "binary_stoch":  # +1 with probability hard_sigmoid(w)
        return torch.where(torch.rand_like(w) < hard_sigmoid(w), 1.0, -1.0)
    if mode == "ternary":  # sign(w) with probability |w|, else 0
        return torch.sign(w) * (torch.rand_like(w) < w.abs()).to(w.dtype)
    raise ValueError(f"no weight quantizer for mode {mode!r}; quantized modes: {', '.join(MODES[1:])}")


class StraightThrough(torch.autograd.Function):
    """Forward: the quantized weights. Backward: dC/dw := dC/dw_b (clipping after the update keeps w in [-1, 1])."""

    @staticmethod
    def forward(ctx, w, mode):
        return quantize_weights(w, mode)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


# -- quantized back propagation ----------------------------------------------------------------
def exponent_range(bits: int, max_exponent: int) -> tuple[int, int]:
    """`bits` bits of exponent: 2**bits consecutive powers of two ending at 2**max_exponent."""
    return max_exponent - 2 ** bits + 1, max_exponent


def round_to_power_of_two(x: torch.Tensor, min_exponent: int, max_exponent: int) -> torch.Tensor:
    """Stochastic rounding of |x| ∈ [2^k, 2^(k+1)) up to 2^(k+1) with probability |x|/2^k - 1, else down
    to 2^k (unbiased inside the range); the exponent is then clipped to [min_exponent, max_exponent] and
    the sign kept. Zeros (ReLU's) stay zero: a zero multiplier needs no shift.

    Read off float32's bits: k is the exponent field minus 127 and |x|/2^k - 1 is the 23-bit fraction."""
    if x.dtype != torch.float32:
        raise ValueError(f"round_to_power_of_two reads float32 bits; got {x.dtype}")
    bits = x.contiguous().view(torch.int32)
    exponent = ((bits >> 23) & 0xFF) - 127
    p_up = (bits & 0x7FFFFF).to(torch.float32) * 2.0 ** -23
    exponent = (exponent + (torch.rand_like(x) < p_up).to(torch.int32)).clamp_(min_exponent, max_exponent)
    powers = ((bits & -2 ** 31) | ((exponent + 127) << 23)).view(torch.float32)  # sign bit | exponent field
    return powers.masked_fill_(x == 0, 0.0)


_multiplier_logs: list[list] = []  # open `backward_multipliers()` blocks


@contextmanager
def backward_multipliers():
    """While open, every quantized backward appends (the multipliers it used for dC/dW, the exponent range):
    the very tensor the weight gradient is computed from, so a check can inspect what the backward pass
    used rather than call the rounding itself."""
    log: list = []
    _multiplier_logs.append(log)
    try:
        yield log
    finally:
        _multiplier_logs.remove(log)


def _quantized_layer_input(x: torch.Tensor, exponents: tuple[int, int]) -> torch.Tensor:
    """Q(x) for a weight gradient, handed to any open `backward_multipliers()` block."""
    q = round_to_power_of_two(x, *exponents)
    for log in _multiplier_logs:
        log.append((q, exponents))
    return q


class QuantizedBackpropLinear(torch.autograd.Function):
    """y = x·Wᵀ. Backward: dC/dx = δ·W (exact; with W in {-1, 0, 1} only sign changes), and
    dC/dW = δᵀ·Q(x) with Q(x) the layer inputs rounded to powers of two."""

    @staticmethod
    def forward(ctx, x, w, min_exponent, max_exponent):
        ctx.save_for_backward(x, w)
        ctx.exponents = (min_exponent, max_exponent)
        return x @ w.t()

    @staticmethod
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        grad_x = grad_out @ w if ctx.needs_input_grad[0] else None
        grad_w = grad_out.t() @ _quantized_layer_input(x, ctx.exponents)
        return grad_x, grad_w, None, None


class QuantizedBackpropConv2d(torch.autograd.Function):
    """The convolutional form of QuantizedBackpropLinear (valid convolution, stride 1)."""

    @staticmethod
    def forward(ctx, x, w, min_exponent, max_exponent):
        ctx.save_for_backward(x, w)
        ctx.exponents = (min_exponent, max_exponent)
        return F.conv2d(x, w)

    @staticmethod
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        grad_x = torch.nn.grad.conv2d_input(x.shape, w, grad_out) if ctx.needs_input_grad[0] else None
        grad_w = torch.nn.grad.conv2d_weight(_quantized_layer_input(x, ctx.exponents), w.shape, grad_out)
        return grad_x, grad_w, None, None


# -- layers -----------------------------------------------------------------------------------------
class QuantizedLayer(nn.Module):
    """A bias-free linear or valid 3x3/2x2 convolution (batch norm's β is the bias) whose forward weights
    follow `mode`. Training uses the quantized weights; evaluation uses them for `binary_det` and the
    real-valued weights for the stochastic modes, as the official code does."""

    def __init__(self, shape: tuple[int, ...], fan_in: int, fan_out: int, mode: str, quantized_backprop: bool,
                 exponents: tuple[int, int]):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
        self.mode, self.quantized_backprop, self.exponents = mode, quantized_backprop, exponents
        glorot = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot & Bengio's uniform bound
        if mode == "full":
            self.weight = nn.Parameter(torch.empty(shape).uniform_(-glorot, glorot))
            self.lr_scale = 1.0
        else:  # W ~ U(-glorot, glorot) in units of W0 = glorot / 2, clipped as the first update would
            self.weight = nn.Parameter(torch.empty(shape).uniform_(-2, 2).clamp_(-1, 1))
            self.lr_scale = 1.0 / (glorot / 2) ** 2

    def forward_weights(self) -> torch.Tensor:
        if self.mode == "full" or (not self.training and self.mode != "binary_det"):
            return self.weight
        return StraightThrough.apply(self.weight, self.mode)

    def clip_(self) -> None:
        if self.mode != "full":
            self.weight.data.clamp_(-1, 1)


class QuantizedLinear(QuantizedLayer):
    def __init__(self, n_in: int, n_out: int, mode: str, quantized_backprop: bool, exponents: tuple[int, int]):
        super().__init__((n_out, n_in), n_in, n_out, mode, quantized_backprop, exponents)

    def forward(self, x):
        w = self.forward_weights()
        if self.quantized_backprop and self.training:
            return QuantizedBackpropLinear.apply(x, w, *self.exponents)
        return x @ w.t()


class QuantizedConv2d(QuantizedLayer):
    def __init__(self, c_in: int, c_out: int, kernel: int, pool: int, mode: str, quantized_backprop: bool,
                 exponents: tuple[int, int]):
        # the official code's Glorot fan-out counts the pooled outputs: c_out·k² / pool²
        super().__init__((c_out, c_in, kernel, kernel), c_in * kernel ** 2, c_out * kernel ** 2 // pool ** 2,
                         mode, quantized_backprop, exponents)

    def forward(self, x):
        w = self.forward_weights()
        if self.quantized_backprop and self.training:
            return QuantizedBackpropConv2d.apply(x, w, *self.exponents)
        return F.conv2d(x, w)


def mlp(n_in: int, hidden: int, layers: int, n_out: int, mode: str, quantized_backprop: bool,
        exponents: tuple[int, int], bn_epsilon: float) -> nn.Sequential:
    """The MNIST net: `layers` × (linear, batch norm, ReLU), then a linear L2-SVM output with batch norm."""
    blocks: list[nn.Module] = [nn.Flatten()]
    widths = [n_in] + [hidden] * layers
    for a, b in zip(widths[:-1], widths[1:]):
        blocks += [QuantizedLinear(a, b, mode, quantized_backprop, exponents),
                   nn.BatchNorm1d(b, eps=bn_epsilon, momentum=None), nn.ReLU()]
    blocks += [QuantizedLinear(widths[-1], n_out, mode, quantized_backprop, exponents),
               nn.BatchNorm1d(n_out, eps=bn_epsilon, momentum=None)]
    return nn.Sequential(*blocks)


# the official CIFAR-10 / SVHN net: kernel size and max-pooling of each of the seven convolutions
CNN_KERNELS = (3, 3, 2, 2, 2, 2, 2)
CNN_POOLS = (1, 2, 1, 2, 1, 2, 1)


def cnn(channels: list[int], fc: int, n_out: int, mode: str, quantized_backprop: bool,
        exponents: tuple[int, int], bn_epsilon: float) -> nn.Sequential:
    """(C3)-(C3 P2)-(C2)-(C2 P2)-(C2)-(C2 P2)-(C2) valid convolutions on 32x32x3, each max-pooled then
    batch-normalized then ReLU, a fully connected ReLU layer and an L2-SVM output with batch norm."""
    if len(channels) != len(CNN_KERNELS):
        raise ValueError(f"the CNN has {len(CNN_KERNELS)} convolutions; got {len(channels)} channel counts")
    blocks: list[nn.Module] = []
    side, c_in = 32, 3
    for c_out, kernel, pool in zip(channels, CNN_KERNELS, CNN_POOLS):
        blocks.append(QuantizedConv2d(c_in, c_out, kernel, pool, mode, quantized_backprop, exponents))
        if pool > 1:
            blocks.append(nn.MaxPool2d(pool))
        blocks += [nn.BatchNorm2d(c_out, eps=bn_epsilon, momentum=None), nn.ReLU()]
        side, c_in = (side - kernel + 1) // pool, c_out
    blocks += [nn.Flatten(),
               QuantizedLinear(c_in * side * side, fc, mode, quantized_backprop, exponents),
               nn.BatchNorm1d(fc, eps=bn_epsilon, momentum=None), nn.ReLU(),
               QuantizedLinear(fc, n_out, mode, quantized_backprop, exponents),
               nn.BatchNorm1d(n_out, eps=bn_epsilon, momentum=None)]
    return nn.Sequential(*blocks)


def squared_hinge_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The L2-SVM loss: targets t ∈ {-1, +1} per class, Σ_k max(0, 1 - t_k·y_k)², averaged over the batch."""
    targets = 2 * F.one_hot(labels, scores.shape[1]).to(scores.dtype) - 1
    return F.relu(1 - targets * scores).pow(2).sum(1).mean()


# -- counting multiplications (the paper's point) ---------------------------------------------------
def count_multiplications(model: nn.Sequential, x: torch.Tensor) -> dict[str, int]:
    """Multiplications of one training step on the batch x, by the rules below (README, "Counting").

    Forward:  a weight layer's products (batch · outputs · fan-in), unless its weights are binary or
              ternary (then only sign changes and additions); batch norm: 3 per element (the square for
              the variance, the normalization, γ); the loss: 1 per score (the square).
    Backward: δ·W for every weight layer but the first (no input gradient is needed there), unless its
              weights are binary/ternary; δᵀ·x for every weight layer, unless x is quantized to powers
              of two (shifts); batch norm: 5 per element; the loss: 1 per score.
    Update:   1 per parameter (learning rate times gradient; the Glorot scale folds into the rate).
    Rounding to a power of two, hard sigmoid ((w+1)/2: a shift) and sampling cost no multiplication.
    """
    counts = {"forward": 0, "backward": 0, "update": 0}
    shapes: dict[nn.Module, tuple[torch.Size, torch.Size]] = {}
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.__setitem__(m, (i[0].shape, o.shape)))
             for m in model if isinstance(m, (QuantizedLayer, nn.BatchNorm1d, nn.BatchNorm2d))]
    was_training = model.training
    try:
        model.train()
        with torch.no_grad(), fork_rng(x.device):
            scores = model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    first = True
    for module in model:
        if module not in shapes:
            continue
        _, out_shape = shapes[module]
        outputs = math.prod(out_shape)
        if isinstance(module, QuantizedLayer):
            products = outputs * math.prod(module.weight.shape[1:])  # outputs × fan-in
            exact_weights = module.mode == "full"
            counts["forward"] += products if exact_weights else 0
            counts["backward"] += (products if exact_weights and not first else 0) \
                + (0 if module.quantized_backprop else products)
            counts["update"] += module.weight.numel()
            first = False
        else:
            counts["forward"] += 3 * outputs
            counts["backward"] += 5 * outputs
            counts["update"] += module.weight.numel() + module.bias.numel()
    counts["forward"] += scores.numel()
    counts["backward"] += scores.numel()
    counts["total"] = counts["forward"] + counts["backward"] + counts["update"]
    return counts
