"""Image preprocessing shared by the CIFAR/SVHN papers: pylearn2's global contrast normalization and
ZCA whitening (the recipe of the maxout, BinaryConnect and ELU papers' CIFAR experiments).

Both act on rows: (N, D) flattened images. ZCA computes in the dtype it is given; pass float64 rows
for a more accurate covariance of large D.
"""
from __future__ import annotations

import torch

GCN_SCALE = 55.0  # pylearn2: scale 55 on 3,072 values leaves each pixel with an RMS near 1
ZCA_BIAS = 0.1    # pylearn2's filter bias: keeps directions of tiny variance from being blown up into noise


def global_contrast_normalize(x: torch.Tensor, scale: float = GCN_SCALE) -> torch.Tensor:
    """Per row: subtract its mean, then scale it to norm `scale`."""
    x = x - x.mean(1, keepdim=True)
    return scale * x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)


def zca_fit(train: torch.Tensor, bias: float = ZCA_BIAS) -> tuple[torch.Tensor, torch.Tensor]:
    """The ZCA transform of the rows of `train`: (mean, W) with W = U (Λ + bias)^-½ Uᵀ."""
    mean = train.mean(0)
    centred = train - mean
    eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred / len(train))
    return mean, (eigenvectors / (eigenvalues.clamp_min(0) + bias).sqrt()) @ eigenvectors.T


def zca_apply(x: torch.Tensor, mean: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (x - mean) @ w
