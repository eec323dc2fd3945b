"""The Generative Adversarial Metric (GAM, Im et al. 2016 §4): a battle between two trained GANs.

M1 = (G1, D1), M2 = (G2, D2); ε(·) is a discriminator's classification error rate (a logit > 0 means
"real"; every test image is real, every generated image fake):

    r_test   = ε(D1(x_test)) / ε(D2(x_test))
    r_sample = ε(D1(G2(z))) / ε(D2(G1(z)))

    winner   = M1 if r_sample < 1 and r_test ≈ 1;  M2 if r_sample > 1 and r_test ≈ 1;  a tie otherwise.

This is the paper's convention (error rates). The official battle.py instead divides accuracies,
(1 - ε(D1(G2))) / (1 - ε(D2(G1))), and declares M1 the winner when that ratio is > 1; both orderings agree
on who fools whom, but the numbers differ. We report the error rates too, so either ratio can be formed.

Zero error rates (the ratio's guard): ε_a / ε_b is +inf for ε_a > 0 = ε_b, and 1 for ε_a = ε_b = 0 (equal
rates; then r_test ≈ 1 holds and r_sample gives a tie). Swapping M1 and M2 turns every ratio r into 1/r
exactly (1/inf = 0).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch

SampleFn = Callable[[int], torch.Tensor]          # n -> images (n, C, H, W) in [0, 1]
DiscriminateFn = Callable[[torch.Tensor], torch.Tensor]  # images -> logits (n,)
Model = tuple[SampleFn, DiscriminateFn]


def error_rate(logits: torch.Tensor, real: bool) -> float:
    """Fraction of images the discriminator gets wrong: logit <= 0 on real images, > 0 on fakes."""
    logits = logits.reshape(-1)
    if logits.numel() == 0:
        raise ValueError("error_rate needs at least one logit")
    wrong = logits <= 0 if real else logits > 0
    return wrong.double().mean().item()


def ratio(numerator: float, denominator: float) -> float:
    """ε_a / ε_b with the zero guard: x/0 = +inf for x > 0, 0/0 = 1 (equal error rates)."""
    if denominator == 0.0:
        return 1.0 if numerator == 0.0 else math.inf
    return numerator / denominator


def winner(r_test: float, r_sample: float, tol: float) -> int:
    """1 if M1 wins, 2 if M2 wins, 0 for a tie or an invalid battle (|r_test - 1| > tol)."""
    if not abs(r_test - 1.0) <= tol:
        return 0
    if r_sample < 1.0:
        return 1
    if r_sample > 1.0:
        return 2
    return 0


@dataclass(frozen=True)
class Battle:
    err_d1_test: float     # ε(D1(x_test))
    err_d2_test: float     # ε(D2(x_test))
    err_d1_on_g2: float    # ε(D1(G2(z)))
    err_d2_on_g1: float    # ε(D2(G1(z)))
    r_test: float
    r_sample: float
    valid: bool            # r_test ≈ 1 within the tolerance
    winner: int            # 1, 2 or 0 (tie / invalid)

    def swapped(self, tol: float) -> "Battle":
        """The same battle with M1 and M2 exchanged (no re-evaluation)."""
        return from_errors(self.err_d2_test, self.err_d1_test, self.err_d2_on_g1, self.err_d1_on_g2, tol)

    def as_dict(self) -> dict:
        return asdict(self)


def from_errors(err_d1_test: float, err_d2_test: float, err_d1_on_g2: float, err_d2_on_g1: float,
                tol: float) -> Battle:
    r_test = ratio(err_d1_test, err_d2_test)
    r_sample = ratio(err_d1_on_g2, err_d2_on_g1)
    return Battle(err_d1_test, err_d2_test, err_d1_on_g2, err_d2_on_g1, r_test, r_sample,
                  valid=abs(r_test - 1.0) <= tol, winner=winner(r_test, r_sample, tol))


@torch.no_grad()
def _logits(discriminate: DiscriminateFn, images: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([discriminate(images[i:i + batch]).reshape(-1) for i in range(0, len(images), batch)])


@torch.no_grad()
def gam_battle(model1: Model, model2: Model, x_test: torch.Tensor, n_samples: int, tol: float = 0.1,
               batch: int = 1000) -> Battle:
    """Battle M1 = (sample_fn, discriminate_fn) against M2 on real test images x_test (N, C, H, W) in [0, 1].

    Each generator draws `n_samples` images once; each discriminator judges the test set and the other
    model's samples, in batches of `batch`. `tol` is the tolerance of r_test ≈ 1.
    """
    (sample1, disc1), (sample2, disc2) = model1, model2
    if n_samples < 1 or len(x_test) < 1:
        raise ValueError(f"need n_samples >= 1 and a non-empty test set, got {n_samples} and {len(x_test)}")
    fake1, fake2 = sample1(n_samples), sample2(n_samples)
    for name, fake in (("model1", fake1), ("model2", fake2)):
        if fake.shape[1:] != x_test.shape[1:]:
            raise ValueError(f"{name} samples have shape {tuple(fake.shape[1:])}, the test images "
                             f"{tuple(x_test.shape[1:])}")
    return from_errors(error_rate(_logits(disc1, x_test, batch), real=True),
                       error_rate(_logits(disc2, x_test, batch), real=True),
                       error_rate(_logits(disc1, fake2, batch), real=False),
                       error_rate(_logits(disc2, fake1, batch), real=False), tol)


def as_model(generator: torch.nn.Module, discriminator: torch.nn.Module, noise: Callable[[int], torch.Tensor],
             batch: int = 1000, generator_batch_stats: bool = False) -> Model:
    """Adapter for a (Generator, Discriminator) pair of modules; no gradients, D in evaluation mode.

    `noise(n)` draws the generator's input, e.g. ``lambda n: sample_noise(n, G.noise_dim, generator=g)``
    with reproductions.gan.gan.sample_noise or reproductions.gran.gran.sample_noise. The generator runs
    in evaluation mode, or, with `generator_batch_stats`, in training mode so that its batch norm
    normalises each batch of `batch` samples by its own statistics (the official GRAN samples so:
    `get_samples` calls the BN layers with testF=False).
    """
    @torch.no_grad()
    def sample(n: int) -> torch.Tensor:
        generator.train(generator_batch_stats)
        return torch.cat([generator(noise(min(batch, n - i))) for i in range(0, n, batch)])

    @torch.no_grad()
    def discriminate(images: torch.Tensor) -> torch.Tensor:
        discriminator.eval()
        return discriminator(images)

    return sample, discriminate
