"""Unit tests of the GAN reproduction: the Parzen estimator and σ selection (parzen_ll.py), maxout, the
two generator losses, the public interface the GRAN battles use, the schedules and resume. CPU, seconds."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from reproductions.gan import runner
from reproductions.gan.gan import (Discriminator, Generator, Maxout, discriminator_loss, generator_loss,
                                   nearest_neighbour, parzen_log_likelihood, sample_noise, select_sigma)
from tests.conftest import assert_usage_error, require_datasets
from tests.resume import kill_then_resume


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


# -- Parzen window estimator (goodfeli/adversarial parzen_ll.py) ----------------------------------------
def _direct_parzen(x: np.ndarray, mu: np.ndarray, sigma: float) -> np.ndarray:
    """log (1/M) Σ_j N(x; mu_j, σ²I), one scipy density per (x, mu_j) pair."""
    d = x.shape[1]
    logpdf = np.array([[stats.multivariate_normal(mean=m, cov=sigma ** 2 * np.eye(d)).logpdf(xi) for m in mu]
                       for xi in x])
    return logsumexp(logpdf, axis=1) - math.log(len(mu))


def test_parzen_matches_scipy_on_a_tiny_case():
    rng = np.random.default_rng(0)
    x, mu = rng.random((6, 5)), rng.random((9, 5))
    for sigma in (0.1, 0.37, 1.0):
        ours = parzen_log_likelihood(torch.from_numpy(x), torch.from_numpy(mu), [sigma], dtype=torch.float64)[:, 0]
        np.testing.assert_allclose(ours.numpy(), _direct_parzen(x, mu, sigma), rtol=1e-12, atol=1e-10)


def test_parzen_several_sigmas_at_once_equal_one_at_a_time():
    x, mu = torch.rand(20, 7, dtype=torch.float64), torch.rand(30, 7, dtype=torch.float64)
    sigmas = np.logspace(-1, 0, 10)
    together = parzen_log_likelihood(x, mu, sigmas, dtype=torch.float64)
    for k, sigma in enumerate(sigmas):
        alone = parzen_log_likelihood(x, mu, [sigma], dtype=torch.float64)[:, 0]
        torch.testing.assert_close(together[:, k], alone, rtol=0, atol=1e-10)


def test_parzen_is_invariant_to_batching():
    x, mu = torch.rand(23, 784, dtype=torch.float64), torch.rand(61, 784, dtype=torch.float64)
    reference = parzen_log_likelihood(x, mu, [0.2, 0.5], x_batch=1000, mu_batch=1000, dtype=torch.float64)
    for xb, mb in [(1, 61), (7, 13), (23, 1), (10, 100)]:
        batched = parzen_log_likelihood(x, mu, [0.2, 0.5], x_batch=xb, mu_batch=mb, dtype=torch.float64)
        torch.testing.assert_close(batched, reference, rtol=0, atol=1e-9)
        in_float32 = parzen_log_likelihood(x, mu, [0.2, 0.5], x_batch=xb, mu_batch=mb)
        torch.testing.assert_close(in_float32, reference, rtol=1e-5, atol=0)


def test_parzen_float32_matches_float64_on_mnist_scale():
    """The matmul expansion |x|² + |mu|² - 2x·mu in float32 stays accurate at σ = 0.1 on 784-d data."""
    x, mu = torch.rand(40, 784), torch.rand(300, 784)
    mu[:40] = x + 0.05 * torch.randn_like(x)  # near neighbours, where the smallest σ matters
    f32 = parzen_log_likelihood(x, mu, [0.1, 1.0])
    f64 = parzen_log_likelihood(x, mu, [0.1, 1.0], dtype=torch.float64)
    torch.testing.assert_close(f32, f64, rtol=0, atol=0.05)


def test_parzen_rejects_mismatched_dimensions():
    with pytest.raises(ValueError, match="dimensions"):
        parzen_log_likelihood(torch.rand(3, 4), torch.rand(5, 6), [0.1])


def test_select_sigma_is_the_argmax_of_the_validation_ll():
    centres = torch.rand(50, 10, dtype=torch.float64)
    mu = centres.repeat(20, 1) + 0.3 * torch.randn(1000, 10, dtype=torch.float64)
    valid = centres.repeat(4, 1) + 0.3 * torch.randn(200, 10, dtype=torch.float64)
    grid = np.logspace(-1, 0, 10)
    sigma, index, means = select_sigma(valid, mu, grid, dtype=torch.float64)
    expected = [parzen_log_likelihood(valid, mu, [s], dtype=torch.float64).mean().item() for s in grid]
    np.testing.assert_allclose(means.numpy(), expected, rtol=1e-12)
    assert index == int(np.argmax(expected)) and sigma == grid[index]
    assert 0 < index < len(grid) - 1  # data with kernel width 0.3 picks an interior σ


def test_nearest_neighbour_matches_brute_force():
    x, ref = torch.rand(17, 784), torch.rand(90, 784)
    ref[5] = x[3]
    dist, idx = nearest_neighbour(x, ref, batch=4)
    brute = torch.cdist(x.double(), ref.double())
    torch.testing.assert_close(idx, brute.argmin(1))
    torch.testing.assert_close(dist.double(), brute.min(1).values, rtol=1e-4, atol=1e-2)  # float32 expansion
    assert dist[3] < 1e-2


# -- networks -------------------------------------------------------------------------------------
def test_maxout_takes_the_max_over_consecutive_pieces():
    layer = Maxout(4, units=3, pieces=5, irange=0.5)
    x = torch.randn(8, 4)
    linear = layer.linear(x)
    expected = torch.stack([linear[:, 5 * u:5 * u + 5].max(1).values for u in range(3)], dim=1)
    torch.testing.assert_close(layer(x), expected)
    assert layer.linear.weight.abs().max() <= 0.5 and (layer.linear.bias == 0).all()


def test_maxout_gradient_flows_only_to_the_winning_piece():
    layer = Maxout(2, units=1, pieces=3, irange=0.5)
    x = torch.randn(1, 2)
    layer(x).sum().backward()
    winner = int(layer.linear(x).argmax())
    grad_rows = layer.linear.weight.grad.abs().sum(1)
    assert grad_rows[winner] > 0 and grad_rows.sum() == grad_rows[winner]


def test_interface_shapes_and_ranges():
    G, D = Generator(), Discriminator()
    assert G.noise_dim == 100
    z = sample_noise(7, G.noise_dim)
    assert z.shape == (7, 100)
    x = G(z)
    assert x.shape == (7, 1, 28, 28) and x.min() >= 0 and x.max() <= 1
    D.eval()
    logits = D(x)
    assert logits.shape == (7,) and logits.dtype == torch.float32
    assert D(torch.rand(3, 1, 28, 28)).shape == (3,)


def test_sample_noise_is_standard_normal_and_reproducible():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = sample_noise(20000, 100, generator=g1), sample_noise(20000, 100, generator=g2)
    torch.testing.assert_close(a, b)
    assert abs(a.mean().item()) < 0.01 and abs(a.std().item() - 1) < 0.01


def test_official_architecture_sizes_and_inits():
    G, D = Generator(), Discriminator()
    assert [m.weight.shape for m in (G.h0, G.h1, G.out)] == [(1200, 100), (1200, 1200), (784, 1200)]
    assert G.h1.weight.abs().max() <= 0.05 and G.h1.weight.abs().max() > 0.049
    assert D.h0.linear.weight.shape == (1200, 784) and D.h1.linear.weight.shape == (1200, 240)
    assert D.out.weight.shape == (1, 240) and D.h0.linear.weight.abs().max() <= 0.005


def test_generator_output_bias_reproduces_the_marginals():
    G = Generator(noise_dim=4, hidden=8)
    means = torch.rand(1, 28, 28) * 0.98 + 0.01
    G.init_output_bias(means)
    torch.nn.init.zeros_(G.out.weight)
    torch.testing.assert_close(G(torch.randn(2, 4))[0], means, rtol=1e-5, atol=1e-6)
    G.init_output_bias(torch.zeros(1, 28, 28))
    assert torch.isfinite(G.out.bias).all()


def test_discriminator_dropout_only_in_training_mode():
    D = Discriminator(units=16, pieces=3, irange=0.5)
    x = torch.rand(4, 1, 28, 28)
    D.eval()
    torch.testing.assert_close(D(x), D(x))
    D.train()
    assert not torch.equal(D(x), D(x))


def test_discriminator_input_dropout_keeps_80_percent():
    D = Discriminator(units=4, pieces=2)
    seen = []
    D.h0.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    D.train()
    D(torch.ones(500, 1, 28, 28))
    kept = seen[0] != 0
    assert kept.float().mean().item() == pytest.approx(0.8, abs=0.01)
    assert torch.allclose(seen[0][kept], torch.tensor(1.25))  # inverted dropout: 1 / 0.8


# -- objectives (Eq. 1, §3) ----------------------------------------------------------------------------
def test_discriminator_loss_is_the_mean_binary_cross_entropy():
    real, fake = torch.randn(10), torch.randn(10)
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    expected = -0.5 * (torch.log(d_real).mean() + torch.log(1 - d_fake).mean())
    torch.testing.assert_close(discriminator_loss(real, fake), expected)


def test_generator_losses_match_their_formulas():
    logits = torch.randn(10)
    d = torch.sigmoid(logits)
    torch.testing.assert_close(generator_loss(logits), -torch.log(d).mean())
    torch.testing.assert_close(generator_loss(logits, saturating=True), torch.log(1 - d).mean())


def test_saturating_gradient_vanishes_when_d_rejects_the_samples():
    """§3: at D(G(z)) ≈ 0 log(1 - D) saturates, while -log D still pushes G with a unit gradient."""
    logits = torch.full((4,), -12.0, requires_grad=True)  # D(G(z)) ≈ 6e-6
    (g_ns,) = torch.autograd.grad(generator_loss(logits), logits)
    (g_sat,) = torch.autograd.grad(generator_loss(logits, saturating=True), logits)
    assert (g_ns < 0).all() and (g_sat < 0).all()       # both descend towards "real"
    assert g_ns.abs().min() > 0.99 / 4                   # ≈ -(1 - D)/N
    assert g_sat.abs().max() < 1e-5 / 4                  # ≈ -D/N
    at_half = torch.zeros(4, requires_grad=True)         # at D = 1/2 the two gradients agree
    torch.testing.assert_close(torch.autograd.grad(generator_loss(at_half), at_half)[0],
                               torch.autograd.grad(generator_loss(at_half, saturating=True), at_half)[0])


def test_generator_step_raises_d_of_g_z():
    torch.manual_seed(1)
    G, D = Generator(noise_dim=8, hidden=32), Discriminator(units=16, pieces=3, irange=0.5)
    D.eval()
    z = sample_noise(64, 8)
    before = torch.sigmoid(D(G(z))).mean()
    opt = torch.optim.SGD(G.parameters(), lr=0.5)
    for _ in range(5):
        opt.zero_grad()
        generator_loss(D(G(z))).backward()
        opt.step()
    assert torch.sigmoid(D(G(z))).mean() > before


# -- schedules (mnist.yaml) ---------------------------------------------------------------------------
def test_lr_decay_and_momentum_ramp():
    cfg = runner.CONFIG
    G, D = Generator(noise_dim=4, hidden=8), Discriminator(units=4, pieces=2)
    opts = runner.make_optimizers(G, D, cfg)
    assert runner.set_schedule(opts, 0, 0, cfg) == (0.1, 0.5)
    lr, momentum = runner.set_schedule(opts, 100000, 125, cfg)
    assert lr == pytest.approx(0.1 / 1.000004 ** 100000) and momentum == pytest.approx(0.5 + 0.2 * 124 / 249)
    assert runner.set_schedule(opts, 10 ** 8, 400, cfg) == (1e-6, pytest.approx(0.7))
    assert all(g["lr"] == 1e-6 and g["momentum"] == pytest.approx(0.7) for o in opts for g in o.param_groups)


def test_sigma_grid_is_parzen_ll_default():
    np.testing.assert_allclose(runner.sigma_grid(runner.CONFIG), np.logspace(-1, 0, 10))


def test_batches_cover_each_epoch_once():
    data = torch.arange(50).float()
    batches = runner.Batches(data, 10)
    first = torch.cat([batches.next() for _ in range(5)])
    assert sorted(first.tolist()) == list(range(50)) and batches.epoch == 1
    second = torch.cat([batches.next() for _ in range(5)])
    assert sorted(second.tolist()) == list(range(50)) and not torch.equal(first, second)


@pytest.mark.parametrize("item, key", [
    ("ablation_steps=1000000", "ablation_steps"), ("n_train=60000", "n_train"), ("k=0", "k"),
    ("d_input_keep=1.5", "d_input_keep"), ("lr=fast", "lr"), ("lr=nan", "lr"),
    ("parzen_valid=10000", "parzen_valid"),  # would leave no validation image for the real-data ceiling
])
def test_bad_settings_are_usage_errors_before_anything_loads(item, key, tmp_path, monkeypatch, capsys):
    line = assert_usage_error("gan", item, tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert key in line


# -- resume: a run killed mid-training and resumed ends where an uninterrupted run ends ------------------
def test_resume_after_kill_matches_uninterrupted(tmp_path):
    require_datasets("mnist")
    cfg = {**runner.CONFIG, **runner.TIERS["smoke"]}
    # killed at the 17th log call: in the second epoch of the main run, after two checkpoints
    reference, resumed, ctx, ckpt = kill_then_resume("gan", runner.run, cfg, tmp_path, kill_at_log_call=17)
    assert (ckpt / "train.pt").exists()
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert resumed[k] == pytest.approx(reference[k], rel=1e-6, abs=1e-9), k
    rows = [(r.get("loss"), r["step"], "parzen_ll" in r) for r in ctx.curves]
    assert len(rows) == len(set(rows))


def test_ablation_and_main_run_share_their_start():
    require_datasets("mnist")
    """Both losses start from the same networks and streams: one step of each gives the same D update."""
    cfg = {**runner.CONFIG, **runner.TIERS["smoke"]}
    data = runner.load_data(cfg)
    G0, D0 = runner.make_models(cfg, data["train"].mean(0))
    results = []
    for saturating in (False, True):
        G, D = runner.copy.deepcopy(G0), runner.copy.deepcopy(D0)
        opt_g, opt_d = runner.make_optimizers(G, D, cfg)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(5)
            stats = runner.train_step(G, D, opt_g, opt_d, runner.Batches(data["train"], cfg["batch_size"]), cfg,
                                      saturating)
        results.append((stats, D.h0.linear.weight.clone()))
    assert results[0][0]["d_loss"] == results[1][0]["d_loss"]
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=0)


def test_k_discriminator_steps_per_generator_step():
    cfg = {**runner.CONFIG, "k": 3, "batch_size": 10, "noise_dim": 8}
    G, D = Generator(noise_dim=8, hidden=16), Discriminator(units=8, pieces=2, irange=0.1)
    opt_g, opt_d = runner.make_optimizers(G, D, cfg)
    batches = runner.Batches(torch.rand(100, 1, 28, 28), 10)
    g_before = [p.clone() for p in G.parameters()]
    d_steps, g_steps = [], []
    opt_d.register_step_post_hook(lambda *a: d_steps.append(1))
    opt_g.register_step_post_hook(lambda *a: g_steps.append(1))
    runner.train_step(G, D, opt_g, opt_d, batches, cfg, saturating=False)
    assert batches.seen == 3 and len(d_steps) == 3 and len(g_steps) == 1
    assert all(not torch.equal(a, b) for a, b in zip(g_before, G.parameters()))
