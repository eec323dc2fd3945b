"""Auto-Encoding Variational Bayes (Kingma & Welling 2013): the variational auto-encoder of §3 and
Appendix C, its SGVB lower bound (eq. 10), and an importance-sampled estimate of log p(x).

  encoder q(z|x):  h = tanh(W1 x + b1);  μ, log σ² = W2 h + b2          (Appendix C.2, "Gaussian MLP")
  decoder p(x|z):  h = tanh(W3 z + b3);  Bernoulli logits = W4 h + b4   (C.1, MNIST)
                                         or mean = sigmoid(W4 h + b4), log σ² = W5 h + b5  (C.2, Frey Face)
  ELBO(x) = -KL(q(z|x) || N(0, I)) + log p(x|z),  z = μ + σ ⊙ ε,  ε ~ N(0, I),  L = 1   (eq. 10, App. B)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LIKELIHOODS = ("bernoulli", "gaussian")
LOG_2PI = math.log(2 * math.pi)


class VAE(nn.Module):
    def __init__(self, data_dim: int, hidden: int, latent: int, likelihood: str, init_std: float = 0.01):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; valid: {', '.join(LIKELIHOODS)}")
        self.likelihood, self.latent = likelihood, latent
        self.enc_hidden = nn.Linear(data_dim, hidden)
        self.enc_out = nn.Linear(hidden, 2 * latent)          # μ and log σ² of q(z|x)
        self.dec_hidden = nn.Linear(latent, hidden)
        out = data_dim if likelihood == "bernoulli" else 2 * data_dim  # logits, or mean and log σ²
        self.dec_out = nn.Linear(hidden, out)
        for p in self.parameters():                            # §5: "parameters ... sampled from N(0, 0.01)"
            nn.init.normal_(p, 0.0, init_std)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.enc_out(torch.tanh(self.enc_hidden(x))).chunk(2, dim=-1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec_out(torch.tanh(self.dec_hidden(z)))

    def log_px_given_z(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over dimensions; x broadcasts against decoded (..., D)."""
        if self.likelihood == "bernoulli":
            logits, target = torch.broadcast_tensors(decoded, x)
            return -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)
        mean_logit, log_var = decoded.chunk(2, dim=-1)
        mean = torch.sigmoid(mean_logit)                       # App. C.2: Frey Face means through a sigmoid
        return -0.5 * (LOG_2PI + log_var + (x - mean) ** 2 / log_var.exp()).sum(-1)

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """The SGVB estimator B(θ, φ; x) of eq. 10 with one sample, per datapoint."""
        mu, log_var = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp()  # reparameterization (§2.4)
        return self.log_px_given_z(x, self.decode(z)) - kl_to_standard_normal(mu, log_var)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Decoder means of z ~ N(0, I): probabilities (Bernoulli) or sigmoid means (Gaussian)."""
        return self.mean_image(torch.randn(n, self.latent, device=self.enc_hidden.weight.device))

    @torch.no_grad()
    def mean_image(self, z: torch.Tensor) -> torch.Tensor:
        decoded = self.decode(z)
        if self.likelihood == "gaussian":
            decoded = decoded.chunk(2, dim=-1)[0]
        return torch.sigmoid(decoded)


def kl_to_standard_normal(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) || N(0, I)) in closed form (Appendix B): -½ Σ (1 + log σ² - μ² - σ²)."""
    return -0.5 * (1 + log_var - mu ** 2 - log_var.exp()).sum(-1)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    return -0.5 * (LOG_2PI + log_var + (z - mu) ** 2 / log_var.exp()).sum(-1)


@torch.no_grad()
def log_px_importance(model: VAE, x: torch.Tensor, samples: int, chunk: int = 50) -> torch.Tensor:
    """log p(x) ≈ log (1/K) Σ_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x): the importance-sampling estimate
    with the encoder as proposal. A lower bound in expectation that tightens as K grows (Burda et al.
    2015); the paper's Fig. 3 used an HMC-based estimator instead (README, deviations)."""
    mu, log_var = model.encode(x)
    std = (0.5 * log_var).exp()
    log_weights = []
    for start in range(0, samples, chunk):
        k = min(chunk, samples - start)
        z = mu + std * torch.randn(k, *mu.shape, device=mu.device)                       # (k, N, latent)
        log_joint = model.log_px_given_z(x, model.decode(z)) + gaussian_log_density(z, 0 * z, 0 * z)
        log_weights.append(log_joint - gaussian_log_density(z, mu, log_var))
    return torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(samples)
