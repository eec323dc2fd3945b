"""CIFAR ResNets, written by hand (torchvision does not import beside this torch).

Two families, both with BasicBlocks (two 3×3 convolutions, BN after each, ReLU after the sum):

    ResNet-18 / 34, CIFAR stem    the SimCLR CIFAR encoder (official `resnet.py`,
                                  `cifar_stem = image_size <= 32`): a 3×3 conv of stride 1 and no
                                  max-pool, then stages of [2,2,2,2] (18) or [3,4,6,3] (34) blocks,
                                  widths 64-128-256-512, strides 1-2-2-2, 1×1 projection shortcuts
                                  (He et al. 2016 option B) where the shape changes; h ∈ R^512.
    ResNet-(6n+2)                 He et al. 2016 §4.2: a 3×3 conv to 16 channels, 3 stages of n blocks,
                                  widths 16-32-64, strides 1-2-2, parameter-free shortcuts (option A:
                                  subsample by 2 and zero-pad the new channels); ResNet-20 is n = 3
                                  (0.27M parameters), ResNet-8 n = 1; h ∈ R^64.

`width` multiplies every stage's channels (SimCLR's `width_multiplier`). Each residual branch's last
BN starts with γ = 0 (`init_zero=True` in the official `residual_block`), so every block starts as
the identity. BN uses ε = 1e-5 and running-average momentum 0.1 (the official `BATCH_NORM_EPSILON`
and `batch_norm_decay` 0.9). Convolutions start from He et al. 2015 (normal, std √(2 / fan-in)), as
He et al. 2016 §3.4 do; the official code's `variance_scaling_initializer()` is std √(1 / fan-in), a
difference the BN after every convolution absorbs.

`forward` returns the globally average-pooled representation h (B, feature_dim); no classifier.
Every op is batched, so the model runs in `torch.channels_last` as well:
`model.to(memory_format=torch.channels_last)` and the input `x.contiguous(memory_format=...)`.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# -- the architectures -----------------------------------------------------------------------------
IMAGENET_STYLE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}  # He et al. 2016 Table 1, BasicBlock rows
IMAGENET_STYLE_WIDTHS = (64, 128, 256, 512)
CIFAR_WIDTHS = (16, 32, 64)  # He et al. 2016 §4.2: "the numbers of filters are {16, 32, 64}"
SHORTCUTS = ("projection", "zero_pad")
BOTTLENECK_DEPTHS = (50, 101, 152)  # ImageNet's Bottleneck ResNets; 50 and 152 are also 6n + 2, so refuse them


class BasicBlock(nn.Module):
    """relu(bn(conv3×3(relu(bn(conv3×3(x))))) + shortcut(x)); the first conv carries the stride."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride = stride
        self.extra_channels = out_channels - in_channels
        self.projection = None
        if (stride != 1 or in_channels != out_channels) and shortcut == "projection":
            self.projection = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.projection is not None:
            return self.projection(x)
        if self.stride != 1:  # option A: keep every second pixel ...
            x = x[:, :, ::self.stride, ::self.stride]
        if self.extra_channels:  # ... and append zero channels
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR stem (3×3 conv, stride 1, BN, ReLU; no max-pool), stages of BasicBlocks, global average
    pool. `forward(x)` maps (B, in_channels, H, W) to h (B, feature_dim)."""

    def __init__(self, blocks_per_stage: tuple[int, ...], widths: tuple[int, ...], shortcut: str,
                 in_channels: int = 3, zero_init_residual: bool = True):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}; valid: {', '.join(SHORTCUTS)}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages, channels = [], widths[0]
        for i, (n_blocks, width) in enumerate(zip(blocks_per_stage, widths)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n_blocks):
                blocks.append(BasicBlock(channels, width, stride if j == 0 else 1, shortcut))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.feature_dim = channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).mean(dim=(2, 3))


def _parse_depth(depth_or_name: int | str) -> int:
    if isinstance(depth_or_name, str):
        name = depth_or_name.lower().replace("-", "").replace("_", "")
        if not (name.startswith("resnet") and name[6:].isdigit()):
            raise ValueError(f"unknown ResNet {depth_or_name!r}; give a depth or a name such as 'resnet18', "
                             "'resnet20', 'resnet8'")
        return int(name[6:])
    if isinstance(depth_or_name, bool) or not isinstance(depth_or_name, int):
        raise ValueError(f"depth_or_name must be an int or a name such as 'resnet20', not {depth_or_name!r}")
    return depth_or_name


def resnet(depth_or_name: int | str, width: float = 1, in_channels: int = 3, shortcut: str | None = None,
           zero_init_residual: bool = True) -> ResNet:
    """A CIFAR ResNet by depth: 18 or 34 (ImageNet-style stages, CIFAR stem; the SimCLR paper tier), or
    6n + 2 = 8, 14, 20, 26, 32, 44, 56, ... but not 50 or 152 (He et al. 2016 §4.2; the cpu tier). `width` multiplies
    every stage's channels. `shortcut` defaults to "projection" for 18/34 and "zero_pad" (option A)
    for 6n + 2; either can be asked for either family."""
    depth = _parse_depth(depth_or_name)
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    if depth in BOTTLENECK_DEPTHS:
        raise ValueError(f"ResNet-{depth} is a Bottleneck ResNet, not implemented; valid depths: 18 or 34 "
                         "(BasicBlock stages, widths 64-512), or 6n + 2 = 8, 14, 20, 26, 32, 44, 56, ...")
    if depth in IMAGENET_STYLE_BLOCKS:
        blocks, base, default_shortcut = IMAGENET_STYLE_BLOCKS[depth], IMAGENET_STYLE_WIDTHS, "projection"
    elif depth >= 8 and (depth - 2) % 6 == 0:
        blocks, base, default_shortcut = (((depth - 2) // 6),) * 3, CIFAR_WIDTHS, "zero_pad"
    else:
        raise ValueError(f"no ResNet of depth {depth}; valid: 18 or 34 (BasicBlock stages, widths 64-512), or "
                         "6n + 2 = 8, 14, 20, 26, 32, 44, 56, ... (He et al. 2016 §4.2, widths 16-32-64)")
    widths = tuple(max(1, int(round(c * width))) for c in base)
    return ResNet(blocks, widths, shortcut or default_shortcut, in_channels, zero_init_residual)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
