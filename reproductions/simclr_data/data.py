"""The data of the CIFAR-scale study of Cole et al. 2022: the fixed CIFAR-10 split, the out-of-domain
images, the coarse label sets, the corruptions of pretraining images, and balanced label subsets.

Every image array here is uint8 (N, 32, 32, 3), channels last, as `common.datasets` returns them;
`augment.to_float` turns a batch into float (B, 3, H, W).

    cifar10_splits()          {"pool": 40k train images, "eval": the other 10k, "test": the 1,000
                              official test images}, each (images, labels)
    ood_images(name, split, n) MNIST or Fashion-MNIST at 32×32, 3 channels (n: a seeded prefix)
    coarse_labels(labels, d)  CIFAR-10 animal/vehicle, Fashion-MNIST garment groups
    salt_and_pepper, downsample_upsample   corruptions of the pretraining images (Fig. 4)
    subset(labels, n, seed)   n labelled examples, balanced over classes
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch.nn import functional as F

from common import datasets

# -- the split of CIFAR-10's 50,000 training images ------------------------------------------------------------
SPLIT_SEED = 0  # one fixed split for every run seed: the pretraining subsets are static, as in the paper
POOL_SIZE = 40_000  # pretraining images, and the labelled images of the probe (nested prefixes)
EVAL_SIZE = 10_000  # held-out images the linear probe is judged on (only 1,000 official test images exist)


def stratified_split(labels: np.ndarray, eval_size: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(pool indices, eval indices) of a stratified split: every class gives the same share of its
    examples to the eval set (eval_size / N, rounded per class so that the total is eval_size), chosen
    by a seeded permutation; the pool is then shuffled (same generator) so that any prefix of it is a
    random subset. Stratified so that the eval set's classes are exactly balanced on CIFAR-10 (1,000
    each) rather than ±30 by chance."""
    labels = np.asarray(labels)
    if not 0 < eval_size < len(labels):
        raise ValueError(f"eval_size must be in (0, {len(labels)}), got {eval_size}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    per_class = np.floor(counts * eval_size / len(labels)).astype(int)
    remainder = eval_size - per_class.sum()
    per_class[rng.permutation(len(classes))[:remainder]] += 1  # largest-remainder ties broken at random
    eval_parts, pool_parts = [], []
    for c, k in zip(classes, per_class):
        members = rng.permutation(np.flatnonzero(labels == c))
        eval_parts.append(members[:k])
        pool_parts.append(members[k:])
    eval_indices = np.sort(np.concatenate(eval_parts))
    pool_indices = rng.permutation(np.concatenate(pool_parts))
    return pool_indices, eval_indices


@functools.lru_cache(maxsize=1)
def cifar10_splits(seed: int = SPLIT_SEED) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"pool", "eval", "test"}: (uint8 images (N, 32, 32, 3), int64 labels). pool = 40,000 training
    images in a seeded random order (take prefixes for nested pretraining subsets), eval = the other
    10,000 (1,000 per class), test = the 1,000 official test images there are. Computed once per process
    and read-only (take copies to modify)."""
    images, labels = datasets.cifar10("train")
    pool, held_out = stratified_split(labels, EVAL_SIZE, seed)
    test_images, test_labels = datasets.cifar10("test")
    splits = {"pool": (images[pool], labels[pool]), "eval": (images[held_out], labels[held_out]),
              "test": (test_images.copy(), test_labels.copy())}
    for pair in splits.values():
        for array in pair:
            array.flags.writeable = False
    return splits


# -- out-of-domain images ------------------------------------------------------------------------------------------
OOD_DATASETS = {"mnist": datasets.mnist, "fashion_mnist": datasets.fashion_mnist}
IMAGE_SIZE = 32


def to_cifar_format(images: np.ndarray, size: int = IMAGE_SIZE, chunk: int = 10_000) -> np.ndarray:
    """Grey (N, h, w) uint8 to (N, size, size, 3) uint8: bilinear resize (align_corners=False, rounded),
    the grey value copied to the 3 channels. In chunks, to bound memory."""
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected grey uint8 images (N, h, w), got {images.dtype} {images.shape}")
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        x = torch.tensor(images[start:start + chunk], dtype=torch.float32).unsqueeze(1)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        out[start:start + chunk] = x.round().clamp(0, 255).to(torch.uint8).squeeze(1).unsqueeze(-1).numpy()
    return out


def ood_images(name: str, split: str = "train", n: int | None = None,
               seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """MNIST or Fashion-MNIST as CIFAR-shaped images: (N, 32, 32, 3) uint8, bilinearly resized from
    28×28, grey in all 3 channels; and the int64 labels. With `n`, the first n of a fixed seeded order
    (one order per seed, so that a smaller n is a prefix of a larger one, like the CIFAR-10 pool)."""
    if name not in OOD_DATASETS:
        raise ValueError(f"unknown out-of-domain dataset {name!r}; valid: {', '.join(OOD_DATASETS)}")
    images, labels = OOD_DATASETS[name](split)
    if n is not None:
        if not 0 <= n <= len(labels):
            raise ValueError(f"n must be in 0..{len(labels)} for {name} {split}, got {n}")
        order = np.random.default_rng(seed).permutation(len(labels))[:n]
        images, labels = images[order], labels[order]
    return to_cifar_format(images), labels


# -- coarse labels ---------------------------------------------------------------------------------------------------
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
# Coarse groups, index = coarse label. CIFAR-10: the usual animal/vehicle split. Fashion-MNIST, by what
# the item is worn on: upper-body garments, trousers, dresses (a one-piece, neither top nor bottom),
# footwear, bags; 5 groups of unequal size (4, 1, 1, 3, 1 classes).
COARSE_GROUPS = {
    "cifar10": {"animal": ("bird", "cat", "deer", "dog", "frog", "horse"),
                "vehicle": ("airplane", "automobile", "ship", "truck")},
    "fashion_mnist": {"top": ("T-shirt/top", "Pullover", "Coat", "Shirt"),
                      "bottom": ("Trouser",),
                      "dress": ("Dress",),
                      "footwear": ("Sandal", "Sneaker", "Ankle boot"),
                      "bag": ("Bag",)},
}
FINE_CLASSES = {"cifar10": CIFAR10_CLASSES, "fashion_mnist": FASHION_MNIST_CLASSES}


def coarse_map(dataset: str) -> np.ndarray:
    """fine label → coarse label, as an array indexed by the fine label."""
    if dataset not in COARSE_GROUPS:
        raise ValueError(f"no coarse labels for {dataset!r}; valid: {', '.join(COARSE_GROUPS)}")
    fine = FINE_CLASSES[dataset]
    mapping = np.full(len(fine), -1, dtype=np.int64)
    for coarse, members in enumerate(COARSE_GROUPS[dataset].values()):
        mapping[[fine.index(m) for m in members]] = coarse
    return mapping


def coarse_labels(labels: np.ndarray, dataset: str) -> np.ndarray:
    """Each fine label's coarse group index (the order of `COARSE_GROUPS[dataset]`)."""
    mapping = coarse_map(dataset)
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= len(mapping)):
        raise ValueError(f"{dataset} labels must be in 0..{len(mapping) - 1}, got {labels.min()}..{labels.max()}")
    return mapping[labels]


# -- corruptions of the pretraining images (Cole et al. Fig. 4) ------------------------------------------------
def _as_nhwc_tensor(images) -> tuple[torch.Tensor, bool]:
    was_numpy = isinstance(images, np.ndarray)
    x = torch.from_numpy(images.copy()) if was_numpy else torch.as_tensor(images)  # a copy: arrays may be read-only
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"expected uint8 images (N, H, W, C), got {x.dtype} {tuple(x.shape)}")
    return x, was_numpy


def salt_and_pepper(images, p: float, generator: torch.Generator):
    """Each pixel, independently with probability p, becomes black (0) or white (255), half each; all
    channels of a pixel together. uint8 (N, H, W, C), numpy or torch, returned as given; deterministic
    given the generator (CPU)."""
    if not 0 <= p <= 1:
        raise ValueError(f"salt-and-pepper probability must be in [0, 1], got {p}")
    x, was_numpy = _as_nhwc_tensor(images)
    u = torch.rand(x.shape[:3], generator=generator, device=x.device).unsqueeze(-1)
    out = torch.where(u < p / 2, torch.zeros_like(x), torch.where(u < p, torch.full_like(x, 255), x))
    return out.numpy() if was_numpy else out


def downsample_upsample(images, resolution: int, chunk: int = 10_000):
    """Remove high frequencies: area-average each image down to resolution × resolution, then resize back
    up bilinearly (align_corners=False), rounded to uint8. E.g. resolution 16 is the paper's 2×
    downsampling of 32×32 images. Deterministic. uint8 (N, H, W, C), numpy or torch, returned as given."""
    x, was_numpy = _as_nhwc_tensor(images)
    h, w = x.shape[1:3]
    if not 1 <= resolution <= min(h, w):
        raise ValueError(f"resolution must be in 1..{min(h, w)}, got {resolution}")
    parts = []
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].permute(0, 3, 1, 2).float()
        part = F.interpolate(part, size=(resolution, resolution), mode="area")
        part = F.interpolate(part, size=(h, w), mode="bilinear", align_corners=False)
        parts.append(part.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1))
    out = torch.cat(parts).contiguous() if parts else x.clone()
    return out.numpy() if was_numpy else out


# -- labelled subsets -----------------------------------------------------------------------------------------------
def subset(labels: np.ndarray, n: int, seed: int, per_class: bool = True) -> np.ndarray:
    """Indices (sorted) of n labelled examples. per_class: n // C from every class and one more from
    n % C classes picked at random, each class's examples in a seeded order, so that for one seed a
    larger n (with balanced counts) contains the smaller one. Otherwise n uniformly at random. n equal to
    the number of labels is the whole set, whatever its balance (a seeded 40k of Fashion-MNIST's 60k has
    3,970-4,000 images per class)."""
    labels = np.asarray(labels)
    if not 0 < n <= len(labels):
        raise ValueError(f"n must be in 1..{len(labels)}, got {n}")
    if n == len(labels):
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if not per_class:
        return np.sort(rng.permutation(len(labels))[:n])
    classes = np.unique(labels)
    orders = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    counts = np.full(len(classes), n // len(classes))
    counts[rng.permutation(len(classes))[:n % len(classes)]] += 1
    short = [(int(c), len(o), int(k)) for c, o, k in zip(classes, orders, counts) if len(o) < k]
    if short:
        raise ValueError(f"cannot take {n} examples balanced over {len(classes)} classes: (class, has, needs) "
                         f"{short}; ask for fewer or use per_class=False")
    return np.sort(np.concatenate([o[:k] for o, k in zip(orders, counts)]))
