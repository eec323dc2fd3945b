"""Datasets as arrays, read through the data layer (every file is checksum-verified before parsing).

Each loader returns uint8 images exactly as stored, so a paper decides its own scaling and
binarization:

    mnist(split)          (N, 28, 28) uint8, (N,) int64 labels; split "train" (60k) or "test" (10k)
    fashion_mnist(split)  the same shapes, for Fashion-MNIST
    frey_faces()          (1965, 28, 20) uint8
    cifar10(split)        (N, 32, 32, 3) uint8, (N,) int64; "train" (50k) or "test" (only the
                          first 1,000 test images exist in the PNG-batch distribution we read)
"""
from __future__ import annotations

import functools
import gzip
import json

import numpy as np
from PIL import Image
from scipy.io import loadmat

from common.data import dataset_file

SPLITS = ("train", "test")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def _idx(path) -> np.ndarray:
    """Parse an IDX file (LeCun's format): magic 0x0000080d (d = number of dims), dims, uint8 data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@functools.lru_cache(maxsize=4)
def _idx_pair(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    _check_split(split)
    prefix = "train" if split == "train" else "t10k"
    images = _idx(dataset_file(name, f"{prefix}-images-idx3-ubyte.gz"))
    labels = _idx(dataset_file(name, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64)
    return images, labels


def mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    return _idx_pair("mnist", split)


def fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    return _idx_pair("fashion-mnist", split)


@functools.lru_cache(maxsize=1)
def frey_faces() -> np.ndarray:
    """Roweis' layout: `ff` is (560, 1965), one column per 28x20 face."""
    return np.ascontiguousarray(loadmat(dataset_file("frey-faces", "frey_rawface.mat"))["ff"].T.reshape(-1, 28, 20))


@functools.lru_cache(maxsize=2)
def cifar10(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """convnetjs PNG batches: batch k < 50 is training images 1000k..1000k+999, batch 50 the first
    1000 test images; row r of a batch is one image, pixel p the RGB of position (p // 32, p % 32)."""
    _check_split(split)
    batches = range(50) if split == "train" else range(50, 51)
    images = np.concatenate([np.asarray(Image.open(dataset_file("cifar10", f"cifar10_batch_{k}.png")).convert("RGB"))
                             for k in batches]).reshape(-1, 32, 32, 3)
    with open(dataset_file("cifar10", "cifar10_labels.json")) as f:
        labels = np.asarray(json.load(f)["labels"], dtype=np.int64)
    labels = labels[:50000] if split == "train" else labels[50000:]
    return images, labels
