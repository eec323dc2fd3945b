"""simclr_data building blocks (reproductions/simclr_data): the CIFAR ResNets' shapes and sizes, NT-Xent
against a loop reference and a closed form, LARS by hand, the schedule, the batched augmentations,
and the data layer's split, out-of-domain images, coarse labels, corruptions and subsets."""
from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch
from torch import nn

from reproductions.simclr_data import augment, data
from reproductions.simclr_data.resnet import BasicBlock, parameter_count, resnet
from reproductions.simclr_data.simclr import (LARS, ProjectionHead, lars_param_groups, nt_xent,
                                              scaled_learning_rate, warmup_cosine_lr)
from tests.conftest import require_datasets

torch.set_num_threads(1)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_images(n: int = 16, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=gen(seed))


# -- ResNets ---------------------------------------------------------------------------------------------------------
def test_resnet_sizes_match_the_known_parameter_counts():
    r18, r20 = resnet("resnet18"), resnet(20)
    # CIFAR ResNet-18 is 11.17M with a 10-way classifier (5,130 parameters); He et al. 2016 Table 6: ResNet-20 0.27M
    assert parameter_count(r18) == 11_168_832 and r18.feature_dim == 512
    assert parameter_count(r20) + 64 * 10 + 10 == 269_722 and r20.feature_dim == 64
    assert resnet(20, width=2).feature_dim == 128 and resnet(8).feature_dim == 64
    assert parameter_count(resnet(20, shortcut="projection")) > parameter_count(r20)  # 1×1 convs added
    assert len([m for m in r20.modules() if isinstance(m, BasicBlock)]) == 9  # 3 stages of 3 blocks
    assert not any(isinstance(m, nn.MaxPool2d) for m in r18.modules())  # CIFAR stem
    assert r18.stem[0].kernel_size == (3, 3) and r18.stem[0].stride == (1, 1)


def test_resnet_forward_returns_the_pooled_representation_in_either_memory_format():
    torch.manual_seed(0)
    net = resnet(20, width=2)
    with torch.no_grad():
        net.stem[1].weight.uniform_(0.5, 1.5)  # make the net not the identity-ish init
        for m in net.modules():
            if isinstance(m, BasicBlock):
                m.bn2.weight.fill_(0.5)
    net.eval()
    x = random_images(4)
    h = net(x)
    assert h.shape == (4, 128) and bool((h >= 0).all())  # averaged ReLU outputs
    fast = net.to(memory_format=torch.channels_last)
    torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), h, atol=1e-5, rtol=1e-4)
    assert resnet(18)(random_images(2)).shape == (2, 512)


def test_every_residual_branch_starts_at_zero_and_bad_depths_say_what_is_valid():
    net = resnet(20)
    assert all(float(m.bn2.weight.detach().abs().sum()) == 0 for m in net.modules() if isinstance(m, BasicBlock))
    assert all(float(m.bn2.weight.detach().sum()) > 0 for m in resnet(20, zero_init_residual=False).modules()
               if isinstance(m, BasicBlock))
    with pytest.raises(ValueError, match="6n \\+ 2 = 8, 14, 20"):
        resnet(19)
    with pytest.raises(ValueError, match="Bottleneck"):
        resnet("ResNet-50")  # 50 = 6·8 + 2, but nobody asking for it means that
    with pytest.raises(ValueError, match="'resnet18'"):
        resnet("wide_resnet")
    with pytest.raises(ValueError, match="valid: projection, zero_pad"):
        resnet(20, shortcut="conv")


# -- the head, NT-Xent, LARS, the schedule ---------------------------------------------------------------------------
def test_projection_head_is_linear_bn_relu_linear_bn_to_128():
    head = ProjectionHead(64)
    kinds = [type(m).__name__ for m in head.layers]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "ScaleOnlyBatchNorm"]
    assert all(m.bias is None for m in head.layers if isinstance(m, nn.Linear))  # BN makes biases redundant
    assert head(torch.randn(8, 64)).shape == (8, 128)
    assert sum(isinstance(m, nn.Linear) for m in ProjectionHead(64, layers=3).layers) == 3  # SimCLR v2
    plain = ProjectionHead(64, batch_norm=False)
    assert [type(m).__name__ for m in plain.layers] == ["Linear", "ReLU", "Linear"] and plain.layers[0].bias is not None


def slow_nt_xent(z1, z2, tau):
    """Eq. (1) with loops: views 2k and 2k+1 are image k's."""
    z = [v / v.norm() for pair in zip(z1, z2) for v in pair]
    total = 0.0
    for i in range(len(z)):
        j = i + 1 if i % 2 == 0 else i - 1
        denominator = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(len(z)) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / tau) / denominator)
    return total / len(z)


def test_nt_xent_matches_a_loop_over_eq_1():
    z1, z2 = torch.randn(5, 7, generator=gen(1)), torch.randn(5, 7, generator=gen(2))
    for tau in (0.1, 0.5, 1.0):
        assert float(nt_xent(z1, z2, tau)) == pytest.approx(slow_nt_xent(z1, z2, tau), rel=1e-5)
    assert float(nt_xent(3 * z1, z2, 0.5)) == pytest.approx(float(nt_xent(z1, z2, 0.5)), rel=1e-6)  # cosine


def test_nt_xent_of_identical_views_orthogonal_to_the_rest():
    n, tau = 4, 0.5
    z = torch.eye(6)[:n] * 2.0
    # positive sim 1, the 2n - 2 negatives sim 0: log(1 + (2n - 2) e^{-1/τ})
    assert float(nt_xent(z, z.clone(), tau)) == pytest.approx(math.log(1 + (2 * n - 2) * math.exp(-1 / tau)), rel=1e-6)
    z1 = torch.randn(n, 6, requires_grad=True)
    nt_xent(z1, torch.randn(n, 6), 0.5).backward()
    assert z1.grad is not None and bool(torch.isfinite(z1.grad).all())
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(torch.randn(4, 6), torch.randn(3, 6), 0.5)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        nt_xent(z, z, 0.0)


def test_lars_scales_the_step_by_the_trust_ratio_and_leaves_excluded_params_alone():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # |w| = 5
    b = nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = LARS([dict(params=[w], weight_decay=0.1), dict(params=[b], weight_decay=0.0, adapt=False)],
               lr=0.1, momentum=0.9, trust_coefficient=0.001)
    w.grad, b.grad = torch.tensor([[0.6, 0.8]]), torch.tensor([0.5, -0.5])
    opt.step()
    g = torch.tensor([[0.6 + 0.3, 0.8 + 0.4]])  # grad + wd w, |g| = 1.5
    step1 = 0.1 * (0.001 * 5 / 1.5) * g
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0]]) - step1)
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.05, 2.0 + 0.05]))  # plain lr × grad
    w_before = w.detach().clone()
    w.grad, b.grad = torch.tensor([[0.6, 0.8]]), torch.tensor([0.5, -0.5])
    opt.step()  # momentum: v = 0.9 v + lr trust g, with the new |w| and g
    g2 = torch.tensor([[0.6, 0.8]]) + 0.1 * w_before
    step2 = 0.9 * step1 + 0.1 * 0.001 * w_before.norm() / g2.norm() * g2
    torch.testing.assert_close(w.detach(), w_before - step2)
    torch.testing.assert_close(b.detach(), torch.tensor([0.95 - 0.045 - 0.05, 2.05 + 0.045 + 0.05]))


def test_lars_groups_exclude_batch_norm_and_biases():
    model = nn.Sequential(resnet(8, width=0.25), ProjectionHead(16, batch_norm=False))
    adapted, excluded = lars_param_groups(model, weight_decay=1e-4)
    assert adapted["weight_decay"] == 1e-4 and adapted["adapt"]
    assert excluded["weight_decay"] == 0 and not excluded["adapt"]
    bn_and_bias = {id(p) for m in model.modules() for p in m.parameters(recurse=False)
                   if isinstance(m, nn.BatchNorm2d) or p is getattr(m, "bias", None)}
    assert {id(p) for p in excluded["params"]} == bn_and_bias
    assert len(adapted["params"]) + len(excluded["params"]) == len(list(model.parameters()))
    zero = nn.Parameter(torch.zeros(2, 2))  # |w| = 0: trust ratio 1, a plain SGD step
    opt = LARS([zero], lr=0.5, momentum=0.0)
    zero.grad = torch.ones(2, 2)
    opt.step()
    torch.testing.assert_close(zero.detach(), torch.full((2, 2), -0.5))
    with pytest.raises(ValueError, match="momentum must be in"):
        LARS([zero], lr=0.1, momentum=1.0)


def test_warm_up_then_cosine():
    assert scaled_learning_rate(0.3, 4096) == pytest.approx(4.8)  # the paper's ImageNet LARS rate
    assert scaled_learning_rate(0.075, 4096, "sqrt") == pytest.approx(4.8)
    peak = 2.0
    assert warmup_cosine_lr(0, 100, 10, peak) == 0.0
    assert warmup_cosine_lr(5, 100, 10, peak) == pytest.approx(1.0)
    assert warmup_cosine_lr(10, 100, 10, peak) == pytest.approx(peak)
    assert warmup_cosine_lr(55, 100, 10, peak) == pytest.approx(peak / 2)
    assert warmup_cosine_lr(100, 100, 10, peak) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="valid: linear, sqrt"):
        scaled_learning_rate(0.3, 256, "log")


# -- augmentation ----------------------------------------------------------------------------------------------------
def test_two_views_are_float_in_0_1_per_image_and_deterministic():
    images = (random_images(32) * 255).to(torch.uint8)
    v1, v2 = augment.two_views(images, gen(3))
    assert v1.shape == v2.shape == (32, 3, 32, 32) and v1.dtype == torch.float32
    assert float(v1.min()) >= 0 and float(v1.max()) <= 1
    assert not torch.allclose(v1, v2, atol=1e-3)  # two draws
    w1, w2 = augment.two_views(images.permute(0, 2, 3, 1).numpy(), gen(3))  # channels-last numpy: the same
    torch.testing.assert_close(w1, v1)
    torch.testing.assert_close(w2, v2)
    b1, _ = augment.two_views(images, gen(3), strength=1.0, blur=True)
    assert b1.shape == v1.shape and float(b1.min()) >= 0 and float(b1.max()) <= 1
    same = images[:1].expand(16, -1, -1, -1)  # one image 16 times: 16 different views
    views, _ = augment.two_views(same, gen(4))
    assert len({tuple(v.flatten()[:50].tolist()) for v in views}) == 16
    with pytest.raises(ValueError, match="uint8 images"):
        augment.two_views(images.float(), gen(0))


def test_crop_boxes_lie_inside_with_the_asked_area_and_aspect():
    boxes = augment.crop_boxes(2000, 32, 32, gen(5))
    top, left, h, w = boxes.T
    assert bool((top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all())
    area = h * w / 1024
    assert float(area.min()) >= 0.05 and float(area.max()) <= 1  # 0.08 up to rounding of the sides
    # U(0.08, 1) has mean 0.54; rejecting boxes that stick out (11% of draws at 32×32) lowers it to 0.49
    assert float(area.mean()) == pytest.approx(0.49, abs=0.025)
    assert float((w / h).min()) > 0.6 and float((w / h).max()) < 1.7
    assert len({tuple(b.tolist()) for b in boxes[:50]}) > 40  # each image its own box


def test_full_crop_is_the_identity_and_flip_is_torch_flip():
    x = random_images(6)
    full = augment.random_resized_crop(x, gen(), scale=(1, 1), ratio=(1, 1))
    torch.testing.assert_close(full, x, atol=1e-5, rtol=0)
    flipped = augment.random_resized_crop(x, gen(), scale=(1, 1), ratio=(1, 1), flip_p=1.0)
    torch.testing.assert_close(flipped, torch.flip(x, dims=[-1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(augment.random_flip(x, gen(), p=1.0), torch.flip(x, dims=[-1]))
    assert torch.equal(augment.random_flip(x, gen(), p=0.0), x)
    half = augment.random_resized_crop(x, gen(), scale=(0.25, 0.25), ratio=(1, 1))  # a 16×16 box, upsampled 2×
    assert not torch.allclose(half, x)


def test_greyscale_gives_equal_channels_with_probability_p():
    x = random_images(400)
    grey = augment.random_greyscale(x, gen(), p=1.0)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    torch.testing.assert_close(grey[:, 0], 0.2989 * x[:, 0] + 0.5870 * x[:, 1] + 0.1140 * x[:, 2])
    some = augment.random_greyscale(x, gen(1))
    share = float((some[:, 0] == some[:, 1]).all(dim=(1, 2)).float().mean())
    assert 0.14 < share < 0.26  # p = 0.2


def test_hsv_conversion_and_saturation_match_colorsys():
    x = random_images(2, size=8)
    pixels = x.permute(0, 2, 3, 1).reshape(-1, 3).tolist()
    expected = torch.tensor([colorsys.rgb_to_hsv(*p) for p in pixels])
    hsv = augment.rgb_to_hsv(x)
    torch.testing.assert_close(hsv.permute(0, 2, 3, 1).reshape(-1, 3), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(augment.hsv_to_rgb(hsv), x, atol=1e-5, rtol=0)
    for factor in (0.6, 1.4, 3.0):
        s = (expected[:, 1] * factor).clamp(max=1)
        reference = torch.tensor([colorsys.hsv_to_rgb(h, si, v)
                                  for (h, _, v), si in zip(expected.tolist(), s.tolist())])
        got = augment.adjust_saturation(x, torch.full((2,), factor)).permute(0, 2, 3, 1).reshape(-1, 3)
        torch.testing.assert_close(got, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(augment.adjust_hue(x, torch.zeros(2)), x, atol=1e-5, rtol=0)
    shifted = augment.adjust_hue(x, torch.full((2,), 0.25))
    torch.testing.assert_close(augment.rgb_to_hsv(shifted)[:, 0], (hsv[:, 0] + 0.25) % 1, atol=1e-4, rtol=0)


def test_colour_jitter_draws_per_image_and_is_off_at_strength_0():
    x = random_images(1).expand(24, -1, -1, -1)
    jittered = augment.colour_jitter(x, gen(), strength=0.5, p=1.0)
    assert len({round(float(v.mean()), 6) for v in jittered}) == 24
    torch.testing.assert_close(augment.colour_jitter(x, gen(), strength=0.0, p=1.0), x, atol=1e-5, rtol=0)
    assert torch.equal(augment.colour_jitter(x, gen(), strength=0.5, p=0.0), x)
    contrast = augment.adjust_contrast(x[:2], torch.tensor([0.0, 1.0]))  # factor 0: each channel's mean
    torch.testing.assert_close(contrast[0], x[0].mean(dim=(1, 2), keepdim=True).expand_as(x[0]))


def test_blur_keeps_constants_in_the_interior_and_uses_each_images_sigma():
    flat = torch.full((2, 3, 40, 40), 0.5)
    blurred = augment.gaussian_blur(flat, torch.tensor([0.5, 2.0]))  # kernel 40 // 10 = 4 -> 5 taps
    torch.testing.assert_close(blurred[:, :, 2:-2, 2:-2], flat[:, :, 2:-2, 2:-2])
    dot = torch.zeros(2, 3, 40, 40)
    dot[:, :, 20, 20] = 1
    spread = augment.gaussian_blur(dot, torch.tensor([0.1, 2.0]))
    assert float(spread[0, 0, 20, 20]) > 0.99 and float(spread[1, 0, 20, 20]) < 0.1
    torch.testing.assert_close(spread.sum(dim=(2, 3)), torch.ones(2, 3))


# -- data ------------------------------------------------------------------------------------------------------------
def test_the_split_is_stratified_disjoint_and_fixed():
    labels = np.repeat(np.arange(10), 500)
    pool, held_out = data.stratified_split(labels, 1000, seed=0)
    assert len(pool) == 4000 and len(held_out) == 1000 and not set(pool) & set(held_out)
    assert sorted(np.concatenate([pool, held_out])) == list(range(5000))
    assert np.bincount(labels[held_out]).tolist() == [100] * 10
    again, _ = data.stratified_split(labels, 1000, seed=0)
    other, _ = data.stratified_split(labels, 1000, seed=1)
    assert np.array_equal(pool, again) and not np.array_equal(pool, other)
    assert not np.array_equal(pool, np.sort(pool))  # shuffled: prefixes are random subsets


def test_cifar10_splits():
    require_datasets("cifar10")
    splits = data.cifar10_splits()
    pool, held_out, test = splits["pool"], splits["eval"], splits["test"]
    assert pool[0].shape == (40_000, 32, 32, 3) and held_out[0].shape == (10_000, 32, 32, 3)
    assert test[0].shape == (1000, 32, 32, 3) and pool[0].dtype == np.uint8
    assert np.bincount(held_out[1]).tolist() == [1000] * 10
    p, e = data.stratified_split(data.datasets.cifar10("train")[1], data.EVAL_SIZE, data.SPLIT_SEED)
    assert not set(p) & set(e)
    assert np.array_equal(pool[0][:5], data.datasets.cifar10("train")[0][p[:5]])


def test_out_of_domain_images_are_cifar_shaped_uint8():
    grey = np.zeros((3, 28, 28), dtype=np.uint8)
    grey[:, 10:18, 10:18] = 200
    out = data.to_cifar_format(grey)
    assert out.shape == (3, 32, 32, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], out[..., 2]) and out.max() == 200 and out[0, 0, 0, 0] == 0
    require_datasets("mnist", "fashion-mnist")
    for name in ("mnist", "fashion_mnist"):
        images, labels = data.ood_images(name, "test")
        assert images.shape == (10_000, 32, 32, 3) and images.dtype == np.uint8 and labels.shape == (10_000,)
    with pytest.raises(ValueError, match="valid: mnist, fashion_mnist"):
        data.ood_images("svhn")


def test_coarse_labels_by_hand():
    fine = np.arange(10)
    # airplane automobile bird cat deer dog frog horse ship truck; vehicle = 1
    assert data.coarse_labels(fine, "cifar10").tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 1, 1]
    # T-shirt Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag Boot -> top 0, bottom 1, dress 2, footwear 3, bag 4
    assert data.coarse_labels(fine, "fashion_mnist").tolist() == [0, 1, 0, 2, 0, 3, 0, 3, 4, 3]
    with pytest.raises(ValueError, match="valid: cifar10, fashion_mnist"):
        data.coarse_labels(fine, "mnist")
    with pytest.raises(ValueError, match="0..9"):
        data.coarse_labels(np.array([10]), "cifar10")


def test_salt_and_pepper_hits_a_fraction_p_of_pixels_half_each():
    images = np.full((50, 32, 32, 3), 100, dtype=np.uint8)
    noisy = data.salt_and_pepper(images, 0.1, gen(7))
    assert noisy.dtype == np.uint8 and noisy.shape == images.shape
    assert (noisy == noisy[..., :1]).all()  # the channels of a pixel together
    black, white = (noisy[..., 0] == 0).mean(), (noisy[..., 0] == 255).mean()
    assert black + white == pytest.approx(0.1, abs=0.005) and black == pytest.approx(0.05, abs=0.004)
    assert np.array_equal(noisy, data.salt_and_pepper(images, 0.1, gen(7)))
    assert images[0, 0, 0, 0] == 100  # the input is untouched
    assert torch.equal(data.salt_and_pepper(torch.from_numpy(images), 0.0, gen()), torch.from_numpy(images))


def test_downsample_upsample_removes_high_frequencies_and_keeps_constants():
    constant = np.full((4, 32, 32, 3), 77, dtype=np.uint8)
    assert np.array_equal(data.downsample_upsample(constant, 8), constant)
    checker = ((np.indices((32, 32)).sum(0) % 2) * 255).astype(np.uint8)[None, :, :, None].repeat(3, axis=3)
    smooth = data.downsample_upsample(checker, 16)
    assert smooth.shape == checker.shape and set(np.unique(smooth)) <= {127, 128}
    assert np.array_equal(data.downsample_upsample(checker, 32), checker)
    with pytest.raises(ValueError, match="resolution must be in 1..32"):
        data.downsample_upsample(checker, 64)


def test_subset_is_balanced_nested_and_seeded():
    labels = np.random.default_rng(0).integers(0, 10, 3000)
    small, large = data.subset(labels, 100, seed=3), data.subset(labels, 1000, seed=3)
    assert np.bincount(labels[small]).tolist() == [10] * 10 and np.bincount(labels[large]).tolist() == [100] * 10
    assert set(small) <= set(large) and len(set(large)) == 1000
    assert sorted(np.bincount(labels[data.subset(labels, 105, seed=3)])) == [10] * 5 + [11] * 5
    assert not np.array_equal(small, data.subset(labels, 100, seed=4))
    assert len(data.subset(labels, 50, seed=0, per_class=False)) == 50
    with pytest.raises(ValueError, match="per_class=False"):
        data.subset(np.array([0] * 10 + [1] * 2), 10, seed=0)
    unbalanced = np.array([0] * 10 + [1] * 2)  # all of a set is the set, balanced or not
    assert data.subset(unbalanced, 12, seed=0).tolist() == list(range(12))


def test_supervised_takes_all_of_an_unbalanced_pretraining_set():
    require_datasets("fashion-mnist")
    _, labels = data.ood_images("fashion_mnist", "train", 40_000)
    assert np.bincount(labels).min() < 4_000  # the seeded 40k is not balanced...
    assert len(data.subset(labels, 40_000, data.SPLIT_SEED)) == 40_000  # ...and is still usable whole


# -- the runner --------------------------------------------------------------------------------------------------------
def _runner():
    from common.papers import get_paper
    return get_paper("simclr_data").runner()


def _point_cfg(tier: str, name: str, sets: dict | None = None) -> dict:
    from common.config import resolve
    runner = _runner()
    point = next(p for p in runner.POINTS[tier] if p.name == name)
    return resolve(runner, tier, sets or {}, point)


def test_the_study_has_every_question_and_each_consumer_needs_a_producer_of_the_same_seed():
    from common.experiments import tier_points
    runner = _runner()
    points = {p.name: p for p in tier_points(runner, "cpu")}
    pretrain = [p for p in points.values() if p.labels["stage"] == "pretrain"]
    assert {p.labels["data"] for p in pretrain if p.labels["method"] == "simclr"} >= {
        "cifar2.5k", "cifar5k", "cifar10k", "cifar20k", "cifar40k", "cifar20k+ood20k", "cifar10k+ood10k", "fmnist40k",
        "cifar40k-sp1.2", "cifar40k-sp3.2", "cifar40k-down16", "cifar40k-down8"}
    for p in points.values():
        if p.labels["stage"] != "pretrain":
            needs = p.requires["encoder"]
            assert needs.seed is None and points[needs.point].labels["stage"] == "pretrain"
            assert points[needs.point].labels["data"] == p.labels["data"]
    assert sorted(p.labels["labels"] for p in points.values() if p.labels["stage"] == "finetune") == ["1k", "250", "40k", "4k"]


def test_a_pretraining_set_mixes_sources_and_corrupts_every_method_s_images_alike():
    require_datasets("cifar10", "fashion-mnist", "mnist")
    runner = _runner()
    cfg = _point_cfg("cpu", "stage=pretrain,method=simclr,data=cifar10k+ood10k")
    images, labels, extra = runner.pretraining_set(cfg)
    assert images.shape == (20_000, 32, 32, 3) and images.dtype == np.uint8 and extra == {}
    grey = (images[..., 0] == images[..., 1]).all(axis=(1, 2)) & (images[..., 1] == images[..., 2]).all(axis=(1, 2))
    assert grey[10_000:].all() and grey[:10_000].mean() < 0.05  # CIFAR-10 first, then the grey out-of-domain half
    simclr = runner.pretraining_set(_point_cfg("cpu", "stage=pretrain,method=simclr,data=cifar40k-sp3.2"))
    supervised = runner.pretraining_set(_point_cfg("cpu", "stage=pretrain,method=supervised,data=cifar40k-sp3.2"))
    assert np.array_equal(simclr[0], supervised[0])  # the same corrupted images for both methods
    assert simclr[2]["corruption_psnr"] == pytest.approx(10 * math.log10(255 ** 2 / 654), abs=0.3)  # matched to down8
    down8 = runner.pretraining_set(_point_cfg("cpu", "stage=pretrain,method=simclr,data=cifar40k-down8"))
    assert down8[2]["corruption_psnr"] == pytest.approx(simclr[2]["corruption_psnr"], abs=0.3)


def test_the_probe_separates_separable_features_and_picks_the_strength_on_held_out_data():
    runner = _runner()
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), [220] + [20] * 9)  # class 0 is 55% of the labels
    centres = rng.normal(size=(10, 16)) * 5
    features = centres[labels] + rng.normal(size=(400, 16))
    predict = runner.fit_probe(features, labels, {"C": [1e-6, 1.0], "max_iter": 500})
    test_labels = np.repeat(np.arange(10), 10)
    assert (predict(centres[test_labels] + rng.normal(size=(100, 16))) == test_labels).mean() > 0.95
    # C = 1e-6 alone leaves only the (unpenalised) intercept: it predicts the majority class, so the
    # held-out fifth must have chosen C = 1 above
    weak = runner.fit_probe(features, labels, {"C": [1e-6], "max_iter": 500})
    assert (weak(features) == 0).mean() > 0.9


def test_coarse_scores_judge_the_fine_predictions_at_the_coarse_level():
    runner = _runner()
    labels = np.array([0, 1, 2, 3])          # airplane, automobile, bird, cat
    predicted = np.array([1, 0, 3, 0])       # vehicle->vehicle twice, animal->animal, animal->vehicle
    assert runner.scores(predicted, labels, "cifar10", "x_") == {"x_accuracy": 0.0, "x_coarse_accuracy": 75.0}


@pytest.mark.parametrize("setting, key", [
    (["images.cifar10=0"], "images"),
    (["method=supervised", "images.fashion_mnist=100"], "images"),
    (["method=supervised", "images.cifar10=100", "labels=500"], "labels"),
    (["corruption=salt_pepper"], "salt_pepper_p"),
    (["encoder.depth=50"], "encoder"),
    (["probe.datasets=mnist"], "probe.datasets"),
    (["probe.label_counts=1000"], "probe.label_counts"),
])
def test_validate_names_what_was_wrong_and_what_is_valid(setting, key):
    from common.config import parse_sets, resolve
    from common.papers import UsageError
    runner = _runner()
    with pytest.raises(UsageError, match=key.replace(".", r"\.")):
        runner.validate(resolve(runner, "smoke", parse_sets(runner, setting)))


def test_a_killed_simclr_run_resumes_to_the_same_encoder(tmp_path):
    """Killed between two checkpoints, resumed: the same losses and the same published encoder."""
    require_datasets("cifar10", "fashion-mnist", "mnist")
    from tests.resume import kill_then_resume
    runner = _runner()
    cfg = _point_cfg("smoke", "stage=pretrain,method=simclr,data=mix-sp",
                     {"simclr": {"steps": 6}, "checkpoint_every": 2, "log_every": 1})

    def run(cfg, ctx):
        published = {}
        ctx.publisher = lambda name, value: published.setdefault(name, value) and {}
        metrics = runner.run(cfg, ctx)
        state = published["encoder"]["state"]
        return {**metrics, "weights": sum(float(v.float().sum()) for v in state.values())}

    reference, resumed, _, ckpt = kill_then_resume("simclr_data", run, cfg, tmp_path, kill_at_log_call=4)
    assert (ckpt / "simclr.pt").exists()
    assert resumed == reference


def test_the_probe_s_settings_leave_a_pretraining_point_and_its_encoder_alone():
    """A pretraining point's config (its record's identity and its encoder's address) holds only what it reads:
    a new probe setting reruns the probes but reuses every encoder; a new SimCLR recipe reruns its consumers."""
    from common.artifacts import address
    name, probe = "stage=pretrain,method=simclr,data=cifar10k", "stage=probe,method=simclr,data=cifar10k"
    new_probe = {"probe": {"C": [5.0]}}
    assert _point_cfg("cpu", name, new_probe) == _point_cfg("cpu", name)
    assert address("simclr_data", "encoder", _point_cfg("cpu", name, new_probe), 0) == \
        address("simclr_data", "encoder", _point_cfg("cpu", name), 0)
    assert _point_cfg("cpu", probe, new_probe) != _point_cfg("cpu", probe)
    new_recipe = {"simclr": {"temperature": 0.3}}
    assert _point_cfg("cpu", name, new_recipe) != _point_cfg("cpu", name)
    assert _point_cfg("cpu", probe, new_recipe) != _point_cfg("cpu", probe)
    supervised = "stage=pretrain,method=supervised,data=cifar40k"
    assert _point_cfg("cpu", supervised, new_recipe) == _point_cfg("cpu", supervised)
