"""Unit tests of the GRAN reproduction: the GAM's arithmetic, winner rule, zero guard and swap symmetry on
hand-made discriminators; the canvas recurrence; shapes; the adapter for (Generator, Discriminator) modules
(the GAN of reproductions/gan when it exists). Fast, CPU only."""
from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from torch import nn

from reproductions.gran import gam
from reproductions.gran.gran import GRAN, DCGANGenerator, Discriminator, sample_noise
from reproductions.gran.runner import inversion_error


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- hand-made models: images are constant-valued, a discriminator thresholds the image mean -------------
def const_images(values) -> torch.Tensor:
    """One 1x28x28 image per value, every pixel equal to it."""
    return torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(-1, 1, 28, 28).contiguous()


def threshold_disc(threshold: float):
    """Says "real" (logit > 0) iff the image mean exceeds `threshold`."""
    return lambda x: x.mean(dim=(1, 2, 3)) - threshold


def fixed_sampler(values):
    images = const_images(values)
    return lambda n: images[:n]


# x_test: 10 real images with means 0.05, 0.15, ..., 0.95
X_TEST = const_images([0.05 + 0.1 * i for i in range(10)])


def test_error_rate_counts_wrong_decisions():
    logits = torch.tensor([2.0, -1.0, 0.0, 3.0])
    assert gam.error_rate(logits, real=True) == 0.5    # -1 and 0 are "fake" -> wrong on real images
    assert gam.error_rate(logits, real=False) == 0.5   # 2 and 3 are "real" -> wrong on fakes
    with pytest.raises(ValueError, match="at least one"):
        gam.error_rate(torch.tensor([]), real=True)


def test_gam_exact_ratios_and_winner():
    # D1 rejects test images with mean < 0.3: 3/10 wrong; D2 rejects mean < 0.3 too -> r_test = 1 exactly
    d1, d2 = threshold_disc(0.3), threshold_disc(0.3)
    # G1's samples: means 0.1 (caught) and 0.9 (fools any threshold < 0.9) -> D2 errs on 1/4 of them
    g1 = fixed_sampler([0.1, 0.1, 0.1, 0.9])
    # G2's samples fool D1 on 3/4
    g2 = fixed_sampler([0.1, 0.5, 0.6, 0.9])
    b = gam.gam_battle((g1, d1), (g2, d2), X_TEST, n_samples=4, tol=0.1)
    assert (b.err_d1_test, b.err_d2_test) == (0.3, 0.3)
    assert b.err_d1_on_g2 == 0.75 and b.err_d2_on_g1 == 0.25
    assert b.r_test == 1.0 and b.r_sample == 3.0
    assert b.valid and b.winner == 2                     # r_sample > 1: G2 fools D1 more -> M2 wins
    flipped = gam.gam_battle((g2, d1), (g1, d2), X_TEST, n_samples=4, tol=0.1)
    assert flipped.r_sample == 0.25 / 0.75 and flipped.winner == 1


def test_swap_inverts_ratios_exactly():
    m1 = (fixed_sampler([0.3, 0.5, 0.7, 0.9]), threshold_disc(0.2))   # D1 test error 0.2
    m2 = (fixed_sampler([0.1, 0.1, 0.5, 0.7]), threshold_disc(0.4))    # D2 test error 0.4
    ab = gam.gam_battle(m1, m2, X_TEST, n_samples=4, tol=1.0)
    ba = gam.gam_battle(m2, m1, X_TEST, n_samples=4, tol=1.0)
    assert ab.r_test == 0.2 / 0.4 and ba.r_test == 0.4 / 0.2
    assert ab.r_sample == 0.5 / 0.75 and ba.r_sample == 0.75 / 0.5
    assert ba == ab.swapped(tol=1.0)
    assert (ab.winner, ba.winner) == (1, 2)  # the same model (m1) wins either way round
    assert inversion_error(ab.r_sample, ba.r_sample) < 1e-15
    assert inversion_error(ab.r_test, ba.r_test) == 0.0


def test_invalid_battle_has_no_winner():
    # D1's test error 0.2, D2's 0.4: r_test = 0.5, outside any tolerance < 0.5, so no winner
    m1 = (fixed_sampler([0.9, 0.9]), threshold_disc(0.2))
    m2 = (fixed_sampler([0.1, 0.1]), threshold_disc(0.4))
    b = gam.gam_battle(m1, m2, X_TEST, n_samples=2, tol=0.1)
    assert b.r_test == 0.5 and b.r_sample == 0.0
    assert not b.valid and b.winner == 0
    assert gam.gam_battle(m1, m2, X_TEST, n_samples=2, tol=0.5).winner != 0  # boundary is inclusive
    assert gam.winner(1.05, 0.5, tol=0.1) == 1 and gam.winner(1.11, 0.5, tol=0.1) == 0
    assert gam.winner(1.0, 1.0, tol=0.1) == 0  # r_sample = 1: a tie


def test_zero_error_guard():
    assert gam.ratio(0.0, 0.0) == 1.0          # equal (zero) error rates
    assert gam.ratio(0.3, 0.0) == math.inf      # x / 0, x > 0
    assert gam.ratio(0.0, 0.3) == 0.0
    # D1 and D2 are perfect on the test set (threshold 0): r_test = 0/0 -> 1, the battle is valid
    d_perfect = threshold_disc(0.0)
    g_caught = fixed_sampler([0.0, 0.0])        # mean 0 -> logit 0 -> "fake": never fools
    g_fools = fixed_sampler([0.5, 0.5])
    b = gam.gam_battle((g_caught, d_perfect), (g_fools, d_perfect), X_TEST, n_samples=2, tol=0.1)
    assert b.r_test == 1.0 and b.err_d2_on_g1 == 0.0 and b.r_sample == math.inf
    assert b.winner == 2
    swapped = gam.gam_battle((g_fools, d_perfect), (g_caught, d_perfect), X_TEST, n_samples=2, tol=0.1)
    assert swapped.r_sample == 0.0 and swapped.winner == 1 and swapped == b.swapped(0.1)
    assert inversion_error(b.r_sample, swapped.r_sample) == 0.0
    tie = gam.gam_battle((g_caught, d_perfect), (g_caught, d_perfect), X_TEST, n_samples=2, tol=0.1)
    assert tie.r_sample == 1.0 and tie.winner == 0


def test_gam_rejects_mismatched_shapes():
    bad = (lambda n: torch.zeros(n, 1, 32, 32), threshold_disc(0.5))
    with pytest.raises(ValueError, match="samples have shape"):
        gam.gam_battle(bad, (fixed_sampler([0.5]), threshold_disc(0.5)), X_TEST, n_samples=1)


# -- the recurrence (§3, Fig. 1) -------------------------------------------------------------------------
def test_gran_shapes_and_range():
    for size, channels in ((28, 1), (32, 3)):
        g = GRAN(noise_dim=8, steps=3, width=16, channels=channels, image_size=size)
        z = sample_noise(5, 8)
        x = g(z)
        assert x.shape == (5, channels, size, size) and 0 <= x.min() and x.max() <= 1
        assert g.canvases(z).shape == (3, 5, channels, size, size)
        assert g.drawing(z).shape == (3, 5, channels, size, size)
        d = Discriminator(width=8, channels=channels, image_size=size)
        assert d(x).shape == (5,)
        assert DCGANGenerator(8, 16, channels, size)(z).shape == (5, channels, size, size)
    with pytest.raises(ValueError, match="image_size"):
        GRAN(8, 2, 16, image_size=64)
    with pytest.raises(ValueError, match="steps"):
        GRAN(8, 0, 16)


def test_output_is_tanh_of_summed_canvases():
    g = GRAN(noise_dim=8, steps=4, width=16).eval()
    z = sample_noise(6, 8)
    deltas = g.canvases(z)
    torch.testing.assert_close(g(z), (torch.tanh(deltas.sum(0)) + 1) / 2)
    steps = g.drawing(z)
    for t in range(4):
        torch.testing.assert_close(steps[t], (torch.tanh(deltas[:t + 1].sum(0)) + 1) / 2)
    torch.testing.assert_close(steps[-1], g(z))


def test_recurrence_reuses_z_and_reads_back_the_previous_canvas():
    g = GRAN(noise_dim=8, steps=3, width=16).eval()
    calls = []
    g.decoder.register_forward_hook(lambda m, inp, out: calls.append(("dec", inp[0].detach().clone(), out.detach())))
    g.encoder.register_forward_hook(lambda m, inp, out: calls.append(("enc", inp[0].detach().clone(), out.detach())))
    z = sample_noise(4, 8)
    with torch.no_grad():
        g.canvases(z)
    assert [c[0] for c in calls] == ["dec", "enc", "dec", "enc", "dec"]  # T decodes, T - 1 read-backs
    decs = [c for c in calls if c[0] == "dec"]
    encs = [c for c in calls if c[0] == "enc"]
    h_z = g.project_z(z)
    for t, (_, inp, _) in enumerate(decs):
        torch.testing.assert_close(inp[:, :8], h_z)  # the same z code at every step
        expected_hc = torch.zeros_like(h_z) if t == 0 else encs[t - 1][2]
        torch.testing.assert_close(inp[:, 8:], expected_hc)  # the previous canvas' code (0 at step 1)
    for t, (_, inp, _) in enumerate(encs):
        torch.testing.assert_close(inp, decs[t][2])  # the encoder reads the canvas just written


def test_canvas_t_depends_only_on_steps_up_to_t():
    """Canvas t is the same whether the model runs T = t or more steps (same weights)."""
    long = GRAN(noise_dim=8, steps=5, width=16).eval()
    short = GRAN(noise_dim=8, steps=2, width=16).eval()
    short.load_state_dict(long.state_dict())
    z = sample_noise(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(long.canvases(z)[:2], short.canvases(z))
        torch.testing.assert_close(long.drawing(z)[1], short(z))


def test_each_image_depends_on_its_own_z_only():
    g = GRAN(noise_dim=8, steps=3, width=16).eval()
    z = sample_noise(2, 8)
    with torch.no_grad():
        a, b = g.canvases(z), g.canvases(z.flip(0))
    torch.testing.assert_close(a.flip(1), b)  # each image's canvases depend on its own z only (eval BN)


# -- the adapter and other models --------------------------------------------------------------------------
class _StandInGenerator(nn.Module):
    """The interface reproductions/gan/gan.py provides: attribute noise_dim, forward(z) -> (N,1,28,28) in [0,1]."""

    def __init__(self, noise_dim: int = 10):
        super().__init__()
        self.noise_dim = noise_dim
        self.net = nn.Sequential(nn.Linear(noise_dim, 784), nn.Dropout(0.5), nn.Sigmoid())

    def forward(self, z):
        return self.net(z).view(-1, 1, 28, 28)


class _StandInDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(784, 1))

    def forward(self, x):
        return self.net(x).squeeze(1)


def _battle_pair(gen_cls, dis_cls, noise_fn):
    g1, d1, g2, d2 = gen_cls(), dis_cls(), gen_cls(), dis_cls()
    s1 = torch.Generator().manual_seed(1)
    s2 = torch.Generator().manual_seed(2)
    m1 = gam.as_model(g1, d1, lambda n: noise_fn(n, g1.noise_dim, generator=s1), batch=7)
    m2 = gam.as_model(g2, d2, lambda n: noise_fn(n, g2.noise_dim, generator=s2), batch=7)
    return m1, m2, (g1, d1)


def _check_adapter(m1, m2, modules):
    sample, discriminate = m1
    x = sample(20)
    assert x.shape == (20, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    torch.testing.assert_close(discriminate(x), discriminate(x))  # deterministic
    assert not any(m.training for m in modules)  # evaluation mode: dropout and BN frozen
    b = gam.gam_battle(m1, m2, torch.rand(30, 1, 28, 28), n_samples=20)
    assert all(0 <= e <= 1 for e in (b.err_d1_test, b.err_d2_test, b.err_d1_on_g2, b.err_d2_on_g1))


def test_adapter_with_stand_in_gan_modules():
    m1, m2, modules = _battle_pair(_StandInGenerator, _StandInDiscriminator, sample_noise)
    _check_adapter(m1, m2, modules)


def test_adapter_with_gran_modules():
    m1, m2, modules = _battle_pair(lambda: GRAN(8, 2, 16), lambda: Discriminator(8), sample_noise)
    _check_adapter(m1, m2, modules)
    gen, dis = modules
    sample, _ = gam.as_model(gen, dis, lambda n: sample_noise(n, 8), generator_batch_stats=True)
    assert sample(5).shape == (5, 1, 28, 28) and gen.training  # BN uses the batch's own statistics


@pytest.mark.skipif(importlib.util.find_spec("reproductions.gan.gan") is None,
                    reason="reproductions/gan/gan.py is not written yet")
def test_adapter_with_the_gan_reproduction():
    from reproductions.gan import gan
    m1, m2, modules = _battle_pair(gan.Generator, gan.Discriminator, gan.sample_noise)
    _check_adapter(m1, m2, modules)
    gran_model = gam.as_model(GRAN(8, 2, 16), Discriminator(8),
                              lambda n: sample_noise(n, 8))
    b = gam.gam_battle(m1, gran_model, torch.rand(30, 1, 28, 28), n_samples=20)  # a GAN battles a GRAN
    assert 0 <= b.err_d2_on_g1 <= 1


# -- resume ------------------------------------------------------------------------------------------------
def test_training_resumes_after_a_kill(tmp_path):
    from common.context import RunContext
    from reproductions.gran import runner

    cfg = {**runner.CONFIG, **runner.TIERS["smoke"], "train_steps": 6, "checkpoint_every": 2}
    data = torch.rand(64, 1, 28, 28)

    def context(folder, resume=False):
        return RunContext(paper="gran", tier="smoke", seed=0, device=torch.device("cpu"),
                          checkpoint_dir=tmp_path / folder, artifact_prefix=tmp_path / folder / "run",
                          resume=resume, show_progress=False)

    def fresh():
        torch.manual_seed(0)
        return runner.build("gran2", cfg, 1, 28)

    gen, dis = fresh()
    whole = runner.train("gran2", gen, dis, data, cfg, context("a"), snapshot_at=1)

    class Killed(RuntimeError):
        pass

    def dying_progress(iterable, desc, total=None):
        for i, step in enumerate(iterable):
            if i == 3:  # killed during step 3, after the checkpoint at step 2
                raise Killed
            yield step

    ctx = context("b")
    ctx.progress = dying_progress
    gen, dis = fresh()
    with pytest.raises(Killed):
        runner.train("gran2", gen, dis, data, cfg, ctx, snapshot_at=1)
    gen, dis = fresh()
    torch.manual_seed(123)  # the resumed run must not depend on the stream it starts from
    ctx = context("b", resume=True)
    resumed = runner.train("gran2", gen, dis, data, cfg, ctx, snapshot_at=1)
    for key in ("gen", "dis"):
        for name, value in whole[key].items():
            torch.testing.assert_close(resumed[key][name], value, rtol=0, atol=0)
        for name, value in whole["early"][key].items():
            torch.testing.assert_close(resumed["early"][key][name], value, rtol=0, atol=0)
    assert [r["step"] for r in ctx.curves] == sorted({r["step"] for r in ctx.curves})  # no duplicated rows


@pytest.mark.parametrize("item, key", [
    ("dataset=svhn", "dataset"), ("gran_steps=1,5", "gran_steps"), ("early_steps=0", "early_steps"),
    ("train_size=70000", "train_size"), ("beta1=2", "beta1"), ("lr_gen=fast", "lr_gen"),
    ("beta1=1", "beta1"),                # Adam's first moment would never move
    ("gen_width=1", "gen_width"),        # the decoder halves it once on MNIST: 0 channels
    ("gran_steps=1,1,3", "gran_steps"),  # the same model twice
])
def test_bad_settings_are_usage_errors_before_anything_loads(item, key, tmp_path, monkeypatch, capsys):
    from tests.conftest import assert_usage_error
    line = assert_usage_error("gran", item, tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert key in line
