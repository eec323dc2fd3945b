"""ELU (reproductions/elu): the four units against their definitions, the networks' shapes and
initialization, the activation statistic, the CIFAR preprocessing and augmentation, the runner's
config errors, and kill-and-resume."""
from __future__ import annotations

import math

import pytest
import torch

from common.data import DatasetMissing, available
from common.papers import UsageError
from reproductions.elu import runner
from reproductions.elu.elu import (SReLU, StackedCNN, activation, autoencoder, classifier, median_unit_means,
                                   pad_crop_flip, parse_stacks)
from tests.conftest import assert_usage_error, require_datasets
from tests.resume import kill_then_resume, smoke_context

X = torch.linspace(-4, 4, 81)


def test_the_four_units_match_their_definitions():
    torch.testing.assert_close(activation("elu")(X), torch.where(X > 0, X, torch.exp(X) - 1))
    torch.testing.assert_close(activation("elu", elu_alpha=0.5)(X), torch.where(X > 0, X, 0.5 * (torch.exp(X) - 1)))
    torch.testing.assert_close(activation("relu")(X), X.clamp_min(0))
    torch.testing.assert_close(activation("lrelu")(X), torch.maximum(0.1 * X, X))
    # the paper's SReLU is the *shifted* ReLU max(-1, x), not an S-shaped one
    torch.testing.assert_close(SReLU()(X), torch.maximum(torch.full_like(X, -1.0), X))
    assert float(SReLU()(torch.tensor(-3.0))) == -1.0 and float(SReLU()(torch.tensor(2.5))) == 2.5


def test_an_unknown_activation_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid: elu, relu, lrelu, srelu"):
        activation("tanh")


def test_the_mnist_classifier_is_8_by_128_with_he_init_and_zero_biases():
    torch.manual_seed(0)
    net = classifier(784, 128, 8, 10, "elu")
    shapes = [tuple(layer.weight.shape) for layer in net.linears]
    assert shapes == [(128, 784)] + [(128, 128)] * 7 + [(10, 128)]
    big = classifier(1000, 1000, 1, 10, "relu")
    assert big.linears[0].weight.std().item() == pytest.approx(math.sqrt(2 / 1000), rel=0.02)
    assert all(torch.count_nonzero(layer.bias) == 0 for layer in net.linears)
    out, hidden = net(torch.rand(5, 784), keep_hidden=True)
    assert out.shape == (5, 10) and len(hidden) == 8 and bool((hidden[0] > -1).all())


def test_the_autoencoder_mirrors_its_encoder():
    net = autoencoder(784, [1000, 500, 250, 30], "elu")
    sizes = [net.linears[0].in_features] + [layer.out_features for layer in net.linears]
    assert sizes == [784, 1000, 500, 250, 30, 250, 500, 1000, 784]


def test_median_unit_means_is_the_median_over_units_of_each_units_batch_mean():
    h = torch.tensor([[1.0, 10.0, -3.0], [3.0, 20.0, -5.0]])  # unit means 2, 15, -4
    assert median_unit_means([h, -h]) == [2.0, -2.0]


def test_cnn_stacks_follow_the_papers_notation():
    assert parse_stacks("192x5|192x1,240x3") == [[(192, 5)], [(192, 1), (240, 3)]]
    eleven = runner.CONFIG["compare_net"] + "|100x1"
    assert sum(len(s) for s in parse_stacks(eleven)) == 11  # §4.3: 11 convolutional layers
    with pytest.raises(ValueError, match="'units x kernel'"):
        parse_stacks("192x5|240")


def test_cnn_keeps_map_size_through_even_kernels_and_pools_only_while_maps_are_2x2_or_larger():
    torch.manual_seed(0)
    net = StackedCNN("8x2|8x3|8x2|8x1|8x1|8x1|10x1", 3, 8, "elu", batch_norm=True)
    pools = [m for m in net.body if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 3  # 8 -> 4 -> 2 -> 1, then no more
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.body) == 6  # not on the class layer
    assert net(torch.randn(4, 3, 8, 8)).shape == (4, 10)
    plain = StackedCNN("8x2|10x1", 3, 8, "relu")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.body)
    with pytest.raises(ValueError, match="one rate per stack"):
        StackedCNN("8x2|10x1", 3, 8, "relu", dropout=[0.1])


def test_pad_crop_flip_returns_a_shifted_and_maybe_mirrored_crop_of_each_image():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5) + 1
    out = pad_crop_flip(x, 2, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        crops = [padded[i, :, dy:dy + 5, dx:dx + 5] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1)) for c in crops)
    assert torch.equal(pad_crop_flip(x, 0, torch.Generator().manual_seed(0))[:, :, :, :].sort(-1).values,
                       x.sort(-1).values)


def test_every_model_of_an_experiment_starts_from_the_same_weights():
    class Ctx:
        seed = 4
    runner.seed_model(Ctx, "mnist")
    a = classifier(20, 8, 3, 10, "elu")
    runner.seed_model(Ctx, "mnist")
    b = classifier(20, 8, 3, 10, "srelu")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_bad_configs_are_usage_errors_naming_the_key_and_what_is_valid():
    cfg = {**runner.CONFIG, **runner.TIERS["smoke"]}
    for overrides, message in [
            ({"mnist_activations": ["elu", "gelu"]},
             "mnist_activations: unknown 'gelu'; valid: elu, relu, lrelu, srelu"),
            ({"mnist_activations": "elu,relu"}, "mnist_activations takes a list"),
            ({"compare_variants": ["elu", "elu"]}, "compare_variants: elu listed more than once"),
            ({"compare_dataset": "svhn"}, "compare_dataset: unknown 'svhn'; valid: cifar10, cifar100"),
            ({"ae_lrs": [0.01, -0.1]}, "ae_lrs must be > 0"),
            ({"ae_encoder": []}, "ae_encoder is empty"),
            ({"mnist_epochs": 0}, r"mnist_epochs must be >= 1"),
            ({"mnist_depth": 2.5}, "mnist_depth takes an integer"),
            ({"mnist_train": 70_000}, r"mnist_train must be in \[0, 60000\]"),
            ({"ae_train": 10}, r"ae_train \(10\) must be 0 \(all\) or at least ae_batch \(64\)"),
            ({"cnn_momentum": 1.5}, r"cnn_momentum must be in \[0, 1\]"),
            ({"compare_dropout": [0.0, 0.0]}, "compare_dropout gives 2 rates for 3 stacks"),
            ({"compare_dropout": [0.0, 1.5, 0.0]}, r"compare_dropout must be in \[0, 1\] \(a dropout rate\)"),
            ({"sota_net": "384x3|oops"}, "sota_net"),
            ({"cnn_zca": "yes"}, "cnn_zca takes true or false")]:
        with pytest.raises(UsageError, match=message):
            runner.validate({**cfg, **overrides})
    runner.validate(cfg)
    runner.validate({**runner.CONFIG})
    runner.validate({**runner.CONFIG, **runner.TIERS["cpu"]})
    runner.validate({**cfg, **runner.FEW_STEPS})


@pytest.mark.parametrize("setting, key", [("mnist_epochs=-1", "mnist_epochs"),
                                          ("compare_dropout=0,2,0", "compare_dropout"),
                                          ("ae_activations=elu,gelu", "ae_activations"),
                                          ("mnist_lr=abc", "mnist_lr"), ("ae_lrs=0.01,fast", "ae_lrs")])
def test_out_of_range_or_mistyped_settings_exit_2_with_one_line_naming_the_key(setting, key, tmp_path, monkeypatch,
                                                                                capsys):
    line = assert_usage_error("elu", setting, tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert key in line


def test_lr_tags_and_evaluation_points():
    assert runner.lr_tag(0.01) == "0p01" and runner.lr_tag(1e-5) == "1em05"
    assert runner.evenly(100, 4) == [25, 50, 75, 100] and runner.evenly(3, 10) == [1, 2, 3]


@pytest.mark.skipif(available("cifar100"), reason="CIFAR-100 is present here")
def test_missing_cifar100_is_one_clear_error():
    with pytest.raises(DatasetMissing, match="'cifar100' is missing cifar-100-binary.tar.gz"):
        runner.cifar_tensors("cifar100", 10, 10, zca=False, device=torch.device("cpu"))


@pytest.mark.parametrize("kill_at", [20, 40, 146])
def test_resume_after_kill_matches_uninterrupted(tmp_path, kill_at):
    require_datasets(*runner.DATASETS)
    cfg = {**runner.CONFIG, **runner.TIERS["smoke"]}
    # each smoke MNIST model logs 4 evaluations of 9 rows: call 20 is inside the first model, after its
    # step-12 checkpoint; call 40 is inside the second, after the first one's finished stage; call 146 is the
    # second autoencoder's evaluation, after the first autoencoder's finished stage
    reference, resumed, ctx, _ = kill_then_resume("elu", runner.run, cfg, tmp_path, kill_at_log_call=kill_at)
    assert resumed == reference
    assert sorted(ctx.arrays) == sorted(f"ae_lr0p01_{a}" for a in cfg["ae_activations"])  # finished stages' too
    rows = [(r["experiment"], r["model"], r.get("lr"), r.get("layer"), r["step"]) for r in ctx.curves]
    assert len(rows) == len(set(rows))


def test_resume_inside_an_augmented_cnn_continues_the_augmentations_random_stream(tmp_path):
    require_datasets(*runner.DATASETS)
    cfg = {**runner.CONFIG, **runner.TIERS["smoke"], "mnist_activations": [], "ae_activations": [],
           "compare_variants": ["elu"], "compare_augment": True}
    runner.validate(cfg)
    # the CNN logs at steps 2, 4, 6 and 8 and checkpoints every 3 steps: call 3 (step 6) resumes from step 3
    reference, resumed, _, _ = kill_then_resume("elu", runner.run, cfg, tmp_path, kill_at_log_call=3)
    assert resumed == reference


def test_an_autoencoder_that_blows_up_is_a_result_not_the_end_of_the_run(tmp_path):
    require_datasets("mnist", "cifar10")
    cfg = {**runner.CONFIG, **runner.TIERS["smoke"], "mnist_activations": [], "compare_variants": [],
           "ae_lrs": [5.0]}
    runner.validate(cfg)
    torch.manual_seed(0)
    metrics = runner.run(cfg, smoke_context("elu", tmp_path, resume=False))
    # at lr 5 the ELU net's reconstruction error goes NaN at its first evaluation; ReLU's stays finite
    assert metrics["ae_lr5_elu_diverged"] == 1.0 and metrics["ae_lr5_elu_diverged_step"] == 10.0
    assert metrics["ae_lr5_relu_diverged"] == 0.0 and "ae_lr5_relu_test_mse" in metrics
    assert "ae_lr5_elu_test_mse" not in metrics and "ae_lr5_elu_margin" not in metrics  # no number to compare
    assert all(math.isfinite(v) for v in metrics.values())
