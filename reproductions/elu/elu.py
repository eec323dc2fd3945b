"""ELU (Clevert, Unterthiner & Hochreiter 2015): the activation functions and the networks of §4.

The four units the paper compares (§4, Fig. 1):

    ELU    f(x) = x for x > 0, α (exp(x) - 1) otherwise              (eq. 15; α = 1)
    ReLU   f(x) = max(0, x)
    LReLU  f(x) = max(αx, x)                                          (α = 0.1)
    SReLU  f(x) = max(-1, x), the *shifted* ReLU                      (Fig. 1: "shifted ReLUs")

and the networks: a fully connected classifier (§4.1, 8 × 128 on MNIST), the MNIST autoencoder
(§4.2, 1000-500-250-30 with a symmetric decoder) and the paper's CNN family (§4.3-4.4), written as
stacks of convolutions with 2×2 max-pooling between stacks. Every weight starts from He et al.'s
initialization (normal, std √(2 / fan-in)) and every bias from zero (§4.1).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = ("elu", "relu", "lrelu", "srelu")


class SReLU(nn.Module):
    """The shifted ReLU of the paper's comparison, max(-1, x): a ReLU moved down by one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=-1.0)


def activation(name: str, elu_alpha: float = 1.0, lrelu_slope: float = 0.1) -> nn.Module:
    if name == "elu":
        return nn.ELU(alpha=elu_alpha)
    if name == "relu":
        return nn.ReLU()
    if name == "lrelu":
        return nn.LeakyReLU(negative_slope=lrelu_slope)
    if name == "srelu":
        return SReLU()
    raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")


def he_init_(module: nn.Module) -> None:
    """He et al. 2015 for every linear and convolutional layer: N(0, 2 / fan-in) weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)


class MLP(nn.Module):
    """Fully connected layers, each followed by the activation except the last (a linear output).

    `forward(x, keep_hidden=True)` also returns the hidden layers' outputs, for the activation
    statistics of Fig. 2a."""

    def __init__(self, sizes: list[int], act: str, elu_alpha: float = 1.0):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = activation(act, elu_alpha)
        he_init_(self)

    def forward(self, x: torch.Tensor, keep_hidden: bool = False):
        hidden = []
        for linear in self.linears[:-1]:
            x = self.act(linear(x))
            if keep_hidden:
                hidden.append(x)
        out = self.linears[-1](x)
        return (out, hidden) if keep_hidden else out


def classifier(inputs: int, hidden: int, depth: int, classes: int, act: str, elu_alpha: float = 1.0) -> MLP:
    """§4.1: `depth` hidden layers of `hidden` units, a linear layer of class scores."""
    return MLP([inputs] + [hidden] * depth + [classes], act, elu_alpha)


def autoencoder(inputs: int, encoder: list[int], act: str, elu_alpha: float = 1.0) -> MLP:
    """§4.2: the encoder's layers, then the same sizes in reverse, then a linear reconstruction of the
    input; the activation follows every hidden layer, the 30-unit code included."""
    sizes = [inputs] + encoder + encoder[-2::-1] + [inputs]
    return MLP(sizes, act, elu_alpha)


# -- the CNN family of §4.3-4.4 ---------------------------------------------------------------------
def parse_stacks(spec: str) -> list[list[tuple[int, int]]]:
    """The paper's notation for its CNNs, one stack per '|', layers 'units x kernel' per ','. E.g. the
    CIFAR-100 net of §4.3, ([1×192×5], [1×192×1, 1×240×3], ...), is '192x5|192x1,240x3|...'.
    Each stack ends in 2×2 max-pooling with stride 2, except the last one."""
    stacks = []
    for stack in spec.split("|"):
        layers = []
        for layer in stack.split(","):
            units, sep, kernel = layer.strip().partition("x")
            if not (sep and units.isdigit() and kernel.isdigit() and int(units) > 0 and int(kernel) > 0):
                raise ValueError(f"bad CNN layer {layer!r} in {spec!r}: each layer is 'units x kernel', e.g. "
                                 "'192x5', layers joined by ',' and stacks by '|'")
            layers.append((int(units), int(kernel)))
        stacks.append(layers)
    return stacks


class StackedCNN(nn.Module):
    """Conv layers with 'same' padding, optional batch norm before each activation, 2×2 max-pooling
    with stride 2 after every stack but the last (while the maps are at least 2×2), dropout at the end
    of each stack (one rate per stack), and the last layer's maps averaged into class scores (the last
    layer has as many units as classes, as in §4.3-4.4)."""

    def __init__(self, spec: str, in_channels: int, image_size: int, act: str, batch_norm: bool = False,
                 dropout: list[float] | None = None, elu_alpha: float = 1.0):
        super().__init__()
        stacks = parse_stacks(spec)
        dropout = dropout or [0.0] * len(stacks)
        if len(dropout) != len(stacks):
            raise ValueError(f"{len(dropout)} dropout rates for {len(stacks)} stacks; give one rate per stack")
        blocks: list[nn.Module] = []
        channels, size = in_channels, image_size
        last_layer = (len(stacks) - 1, len(stacks[-1]) - 1)
        for i, stack in enumerate(stacks):
            for j, (units, kernel) in enumerate(stack):
                left = (kernel - 1) // 2  # 'same' padding; an even kernel's extra pixel goes right and below
                blocks += [nn.ZeroPad2d((left, kernel - 1 - left, left, kernel - 1 - left)),
                           nn.Conv2d(channels, units, kernel)]
                if (i, j) != last_layer:
                    if batch_norm:
                        blocks.append(nn.BatchNorm2d(units))
                    blocks.append(activation(act, elu_alpha))
                channels = units
            if i < len(stacks) - 1 and size >= 2:
                blocks.append(nn.MaxPool2d(2, 2))
                size //= 2
            if dropout[i] > 0:
                blocks.append(nn.Dropout(dropout[i]))
        self.body = nn.Sequential(*blocks)
        he_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))


# -- augmentation of §4.3-4.4 ----------------------------------------------------------------------------
def pad_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """The paper's augmentation: zero-pad by `pad` pixels, take a random crop of the original size, and
    flip half of the images horizontally; all images at once, one random offset and flip per image.
    Runs on x's device, drawing from `generator`, which must live there too."""
    n, c, h, w = x.shape
    device = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
    rows = (dy[:, None] + torch.arange(h, device=device)[None, :])[:, None, :, None].expand(n, c, h, w)
    cols = (dx[:, None] + torch.arange(w, device=device)[None, :])[:, None, None, :].expand(n, c, h, w)
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    cols = torch.where(flip[:, None, None, None], cols.flip(-1), cols)
    batch = torch.arange(n, device=device)[:, None, None, None]
    chan = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def median_unit_means(hidden: list[torch.Tensor]) -> list[float]:
    """Fig. 2a's statistic, per hidden layer: each unit's mean activation over the batch, then the
    median over the layer's units."""
    return [float(h.mean(0).median()) for h in hidden]
