"""Neural Networks with Few Multiplications (reproductions/binaryconnect): the weight quantizers, the
power-of-two rounding and the quantized weight gradient against direct computations, the
multiplication counter against a hand count, and the runner's validation, resume and missing SVHN."""
from __future__ import annotations

import math

import pytest
import torch

import common.data
from common.cli import main
from common.data import DatasetMissing, available
from common.papers import UsageError
from common.runs import run_one
from reproductions.binaryconnect import runner
from reproductions.binaryconnect import binaryconnect
from reproductions.binaryconnect.binaryconnect import (QuantizedBackpropConv2d, QuantizedBackpropLinear,
                                                       QuantizedConv2d, QuantizedLinear, backward_multipliers,
                                                       count_multiplications, exponent_range, hard_sigmoid, mlp,
                                                       quantize_weights, round_to_power_of_two, squared_hinge_loss)
from tests.conftest import assert_usage_error, require_datasets
from tests.resume import kill_then_resume, smoke_context

EXPONENTS = exponent_range(3, 3)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def test_three_exponent_bits_span_two_to_the_minus_four_to_two_cubed():
    assert EXPONENTS == (-4, 3)


@pytest.mark.parametrize("mode, allowed", [("binary_det", {-1.0, 1.0}), ("binary_stoch", {-1.0, 1.0}),
                                           ("ternary", {-1.0, 0.0, 1.0})])
def test_training_forward_weights_lie_exactly_in_their_set(mode, allowed):
    layer = QuantizedLinear(30, 20, mode, quantized_backprop=False, exponents=EXPONENTS)
    layer.train()
    values = set(layer.forward_weights().unique().tolist())
    assert values <= allowed and len(values) >= 2
    conv = QuantizedConv2d(3, 8, 3, 1, mode, quantized_backprop=True, exponents=EXPONENTS)
    assert set(conv.forward_weights().unique().tolist()) <= allowed
    # the weights the layer's output is actually computed with
    x = torch.eye(30)
    assert set(layer(x).unique().tolist()) <= allowed


def test_deterministic_binarization_is_the_sign_and_evaluation_keeps_it():
    layer = QuantizedLinear(4, 1, "binary_det", False, EXPONENTS)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[-0.7, 0.0, 0.2, -0.01]]))
    layer.eval()
    assert layer.forward_weights().tolist() == [[-1.0, 1.0, 1.0, -1.0]]


def test_stochastic_modes_evaluate_with_the_real_valued_weights():
    for mode in ("binary_stoch", "ternary"):
        layer = QuantizedLinear(5, 3, mode, False, EXPONENTS).eval()
        assert torch.equal(layer.forward_weights(), layer.weight)


def test_stochastic_binarization_is_plus_one_with_probability_hard_sigmoid():
    w = torch.linspace(-1.5, 1.5, 13).repeat(40000, 1)
    p_plus = (quantize_weights(w, "binary_stoch") == 1).float().mean(0)
    expected = hard_sigmoid(w[0])
    assert expected[0] == 0 and expected[-1] == 1 and expected[6] == 0.5
    torch.testing.assert_close(p_plus, expected, atol=0.01, rtol=0)  # 4 standard errors at p = 0.5


def test_ternarization_keeps_the_sign_with_probability_abs_w():
    w = torch.tensor([-1.0, -0.6, -0.2, 0.0, 0.3, 0.9]).repeat(40000, 1)
    t = quantize_weights(w, "ternary")
    assert torch.equal(t.sign() * w.sign() >= 0, torch.ones_like(t, dtype=torch.bool))  # never the opposite sign
    torch.testing.assert_close((t != 0).float().mean(0), w[0].abs(), atol=0.01, rtol=0)


def test_an_unknown_mode_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid modes: full, binary_det, binary_stoch, ternary"):
        QuantizedLinear(2, 2, "quaternary", False, EXPONENTS)


def test_rounding_gives_exact_powers_of_two_in_the_exponent_range():
    x = torch.cat([torch.randn(10000) * 4, torch.tensor([0.0, 0.0, 100.0, -1e-3, 2.0 ** -30, 0.5, -8.0])])
    q = round_to_power_of_two(x, *EXPONENTS)
    nonzero = q[q != 0]
    k = torch.log2(nonzero.abs())
    assert torch.equal(k, k.round()) and k.min() >= -4 and k.max() <= 3
    assert set(k.tolist()) == set(range(-4, 4))
    assert torch.equal(q == 0, x == 0)  # zeros stay zero, and nothing else becomes zero
    assert torch.equal(q.sign(), x.sign())
    assert q[-5].item() == 8.0 and q[-4].item() == -2.0 ** -4 and q[-3].item() == 2.0 ** -4  # clipped
    assert q[-2].item() == 0.5 and q[-1].item() == -8.0  # powers of two are kept


def test_rounding_is_unbiased_between_neighbouring_powers():
    x = torch.tensor([0.3, -1.2, 2.9, 5.0])
    draws = torch.stack([round_to_power_of_two(x, *EXPONENTS) for _ in range(40000)])
    torch.testing.assert_close(draws.mean(0), x, atol=0.03, rtol=0)
    assert set(draws[:, 0].tolist()) == {0.25, 0.5}  # 0.3 -> its two neighbours only


def test_rounding_rejects_other_dtypes():
    with pytest.raises(ValueError, match="float32"):
        round_to_power_of_two(torch.ones(3, dtype=torch.float64), -4, 3)


def test_quantized_weight_gradient_is_delta_times_the_rounded_inputs():
    x = torch.randn(6, 5, requires_grad=True)
    w = torch.sign(torch.randn(3, 5))
    delta = torch.randn(6, 3)
    torch.manual_seed(7)
    w.requires_grad_(True)
    QuantizedBackpropLinear.apply(x, w, *EXPONENTS).backward(delta)
    torch.manual_seed(7)  # the backward pass draws only the rounding's random numbers
    q = round_to_power_of_two(x.detach(), *EXPONENTS)
    torch.testing.assert_close(w.grad, delta.t() @ q, rtol=0, atol=0)
    torch.testing.assert_close(x.grad, delta @ w.detach(), rtol=0, atol=0)  # δ·W stays exact
    assert not torch.allclose(w.grad, delta.t() @ x.detach())  # the gradient did use the rounding


def test_quantized_conv_weight_gradient_is_the_correlation_with_the_rounded_inputs():
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    w = torch.sign(torch.randn(4, 3, 3, 3)).requires_grad_(True)
    delta = torch.randn(2, 4, 4, 4)
    torch.manual_seed(3)
    QuantizedBackpropConv2d.apply(x, w, *EXPONENTS).backward(delta)
    torch.manual_seed(3)
    q = round_to_power_of_two(x.detach(), *EXPONENTS).requires_grad_(True)
    w_ref = w.detach().clone().requires_grad_(True)
    torch.nn.functional.conv2d(q, w_ref).backward(delta)
    torch.testing.assert_close(w.grad, w_ref.grad, rtol=1e-5, atol=1e-5)
    x_ref = x.detach().clone().requires_grad_(True)
    torch.nn.functional.conv2d(x_ref, w.detach()).backward(delta)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)


def test_the_logged_multipliers_are_the_ones_the_weight_gradient_used():
    x = torch.randn(6, 5)
    w = torch.sign(torch.randn(3, 5)).requires_grad_(True)
    delta = torch.randn(6, 3)
    with backward_multipliers() as used:
        QuantizedBackpropLinear.apply(x, w, *EXPONENTS).backward(delta)
    QuantizedBackpropLinear.apply(x, w.detach().requires_grad_(True), *EXPONENTS).backward(delta)  # closed: not logged
    (q, exponents), = used
    assert exponents == EXPONENTS
    torch.testing.assert_close(w.grad, delta.t() @ q, rtol=0, atol=0)


def _qb_mlp():
    return mlp(n_in=12, hidden=8, layers=2, n_out=3, mode="ternary", quantized_backprop=True,
               exponents=EXPONENTS, bn_epsilon=1e-4)


def test_the_run_metric_passes_on_the_real_backward_and_fails_when_it_skips_the_rounding(monkeypatch):
    model, x = _qb_mlp(), torch.randn(16, 12)
    assert runner.backward_multipliers_are_powers_of_two(model, x) == 1.0
    assert all(p.grad is None for p in model.parameters())  # the check leaves no gradients behind
    monkeypatch.setattr(binaryconnect, "round_to_power_of_two", lambda x, lo, hi: x)  # a backward without QB
    assert runner.backward_multipliers_are_powers_of_two(model, x) == 0.0


def test_without_qb_the_real_weights_get_the_gradient_of_the_binary_ones():
    layer = QuantizedLinear(4, 3, "binary_det", quantized_backprop=False, exponents=EXPONENTS)
    x = torch.randn(5, 4)
    layer(x).pow(2).sum().backward()
    wb = torch.where(layer.weight.detach() >= 0, 1.0, -1.0).requires_grad_(True)
    (x @ wb.t()).pow(2).sum().backward()
    torch.testing.assert_close(layer.weight.grad, wb.grad)


def test_sgd_uses_the_glorot_scaled_rate_and_clips_binary_weights():
    layer = QuantizedLinear(6, 4, "binary_stoch", False, EXPONENTS)
    glorot = math.sqrt(6 / 10)
    assert layer.lr_scale == pytest.approx(1 / (glorot / 2) ** 2)
    model = torch.nn.Sequential(layer)
    before = layer.weight.detach().clone()
    layer.weight.grad = torch.full_like(before, 1e-4)
    runner.sgd_step(model, lr=0.1)
    torch.testing.assert_close(layer.weight.detach(), (before - 0.1 * layer.lr_scale * 1e-4).clamp(-1, 1))
    layer.weight.grad = torch.full_like(before, -1.0)
    runner.sgd_step(model, lr=1.0)
    assert torch.equal(layer.weight.detach(), torch.ones_like(before))
    full = QuantizedLinear(6, 4, "full", False, EXPONENTS)
    assert full.lr_scale == 1.0 and full.weight.abs().max() <= glorot


def test_squared_hinge_loss_matches_its_definition():
    scores = torch.tensor([[0.5, -2.0, 1.5], [0.0, 0.3, -0.4]])
    labels = torch.tensor([2, 0])
    # t = (-1, -1, +1) and (+1, -1, -1): terms max(0, 1 - t·y)²
    by_hand = ((1.5 ** 2 + 0 + 0) + (1.0 + 1.3 ** 2 + 0.6 ** 2)) / 2
    assert squared_hinge_loss(scores, labels).item() == pytest.approx(by_hand)


def test_multiplication_counts_match_a_hand_count():
    # 3 -> 4 (BN, ReLU) -> 2 (BN), batch 5
    x = torch.randn(5, 3)
    full = count_multiplications(mlp(3, 4, 1, 2, "full", False, EXPONENTS, 1e-4), x)
    # forward: x·W1 5·3·4 = 60, BN 3·5·4 = 60, h·W2 5·4·2 = 40, BN 3·5·2 = 30, squared hinge 10
    # backward: δ·W1 not needed, δᵀx 60, BN 5·20 = 100, δ·W2 40, δᵀh 40, BN 5·10 = 50, loss 10
    # update: W1 12 + γβ 8 + W2 8 + γβ 4
    assert full == {"forward": 200, "backward": 300, "update": 32, "total": 532}
    bc = count_multiplications(mlp(3, 4, 1, 2, "binary_stoch", False, EXPONENTS, 1e-4), x)
    assert bc == {"forward": 100, "backward": 260, "update": 32, "total": 392}  # δ·W2 is sign changes
    bc_qb = count_multiplications(mlp(3, 4, 1, 2, "ternary", True, EXPONENTS, 1e-4), x)
    assert bc_qb == {"forward": 100, "backward": 160, "update": 32, "total": 292}  # δᵀx are shifts
    qb_only = count_multiplications(mlp(3, 4, 1, 2, "full", True, EXPONENTS, 1e-4), x)
    assert qb_only["forward"] == 200 and qb_only["backward"] == 200


def test_counting_does_not_touch_the_random_stream_or_the_mode():
    model = mlp(3, 4, 1, 2, "binary_stoch", True, EXPONENTS, 1e-4).eval()
    state = torch.get_rng_state()
    count_multiplications(model, torch.randn(5, 3))
    assert not model.training
    torch.set_rng_state(state)


def test_cnn_shapes_follow_the_official_architecture():
    model = runner.build("cifar10", "full", False,
                         {**runner.CONFIG, "cnn_channels": [2, 2, 2, 2, 2, 2, 3], "cnn_fc": 5})
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    convs = [m for m in model if isinstance(m, QuantizedConv2d)]
    assert [tuple(c.weight.shape[2:]) for c in convs] == [(3, 3), (3, 3)] + [(2, 2)] * 5
    fc, out = [m for m in model if isinstance(m, QuantizedLinear)]
    assert fc.weight.shape == (5, 3) and out.weight.shape == (10, 5)  # 32→30→28/2→13→12/2→5→4/2→1: 3 features


def test_bad_variants_and_lists_are_usage_errors_naming_what_is_valid():
    assert runner.parse_variant("binary_stoch_qb") == ("binary_stoch", True)
    assert runner.parse_variant("full") == ("full", False)
    with pytest.raises(UsageError, match="optionally with '_qb'"):
        runner.parse_variant("binary_qb")
    cfg = {**runner.CONFIG, **runner.TIERS["smoke"]}
    for overrides, message in [({"datasets": ["mnist", "imagenet"]}, "valid: mnist, cifar10, svhn"),
                               ({"datasets": []}, "datasets is empty"),
                               ({"datasets": "mnist,cifar10"}, "datasets takes a list"),
                               ({"datasets": ["mnist", "mnist"]}, "datasets: mnist listed more than once"),
                               ({"cnn_channels": [8, 8, 8]}, "cnn_channels must list 7 channel counts"),
                               ({"cnn_channels": [8, 8, 8, 0, 8, 8, 8]}, "cnn_channels must be >= 1"),
                               ({"mnist_variants": ["full", "binary"]}, "mnist_variants: unknown variant 'binary'"),
                               ({"svhn_variants": []}, "svhn_variants is empty"),  # checked though not named
                               ({"cifar10_epochs": 0}, "cifar10_epochs must be >= 1"),
                               ({"mnist_batch": 1.5}, "mnist_batch takes an integer"),
                               ({"mnist_lr_end": 0.5}, r"mnist_lr_end \(0.5\) must be <= mnist_lr_start"),
                               ({"cifar10_lr_start": -0.3}, "cifar10_lr_start must be > 0"),
                               ({"mnist_train": 60000}, r"mnist_train must be in \[1, 50000\]"),
                               ({"mnist_valid": 20000}, r"mnist_valid must be in \[1, 10000\]"),
                               ({"svhn_train": 70000}, r"svhn_train must be in \[1, 67257\]"),
                               ({"mnist_train": 50}, r"mnist_train \(50\) must be at least mnist_batch \(100\)"),
                               ({"qb_max_exponent": 200}, "float32 holds -126 … 127"),
                               ({"bn_epsilon": 0.0}, "bn_epsilon must be > 0")]:
        with pytest.raises(UsageError, match=message):
            runner.validate({**cfg, **overrides})
    runner.validate(cfg)
    runner.validate({**runner.CONFIG})
    runner.validate({**runner.CONFIG, **runner.TIERS["cpu"]})
    runner.validate({**cfg, **runner.FEW_STEPS})


@pytest.mark.parametrize("setting, key", [("cifar10_epochs=-2", "cifar10_epochs"), ("mnist_valid=0", "mnist_valid"),
                                          ("cifar10_variants=full,quaternary", "cifar10_variants"),
                                          ("mnist_lr_start=abc", "mnist_lr_start"),
                                          ("cnn_channels=8,8,wide", "cnn_channels")])
def test_out_of_range_or_mistyped_settings_exit_2_with_one_line_naming_the_key(setting, key, tmp_path, monkeypatch,
                                                                                capsys):
    line = assert_usage_error("binaryconnect", setting, tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert key in line


def test_bad_input_is_a_usage_error_before_anything_trains_and_writes_no_record(results_dir):
    require_datasets(*runner.DATASETS)  # run_one verifies them before the runner sees its config
    with pytest.raises(UsageError, match="datasets: unknown 'imagenet'"):
        run_one("binaryconnect", "smoke", 0, overrides={"datasets": ["mnist", "imagenet"]})
    assert not any(results_dir.rglob("*.json"))


@pytest.mark.skipif(available("svhn"), reason="SVHN is present here; the missing-data path cannot be shown")
def test_a_missing_svhn_fails_in_one_line_before_any_training(monkeypatch, results_dir, capsys, tmp_path):
    def offline(entry, target):
        raise OSError("no network in this test")

    monkeypatch.setattr(common.data, "_download", offline)
    from common.datasets import svhn
    svhn.cache_clear()
    cfg = {**runner.CONFIG, **runner.TIERS["smoke"], "datasets": ["svhn"]}  # whichever other datasets exist
    ctx = smoke_context("binaryconnect", tmp_path, resume=False)
    with pytest.raises(DatasetMissing, match=r"dataset 'svhn' is missing train_32x32\.mat") as err:
        runner.run(cfg, ctx)  # the data is loaded before any network is built
    assert not ctx.curves and not (tmp_path / "ckpt").exists()
    assert "\n" not in str(err.value)
    assert main(["run", "binaryconnect", "--tier", "smoke", "--quiet", "--set", "datasets=svhn"]) == 2
    message = capsys.readouterr().err.strip()
    first_missing = "svhn" if available("mnist") and available("cifar10") else "mnist"  # the harness checks
    # every dataset the paper declares (mnist, cifar10, svhn) before a run starts
    assert message.startswith(f"repro: error: dataset '{first_missing}' is missing") and "\n" not in message
    assert not (results_dir / "binaryconnect").exists()


def test_resume_after_kill_matches_uninterrupted(tmp_path):
    require_datasets("mnist", "cifar10")
    cfg = {**runner.CONFIG, **runner.TIERS["smoke"], "mnist_variants": ["full", "binary_stoch_qb"],
           "cifar10_variants": ["ternary_qb"]}
    # killed at the 4th log call: the second epoch of mnist binary_stoch_qb, after its first checkpoint
    reference, resumed, ctx, ckpt = kill_then_resume("binaryconnect", runner.run, cfg, tmp_path, kill_at_log_call=4)
    assert (ckpt / "stage-mnist_full.pt").exists() and (ckpt / "mnist_binary_stoch_qb.pt").exists()
    assert resumed == reference
    rows = [(r["dataset"], r["variant"], r["step"]) for r in ctx.curves]
    assert len(rows) == len(set(rows))
