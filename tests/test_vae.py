"""AEVB (reproductions/vae): the bound's pieces against direct computations, the importance-sampled
log p(x) against exact integration, and the runner's data, schedule and resume behaviour."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from reproductions.vae import runner
from reproductions.vae.vae import VAE, kl_to_standard_normal, log_px_importance
from tests.conftest import assert_usage_error, require_datasets
from tests.resume import kill_then_resume


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def test_closed_form_kl_matches_monte_carlo():
    mu, log_var = torch.tensor([[0.5, -1.0, 2.0]]), torch.tensor([[0.2, -0.7, 1.1]])
    q = torch.distributions.Normal(mu, (0.5 * log_var).exp())
    z = q.sample((200_000,))
    p = torch.distributions.Normal(0.0, 1.0)
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean()
    assert float(kl_to_standard_normal(mu, log_var)) == pytest.approx(float(monte_carlo), abs=0.02)
    assert float(kl_to_standard_normal(torch.zeros(1, 4), torch.zeros(1, 4))) == 0.0


def test_bernoulli_and_gaussian_likelihoods_match_their_densities():
    x = torch.bernoulli(torch.full((5, 6), 0.4))
    bern = VAE(6, 4, 2, "bernoulli")
    logits = torch.randn(5, 6)
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(bern.log_px_given_z(x, logits), expected)

    gauss = VAE(6, 4, 2, "gaussian")
    decoded = torch.randn(5, 12)
    mean, log_var = torch.sigmoid(decoded[:, :6]), decoded[:, 6:]
    xg = torch.rand(5, 6)
    expected = torch.distributions.Normal(mean, (0.5 * log_var).exp()).log_prob(xg).sum(-1)
    torch.testing.assert_close(gauss.log_px_given_z(xg, decoded), expected)


def test_an_unknown_likelihood_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid: bernoulli, gaussian"):
        VAE(4, 3, 2, "poisson")


def _exact_log_px_1d(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """log ∫ p(x|z) N(z; 0, 1) dz for a 1-D latent, by a fine Riemann sum over z in [-10, 10]."""
    z = torch.linspace(-10, 10, 20001, dtype=torch.float64).unsqueeze(1)
    model = model.double()
    with torch.no_grad():
        log_lik = model.log_px_given_z(x.double().unsqueeze(1), model.decode(z).unsqueeze(0))  # (N, grid)
    log_prior = (-0.5 * z.squeeze(1) ** 2 - 0.5 * math.log(2 * math.pi)).numpy()
    dz = float(z[1] - z[0])
    return torch.from_numpy(logsumexp(log_lik.numpy() + log_prior, axis=1) + math.log(dz))


def test_importance_sampling_converges_to_the_exact_marginal_likelihood():
    model = VAE(8, 16, 1, "bernoulli", init_std=0.7)
    with torch.no_grad():  # a wide proposal q(z|x) = N(0, 2²) that covers every posterior
        model.enc_out.weight.zero_()
        model.enc_out.bias.copy_(torch.tensor([0.0, math.log(4.0)]))
    x = torch.bernoulli(torch.full((20, 8), 0.5))
    exact = _exact_log_px_1d(model, x)
    estimate = log_px_importance(model.double(), x.double(), samples=20_000, chunk=5000)
    torch.testing.assert_close(estimate, exact, atol=0.05, rtol=0)
    # and with few proposals it is below (a stochastic lower bound), above the one-sample bound
    few = log_px_importance(model, x.double(), samples=2).mean()
    with torch.no_grad():
        bound = torch.stack([model.elbo(x.double()) for _ in range(2000)]).mean()
    assert float(bound) < float(few) < float(exact.mean()) + 0.01


def test_eval_points_are_log_spaced_from_the_first_point_to_the_budget():
    cfg = {**runner.CONFIG, "eval_from": 100_000, "evals_per_decade": 5}
    points = runner.eval_points(cfg, 10_000_000)
    assert points[0] == 100_000 and points[-1] == 10_000_000 and len(points) == 11
    ratios = np.diff(np.log10(points))
    np.testing.assert_allclose(ratios, 0.2, atol=1e-5)
    assert runner.eval_points(cfg, 50_000) == [50_000]


@pytest.mark.parametrize("item, key", [
    ("mnist_latents=3,ten", "mnist_latents"), ("mnist_latents=0,3", "mnist_latents"),
    ("frey_test=5000", "frey_test"), ("step_sizes=-0.1", "step_sizes"), ("batch_size=0", "batch_size"),
])
def test_bad_settings_are_usage_errors_before_anything_loads(item, key, tmp_path, monkeypatch, capsys):
    line = assert_usage_error("vae", item, tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert key in line


def test_step_size_pilot_picks_the_best_grid_value_and_never_a_diverged_one():
    data = {"train": torch.rand(400, 10), "binarize": True}
    cfg = {**runner.CONFIG, "pilot_steps": 20, "step_sizes": [0.01, 0.1], "batch_size": 50}
    model = VAE(10, 8, 2, "bernoulli")
    chosen, scores = runner.pick_step_size(model, data, cfg)
    assert chosen == max(scores, key=scores.get) and set(scores) == {0.01, 0.1}
    before = [p.clone() for p in model.parameters()]
    runner.pick_step_size(model, data, cfg)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # pilots train copies
    cfg_nan = {**cfg, "step_sizes": [0.01, 1e30]}
    chosen, scores = runner.pick_step_size(model, data, cfg_nan)
    assert scores[1e30] == -math.inf and chosen == 0.01


def test_the_prior_adds_weight_decay_of_one_over_n():
    data = {"train": torch.rand(200, 6), "binarize": False}
    cfg = {**runner.CONFIG, "batch_size": 200, "weight_decay": 1.0}
    model = VAE(6, 5, 2, "gaussian")
    trainer = runner.Trainer(model, data, cfg, step_size=0.01)
    assert trainer.prior_scale == pytest.approx(1 / 200)


def test_frey_split_is_fixed_disjoint_and_scaled():
    require_datasets("frey-faces")
    cfg = {**runner.CONFIG}
    a, b = runner.load_frey(cfg), runner.load_frey(cfg)
    assert a["test"].shape == (200, 560) and a["train"].shape == (1765, 560)
    assert torch.equal(a["test"], b["test"])
    assert 0 <= float(a["train"].min()) and float(a["train"].max()) <= 1
    train_rows = {tuple(r.tolist()) for r in a["train"]}
    assert not any(tuple(r.tolist()) in train_rows for r in a["test"])


def test_mnist_evaluation_images_are_binary_and_fixed_across_seeds():
    require_datasets("mnist")
    cfg = {**runner.CONFIG, "eval_train": 100}
    torch.manual_seed(1)
    a = runner.load_mnist(cfg)
    torch.manual_seed(2)
    b = runner.load_mnist(cfg)
    assert set(a["test"].unique().tolist()) == {0.0, 1.0} and torch.equal(a["test"], b["test"])
    assert torch.equal(a["eval_train"], b["eval_train"]) and a["binarize"]


@pytest.mark.parametrize("kill_at_log_call", [3, 5])
def test_resume_after_kill_matches_uninterrupted(tmp_path, kill_at_log_call):
    require_datasets("mnist", "frey-faces")
    cfg = {**runner.CONFIG, **runner.TIERS["smoke"], "checkpoint_every": 1000}
    # the 3rd log call is inside the first MNIST model, after its first checkpoints; the 5th inside the
    # second, after the first finished (its pictures must come back from the checkpoint: resume.py checks)
    reference, resumed, ctx, ckpt = kill_then_resume("vae", runner.run, cfg, tmp_path, kill_at_log_call)
    assert (ckpt / "mnist_nz3.pt").exists()
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert resumed[k] == pytest.approx(reference[k], rel=1e-6, abs=1e-6), k
    rows = [(r["dataset"], r["nz"], r["step"]) for r in ctx.curves]
    assert len(rows) == len(set(rows))
