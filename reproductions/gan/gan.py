"""Generative Adversarial Nets (Goodfellow et al. 2014): the MNIST networks, the two generator losses,
and the Parzen-window log-likelihood estimator of §5 / Table 1.

Networks follow the official goodfeli/adversarial `mnist.yaml` (pylearn2):
  G: z (100-d, N(0, 1): `adversarial.Generator`'s default noise) -> 1200 ReLU -> 1200 ReLU -> 784 sigmoid,
     weights U(-0.05, 0.05), output bias = logit of the training pixel marginals;
  D: x (784) -> maxout 240 units x 5 pieces -> maxout 240 x 5 -> 1 sigmoid, weights U(-0.005, 0.005),
     dropout on every layer's input (keep 0.8 on the pixels, 0.5 on hidden units, inverted scaling).

Public interface (used by the GRAN reproduction's GAM battles):
  Generator.forward(z: (N, noise_dim)) -> (N, 1, 28, 28) in [0, 1]
  Discriminator.forward(x: (N, 1, 28, 28)) -> (N,) logits of "x is real"
  sample_noise(n, noise_dim, generator=None) -> (n, noise_dim)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SHAPE = (1, 28, 28)
PIXELS = 784


def sample_noise(n: int, noise_dim: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """p_z: independent standard normals, the official `Generator(noise="gaussian")` default."""
    return torch.randn(n, noise_dim, generator=generator, device=device)


def _uniform_init(layer: nn.Linear, irange: float) -> None:
    """pylearn2 `irange`: weights U(-irange, irange), biases 0."""
    nn.init.uniform_(layer.weight, -irange, irange)
    nn.init.zeros_(layer.bias)


class Maxout(nn.Module):
    """pylearn2 Maxout layer: `units` outputs, each the max over `pieces` consecutive linear units."""

    def __init__(self, in_features: int, units: int, pieces: int, irange: float):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)
        _uniform_init(self.linear, irange)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.units, self.pieces).amax(dim=2)


class Generator(nn.Module):
    """Noise enters at the bottom only (§3); ReLU hidden layers, sigmoid pixels."""

    def __init__(self, noise_dim: int = 100, hidden: int = 1200, irange: float = 0.05):
        super().__init__()
        self.noise_dim = noise_dim
        self.h0 = nn.Linear(noise_dim, hidden)
        self.h1 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, PIXELS)
        for layer in (self.h0, self.h1, self.out):
            _uniform_init(layer, irange)

    def init_output_bias(self, pixel_means: torch.Tensor, eps: float = 1e-3) -> None:
        """pylearn2 `init_sigmoid_bias_from_marginals`: sigmoid(bias) = the data's mean pixel values
        (clipped to [eps, 1 - eps] so that always-black pixels get a finite bias)."""
        p = pixel_means.reshape(PIXELS).clamp(eps, 1 - eps)
        with torch.no_grad():
            self.out.bias.copy_(torch.log(p) - torch.log1p(-p))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.h1(F.relu(self.h0(z))))
        return torch.sigmoid(self.out(h)).view(-1, *IMAGE_SHAPE)


class Discriminator(nn.Module):
    """Maxout MLP with dropout on each layer's input (active in train mode only); returns logits."""

    def __init__(self, units: int = 240, pieces: int = 5, input_keep: float = 0.8, hidden_keep: float = 0.5,
                 irange: float = 0.005):
        super().__init__()
        self.input_keep, self.hidden_keep = input_keep, hidden_keep
        self.h0 = Maxout(PIXELS, units, pieces, irange)
        self.h1 = Maxout(units, units, pieces, irange)
        self.out = nn.Linear(units, 1)
        _uniform_init(self.out, irange)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        drop_in, drop_hidden = 1 - self.input_keep, 1 - self.hidden_keep
        h = F.dropout(x.reshape(x.shape[0], PIXELS), drop_in, self.training)
        h = F.dropout(self.h0(h), drop_hidden, self.training)
        h = F.dropout(self.h1(h), drop_hidden, self.training)
        return self.out(h).squeeze(1)


# -- objectives (Eq. 1 and §3) ------------------------------------------------------------------------
def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-(1/2)[log D(x) + log(1 - D(G(z)))], as AdversaryCost2's d_obj (mean cross-entropy of both halves)."""
    return 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())


def generator_loss(fake_logits: torch.Tensor, saturating: bool = False) -> torch.Tensor:
    """Non-saturating (§3, what the paper trains): minimize -log D(G(z)) = softplus(-l).
    Saturating (the minimax game of Eq. 1): minimize log(1 - D(G(z))) = -softplus(l), whose gradient
    vanishes when D confidently rejects the samples (D(G(z)) -> 0)."""
    if saturating:
        return -F.softplus(fake_logits).mean()
    return F.softplus(-fake_logits).mean()


# -- Parzen-window log-likelihood (goodfeli/adversarial parzen_ll.py) ----------------------------------
def parzen_log_likelihood(x: torch.Tensor, mu: torch.Tensor, sigmas, x_batch: int = 1000,
                          mu_batch: int = 2000, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """log p(x) under an isotropic Gaussian kernel density centred on the rows of `mu`, for every
    bandwidth in `sigmas`:  log (1/M) Σ_j N(x; mu_j, σ²I)  ->  (N, K) float64.

    Squared distances come from one matmul per (x, mu) block (|x|² + |mu|² - 2 x·mu); the mean over
    mu is a log-sum-exp over blocks, so memory is O(x_batch · mu_batch · K) whatever N and M are.
    """
    x = x.reshape(x.shape[0], -1).to(dtype)
    mu = mu.reshape(mu.shape[0], -1).to(dtype)
    if x.shape[1] != mu.shape[1]:
        raise ValueError(f"x has {x.shape[1]} dimensions but mu has {mu.shape[1]}")
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64, device=x.device).reshape(-1)
    scale = (0.5 / sigmas ** 2).to(dtype)
    d, m = x.shape[1], mu.shape[0]
    mu_sq = (mu * mu).sum(1)
    rows = []
    for i in range(0, x.shape[0], x_batch):
        xb = x[i:i + x_batch]
        xb_sq = (xb * xb).sum(1, keepdim=True)
        blocks = []
        for j in range(0, m, mu_batch):
            sq = (xb_sq + mu_sq[j:j + mu_batch] - 2.0 * xb @ mu[j:j + mu_batch].T).clamp_min_(0.0)
            blocks.append(torch.logsumexp(-sq.unsqueeze(2) * scale, dim=1))  # (n, K)
        rows.append(torch.logsumexp(torch.stack(blocks), dim=0).double())
    log_mean = torch.cat(rows) - math.log(m)
    log_z = d * torch.log(sigmas * math.sqrt(2 * math.pi))
    return log_mean - log_z


def select_sigma(valid: torch.Tensor, mu: torch.Tensor, sigmas, **kw) -> tuple[float, int, torch.Tensor]:
    """parzen_ll.py's cross_validate_sigma: the σ of the grid with the highest mean validation LL.
    Returns (σ, its index in the grid, the mean LL per σ)."""
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64, device=valid.device).reshape(-1)
    means = parzen_log_likelihood(valid, mu, sigmas, **kw).mean(0)
    best = int(torch.argmax(means))
    return float(sigmas[best]), best, means


def nearest_neighbour(x: torch.Tensor, ref: torch.Tensor, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """L2 distance from each row of x to its nearest row of ref, and that row's index."""
    x = x.reshape(x.shape[0], -1).float()
    ref = ref.reshape(ref.shape[0], -1).float()
    ref_sq = (ref * ref).sum(1)
    dists, idx = [], []
    for i in range(0, x.shape[0], batch):
        xb = x[i:i + batch]
        sq = ((xb * xb).sum(1, keepdim=True) + ref_sq - 2.0 * xb @ ref.T).clamp_min_(0.0)
        best, arg = sq.min(dim=1)
        dists.append(best.sqrt())
        idx.append(arg)
    return torch.cat(dists), torch.cat(idx)
