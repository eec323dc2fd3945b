"""Datasets as arrays, read through the data layer (every file is checksum-verified before parsing).

Each loader returns uint8 images exactly as stored, so a paper decides its own scaling and
binarization:

    mnist(split)          (N, 28, 28) uint8, (N,) int64 labels; split "train" (60k) or "test" (10k)
    fashion_mnist(split)  the same shapes, for Fashion-MNIST
    frey_faces()          (1965, 28, 20) uint8
    cifar10(split)        (N, 32, 32, 3) uint8, (N,) int64; "train" (50k) or "test" (only the
                          first 1,000 test images exist in the PNG-batch distribution we read)
    cifar100(split)       (N, 32, 32, 3) uint8, (N,) int64 fine labels 0..99; 50k / 10k, from the
                          binary tarball (read in memory; nothing is unpickled or extracted)
    svhn(split)           (N, 32, 32, 3) uint8, (N,) int64 digits 0..9 (the files' label 10 is 0);
                          format 2, "train" (73,257) or "test" (26,032)

CIFAR-100 and SVHN are not on this project's machines: a user supplies them (README, Data).
"""
from __future__ import annotations

import functools
import gzip
import json
import tarfile

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


CIFAR100_RECORD = 2 + 32 * 32 * 3  # <coarse label><fine label><1024 R><1024 G><1024 B>


@functools.lru_cache(maxsize=2)
def cifar100(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Krizhevsky's binary CIFAR-100: `cifar-100-binary/{train,test}.bin` inside the tarball."""
    _check_split(split)
    path = dataset_file("cifar100", "cifar-100-binary.tar.gz")
    with tarfile.open(path, "r:gz") as tar:
        raw = tar.extractfile(f"cifar-100-binary/{split}.bin").read()
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR100_RECORD)
    images = records[:, 2:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), records[:, 1].astype(np.int64)


@functools.lru_cache(maxsize=2)
def svhn(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """SVHN format 2: `X` is (32, 32, 3, N), `y` is (N, 1) with labels 1..10, where 10 is the digit 0."""
    _check_split(split)
    mat = loadmat(dataset_file("svhn", f"{split}_32x32.mat"))
    images = np.ascontiguousarray(mat["X"].transpose(3, 0, 1, 2))
    labels = mat["y"].reshape(-1).astype(np.int64) % 10
    return images, labels
