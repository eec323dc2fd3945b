"""The array loaders of common/datasets.py, on the real files (facts from each PROVENANCE.md)."""
import numpy as np
import pytest

from common import datasets
from tests.conftest import require_datasets


def test_mnist_shapes_and_label_histogram():
    require_datasets("mnist")
    train_x, train_y = datasets.mnist("train")
    test_x, test_y = datasets.mnist("test")
    assert train_x.shape == (60000, 28, 28) and train_x.dtype == np.uint8
    assert test_x.shape == (10000, 28, 28) and test_y.shape == (10000,)
    assert train_x.max() == 255 and train_x.min() == 0
    # the canonical MNIST training-label histogram
    assert np.bincount(train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_fashion_mnist_is_balanced():
    require_datasets("fashion-mnist")
    x, y = datasets.fashion_mnist("train")
    assert x.shape == (60000, 28, 28)
    assert np.bincount(y).tolist() == [6000] * 10


def test_frey_faces_shape_and_range():
    require_datasets("frey-faces")
    faces = datasets.frey_faces()
    assert faces.shape == (1965, 28, 20) and faces.dtype == np.uint8
    assert (faces.min(), faces.max()) == (8, 238)


def test_cifar10_train_and_the_first_test_images():
    require_datasets("cifar10")
    x, y = datasets.cifar10("train")
    assert x.shape == (50000, 32, 32, 3) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [5000] * 10
    assert y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    test_x, test_y = datasets.cifar10("test")
    assert test_x.shape == (1000, 32, 32, 3)
    assert test_y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


def test_an_unknown_split_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid splits: train, test"):
        datasets.mnist("validation")
