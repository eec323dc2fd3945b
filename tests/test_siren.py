"""Unit tests of the SIREN reproduction: init, differential operators, encodings, activation statistics,
metric definitions and resume. Fast (a few seconds each), CPU only."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reproductions.siren import runner
from reproductions.siren.siren import (MLP, PosEncoding, Siren, divergence, get_mgrid, gradient, laplacian,
                                       make_model, nyquist_frequencies)
from tests.resume import kill_then_resume
from tests.conftest import require_datasets


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


# -- initialization (§3.2, official first_layer_sine_init / sine_init) ------------------------------
def test_siren_init_matches_formulas():
    net = Siren(2, 1, hidden=256, hidden_layers=3)
    first = net.hidden[0].weight
    assert first.abs().max() <= 1 / 2 and first.abs().max() > 0.45        # U(-1/n, 1/n), n = 2
    for layer in list(net.hidden[1:]) + [net.out]:
        n = layer.weight.shape[1]
        bound = math.sqrt(6 / n) / 30
        w = layer.weight
        assert w.abs().max() <= bound
        if w.numel() > 10_000:  # enough samples to pin the distribution
            assert w.abs().max() > 0.99 * bound
            assert w.var().item() == pytest.approx(bound ** 2 / 3, rel=0.03)   # uniform, not normal
    # biases keep nn.Linear's default U(-1/sqrt(n), 1/sqrt(n)), as the official code
    assert net.hidden[1].bias.abs().max() <= 1 / math.sqrt(256)


def test_siren_first_omega_is_configurable():
    x = torch.linspace(-1, 1, 7)[:, None]
    a = Siren(1, 1, 8, 1, first_omega=3000.0)
    b = Siren(1, 1, 8, 1, first_omega=30.0)
    b.load_state_dict(a.state_dict())
    first_a = a.activations(x)[0][0]
    first_b = b.activations(x)[0][0]
    torch.testing.assert_close(first_a, 100 * first_b)


def test_baseline_inits():
    relu = MLP(2, 1, 256, 3, "relu")
    w = relu.hidden[1].weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.05)   # Kaiming normal, fan_in
    tanh = MLP(2, 1, 256, 3, "tanh")
    assert tanh.hidden[1].weight.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.05)  # Xavier


# -- positional encoding (official PosEncodingNeRF, Nyquist rule) -----------------------------------
@pytest.mark.parametrize("samples,expected", [(512, 7), (256, 6), (128, 5), (64, 4), (308207, 16)])
def test_nyquist_frequency_count(samples, expected):
    official = int(math.floor(math.log(1 / (2 * (2 * 1 / samples)), 2)))
    assert nyquist_frequencies(samples) == official == expected


def test_positional_encoding_values():
    enc = PosEncoding(2, samples=64)
    assert enc.num_frequencies == 4 and enc.out_dim == 2 + 2 * 2 * 4
    x = torch.tensor([[0.25, -0.5]])
    out = enc(x)[0]
    assert out[:2].tolist() == [0.25, -0.5]
    # frequency k=1 (2π), dim 1: sin, cos at position 2 + (1*2 + 1)*2
    k, j = 1, 1
    i = 2 + (k * 2 + j) * 2
    assert out[i].item() == pytest.approx(math.sin(2 ** k * math.pi * -0.5), abs=1e-6)
    assert out[i + 1].item() == pytest.approx(math.cos(2 ** k * math.pi * -0.5), abs=1e-6)


# -- differential operators -------------------------------------------------------------------------
def _finite_diff_grad(f, x, h=1e-5):
    grads = []
    for i in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, i] = h
        grads.append((f(x + e) - f(x - e)) / (2 * h))
    return torch.cat(grads, dim=1)


def test_gradient_matches_finite_differences():
    net = Siren(2, 1, 32, 2).double()
    x = (torch.rand(50, 2, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    g = gradient(net(x), x)
    with torch.no_grad():
        fd = _finite_diff_grad(net, x.detach())
    torch.testing.assert_close(g, fd, rtol=1e-5, atol=1e-6)


def test_laplacian_matches_finite_differences():
    net = Siren(2, 1, 32, 2).double()
    x = (torch.rand(50, 2, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    lap = laplacian(net(x), x)
    h = 1e-4
    with torch.no_grad():
        x0 = x.detach()
        fd = -4 * net(x0)
        for i in range(2):
            e = torch.zeros_like(x0)
            e[:, i] = h
            fd = fd + net(x0 + e) + net(x0 - e)
        fd = fd / h ** 2
    torch.testing.assert_close(lap, fd, rtol=1e-3, atol=1e-2 * fd.abs().mean().item())


def test_divergence_of_known_field():
    x = torch.randn(20, 2, dtype=torch.float64, requires_grad=True)
    field = torch.stack([x[:, 0] ** 2, 3 * x[:, 1] * x[:, 0]], dim=1)          # div = 2x + 3x
    torch.testing.assert_close(divergence(field, x), (5 * x[:, :1]).detach())


def test_relu_laplacian_is_zero_siren_is_not():
    x = (torch.rand(200, 2) * 2 - 1).requires_grad_(True)
    relu = make_model("relu", 2, 1, 64, 3)
    lap_relu = laplacian(relu(x), x)
    assert torch.count_nonzero(lap_relu) == 0
    assert gradient(relu(x), x).abs().sum() > 0                               # but ∇ is not zero
    siren = make_model("siren", 2, 1, 64, 3)
    assert laplacian(siren(x), x).abs().mean() > 1.0


# -- activation statistics (§3.2, supplement §1) ----------------------------------------------------
def _stats(net, x):
    from scipy import stats
    arcsine = stats.arcsine(loc=-1, scale=2)
    pre_std, ks = [], []
    for pre, post in net.activations(x):
        pre_std.append(pre.std().item())
        ks.append(stats.kstest(post.flatten()[::7].numpy(), arcsine.cdf).statistic)
    return np.array(pre_std), np.array(ks)


def test_activation_statistics_stable_under_paper_init_not_naive():
    x = torch.linspace(-1, 1, 1024)[:, None]
    std, ks = _stats(Siren(1, 1, 512, 10), x)
    assert 0.8 < std[-1] / std[1] < 1.25
    assert np.all((std[1:] > 0.7) & (std[1:] < 2.0))                          # ~N(0, 1)-sized inputs to sin
    assert ks.max() < 0.1                                                     # arcsine outputs at all depths
    std_naive, ks_naive = _stats(Siren(1, 1, 512, 10, first_omega=1, hidden_omega=1, init="default"), x)
    assert std_naive[-1] / std_naive[1] < 0.5                                 # collapses with depth
    assert ks_naive.max() > 0.3


# -- metrics and data ---------------------------------------------------------------------------------
def test_psnr_matches_official_definition():
    gt = torch.rand(64, 1) * 2 - 1
    assert runner.psnr(gt + 0.2, gt) == pytest.approx(20.0, abs=0.5)         # clip can only lower the error
    pred = gt.clone()
    pred[0] = 5.0                                                           # clipped to 1 as write_psnr does
    mse01 = ((1.0 - gt[0]) / 2) ** 2 / 64
    assert runner.psnr(pred, gt) == pytest.approx(10 * math.log10(1 / mse01.item()), rel=1e-4)


def test_sobel_scale_used_for_poisson_reconstruction():
    size = 32
    ramp = get_mgrid(size).numpy()[:, 0].reshape(size, size)                 # img = first coordinate
    g = runner.sobel(10 * ramp)
    assert g[size // 2, size // 2, 0] == pytest.approx(160 / (size - 1), rel=1e-6)
    assert abs(g[size // 2, size // 2, 1]) < 1e-9


def test_image_loading_range_and_area_average():
    require_datasets("siren")
    big = runner.load_image(512)
    small = runner.load_image(128)
    assert big.shape == (512, 512) and small.shape == (128, 128)
    assert -1 <= big.min() < -0.9 and 0.9 < big.max() <= 1
    np.testing.assert_allclose(small[3, 5], big[12:16, 20:24].mean(), atol=1e-5)


def test_audio_crop_keeps_full_clip_coordinates():
    require_datasets("siren")
    cfg = {**runner.CONFIG, "audio_start_s": 2.0, "audio_seconds": 0.01}
    t, y, rate, n_full = runner.load_audio(cfg)
    assert rate == 44100 and n_full == 308207 and len(t) == 441
    full = np.linspace(-1, 1, n_full, dtype=np.float32)
    np.testing.assert_array_equal(t[:, 0].numpy(), full[88200:88200 + 441])
    assert y.abs().max() <= 1


# -- resume: a run killed mid-fit and resumed ends where an uninterrupted run ends --------------------
def test_resume_after_kill_matches_uninterrupted(tmp_path):
    require_datasets("siren")
    cfg = {**runner.CONFIG, **runner.TIERS["smoke"], "image_steps": 8, "poisson_steps": 4, "audio_steps": 4,
           "log_every": 1, "checkpoint_every": 3}
    # killed at the 25th log call: inside the image fits, after some checkpoints
    reference, resumed, ctx, ckpt = kill_then_resume("siren", runner.run, cfg, tmp_path, kill_at_log_call=25)
    assert any(ckpt.glob("image_*.pt"))
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert resumed[k] == pytest.approx(reference[k], rel=1e-5, abs=1e-6), k
    steps = [(r["task"], r["model"], r["step"]) for r in ctx.curves if "task" in r]
    assert len(steps) == len(set(steps))                                     # no duplicated curve rows

@pytest.mark.parametrize("item, key", [
    ("image_size=100", "image_size"), ("image_models=siren,gelu", "image_models"),
    ("audio_file=song.mp3", "audio_file"), ("hidden=0", "hidden"), ("lr=fast", "lr"),
])
def test_bad_settings_are_usage_errors_before_anything_loads(item, key, tmp_path, monkeypatch, capsys):
    from tests.conftest import assert_usage_error
    line = assert_usage_error("siren", item, tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert key in line


# -- divergence is data: a model that goes NaN ends its own fit, not the run ---------------------------
def test_a_model_that_diverges_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    require_datasets("siren")
    from tests.resume import smoke_context
    step = runner.mse_step

    def nan_for_plain_relu(net, opt, coords, target):  # the plain ReLU MLP (image and audio) "diverges"
        loss, out = step(net, opt, coords, target)
        if isinstance(net, MLP) and net.encoding is None and net.act is torch.relu:
            loss = loss * float("nan")
        return loss, out

    monkeypatch.setattr(runner, "mse_step", nan_for_plain_relu)
    cfg = {**runner.CONFIG, **runner.TIERS["smoke"], "image_steps": 4, "poisson_steps": 2, "audio_steps": 2,
           "log_every": 1}
    metrics = runner.run(cfg, smoke_context("siren", tmp_path, resume=False))
    for task in ("image", "audio"):
        assert metrics[f"{task}_relu_diverged"] == 1 and metrics[f"{task}_relu_diverged_step"] == 0
        assert metrics[f"{task}_siren_diverged"] == 0
    assert "image_psnr_relu" not in metrics and "image_grad_corr_relu" not in metrics  # no derivatives of it
    assert "audio_mse_relu" not in metrics and metrics["poisson_relu_diverged"] == 0   # Poisson's loss is its own
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["image_psnr_siren"] > 0 and "image_grad_corr_siren" in metrics
