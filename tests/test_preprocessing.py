"""common/preprocessing.py: pylearn2's global contrast normalization and ZCA whitening."""
import math

import torch

from common.preprocessing import global_contrast_normalize, zca_apply, zca_fit


def test_global_contrast_normalization_leaves_each_image_centred_with_pixel_rms_near_one():
    x = torch.rand(6, 3 * 32 * 32) * torch.linspace(0.1, 5, 6)[:, None]
    out = global_contrast_normalize(x)
    torch.testing.assert_close(out.mean(1), torch.zeros(6), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.pow(2).mean(1).sqrt(), torch.full((6,), 55 / math.sqrt(3072)))


def test_zca_whitens_the_training_images():
    torch.manual_seed(0)
    mixing = torch.randn(12, 12)
    x = torch.randn(4000, 12) @ mixing
    mean, w = zca_fit(x, bias=1e-6)
    white = zca_apply(x, mean, w)
    cov = (white - white.mean(0)).T @ (white - white.mean(0)) / len(white)
    torch.testing.assert_close(cov, torch.eye(12), atol=2e-3, rtol=0)
    torch.testing.assert_close(w, w.T)  # ZCA: the symmetric whitening, closest to the data


def test_zca_with_the_default_bias_shrinks_each_direction_by_lambda_over_lambda_plus_bias():
    torch.manual_seed(1)
    x = torch.randn(4000, 6) @ torch.randn(6, 6)
    white = zca_apply(x, *zca_fit(x))
    cov = white.T @ white / len(x)
    eigenvalues = torch.linalg.eigvalsh(x.T @ (x - x.mean(0)) / len(x))
    expected = torch.diag(torch.ones(6))  # λ/(λ + 0.1) on each whitened direction, near 1 for large λ
    assert torch.allclose(cov, expected, atol=0.1 / eigenvalues.min().item() + 0.02)
