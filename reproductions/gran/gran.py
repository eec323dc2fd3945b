"""GRAN (Im et al. 2016): the recurrent generator, a DCGAN-style one-step baseline, and the discriminator.

Images everywhere are (N, C, H, W) in [0, 1], the format shared with reproductions/gan, so that any two
models can battle (gam.py). H = W = 28 (MNIST, C = 1) or 32 (CIFAR-10, C = 3).

The recurrence (§3, Fig. 1; official recGenI28.py / recGenI32.py, `apply_recurrence`):

    h_z      = tanh(BN(W_z z))                      one z per image, the same at every step
    h_c,0    = 0
    ΔC_t     = f([h_z, h_c,t-1])                     decoder: linear -> deconvolutions, linear output
    h_c,t    = g(ΔC_t)                               encoder: convolutions -> linear -> tanh
    x        = tanh(Σ_t ΔC_t),  image = (x + 1) / 2

(x + 1) / 2 = sigmoid(2 Σ ΔC_t): the official code applies a sigmoid to the sum, the same function class.
"""
from __future__ import annotations

import torch
from torch import nn

BASE = {28: 7, 32: 4}  # spatial size of the decoder's first feature map (each deconv doubles it)


def _base(image_size: int) -> tuple[int, int]:
    if image_size not in BASE:
        raise ValueError(f"image_size must be one of {sorted(BASE)}, got {image_size}")
    base = BASE[image_size]
    n_up = {7: 2, 4: 3}[base]  # 7 -> 14 -> 28, 4 -> 8 -> 16 -> 32
    return base, n_up


def _init(module: nn.Module) -> None:
    """DCGAN init: conv/linear weights N(0, 0.02), BN scale N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Decoder(nn.Module):
    """f: code (N, in_dim) -> (N, channels, S, S), linear output. A DCGAN generator body:
    linear to width x base², BN, ReLU, then stride-2 4x4 deconvolutions halving the width."""

    def __init__(self, in_dim: int, width: int, channels: int, image_size: int):
        super().__init__()
        base, n_up = _base(image_size)
        self.width, self.base = width, base
        self.fc = nn.Sequential(nn.Linear(in_dim, width * base * base, bias=False),
                                nn.BatchNorm1d(width * base * base), nn.ReLU())
        layers, c = [], width
        for _ in range(n_up - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
        layers.append(nn.ConvTranspose2d(c, channels, 4, 2, 1))
        self.deconv = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(h).view(-1, self.width, self.base, self.base))


class Encoder(nn.Module):
    """g: canvas (N, channels, S, S) -> code (N, code_dim) in (-1, 1): the decoder mirrored
    (stride-2 4x4 convolutions, BN, ReLU), then linear, BN, tanh (official `backward`, L0b)."""

    def __init__(self, code_dim: int, width: int, channels: int, image_size: int):
        super().__init__()
        base, n_up = _base(image_size)
        layers, c_in = [], channels
        for i in range(n_up):
            c_out = width // 2 ** (n_up - 1 - i)
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(width * base * base, code_dim, bias=False), nn.BatchNorm1d(code_dim),
                                nn.Tanh())

    def forward(self, canvas: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(canvas).flatten(1))


class GRAN(nn.Module):
    """The recurrent generator with T = `steps` canvas steps. forward(z) -> images in [0, 1]."""

    def __init__(self, noise_dim: int, steps: int, width: int, channels: int = 1, image_size: int = 28):
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.noise_dim, self.steps = noise_dim, steps
        self.project_z = nn.Sequential(nn.Linear(noise_dim, noise_dim, bias=False), nn.BatchNorm1d(noise_dim),
                                       nn.Tanh())
        self.decoder = Decoder(2 * noise_dim, width, channels, image_size)
        self.encoder = Encoder(noise_dim, width, channels, image_size)
        _init(self)

    def canvases(self, z: torch.Tensor) -> torch.Tensor:
        """The T canvas increments ΔC_1..ΔC_T, shape (T, N, C, S, S)."""
        h_z = self.project_z(z)  # z enters once and is reused at every step
        h_c = torch.zeros_like(h_z)
        deltas = []
        for t in range(self.steps):
            delta = self.decoder(torch.cat([h_z, h_c], dim=1))
            deltas.append(delta)
            if t + 1 < self.steps:  # the last canvas is not read back
                h_c = self.encoder(delta)
        return torch.stack(deltas)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(self.canvases(z).sum(0)) + 1) / 2

    @torch.no_grad()
    def drawing(self, z: torch.Tensor) -> torch.Tensor:
        """The image after each step, (tanh(Σ_{s<=t} ΔC_s) + 1) / 2, shape (T, N, C, S, S) (Fig. 3-style)."""
        return (torch.tanh(self.canvases(z).cumsum(0)) + 1) / 2


class DCGANGenerator(nn.Module):
    """The one-step baseline (Radford et al. 2015 layout at this size): z -> decoder -> tanh.
    Unlike GRAN with T = 1 it has no z projection and no encoder input."""

    def __init__(self, noise_dim: int, width: int, channels: int = 1, image_size: int = 28):
        super().__init__()
        self.noise_dim = noise_dim
        self.decoder = Decoder(noise_dim, width, channels, image_size)
        _init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(self.decoder(z)) + 1) / 2


class Discriminator(nn.Module):
    """x (N, C, S, S) in [0, 1] -> logits (N,). Stride-2 4x4 convolutions doubling the width, LeakyReLU 0.2,
    then a linear logit. No batch norm, so a logit depends on its own image only (GAM needs per-image
    decisions; see README, deviations)."""

    def __init__(self, width: int, channels: int = 1, image_size: int = 28):
        super().__init__()
        base, n_down = _base(image_size)
        layers, c_in, c_out = [], channels, width
        for _ in range(n_down):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
            c_in, c_out = c_out, c_out * 2
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(c_in * base * base, 1)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(2 * x - 1).flatten(1)).squeeze(1)


def sample_noise(n: int, noise_dim: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """z ~ N(0, I) (official code: MRG.normal)."""
    return torch.randn(n, noise_dim, generator=generator, device=device)
