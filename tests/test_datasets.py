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


def _supplied(monkeypatch, tmp_path, name: str, files: dict[str, bytes]):
    """Register `files` for dataset `name` by their MD5 (as CIFAR-100 and SVHN are) under tmp_path."""
    import hashlib

    from common import data
    folder = tmp_path / name
    folder.mkdir(parents=True)
    entries = {}
    for filename, payload in files.items():
        (folder / filename).write_bytes(payload)
        entries[filename] = data.DataFile(None, None, md5=hashlib.md5(payload).hexdigest())
    monkeypatch.setitem(data.REGISTRY, name, entries)
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(data, "_verified", set())
    datasets.cifar100.cache_clear()
    datasets.svhn.cache_clear()


def test_cifar100_binary_records_become_images_and_fine_labels(monkeypatch, tmp_path):
    import io
    import tarfile
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)  # 3 images, channel-major as stored
    records = b"".join(bytes([coarse, fine]) + img.tobytes() for coarse, fine, img in zip([1, 2, 3], [7, 99, 0], pixels))
    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w:gz") as tar:
        for split in ("train", "test"):
            info = tarfile.TarInfo(f"cifar-100-binary/{split}.bin")
            info.size = len(records)
            tar.addfile(info, io.BytesIO(records))
    _supplied(monkeypatch, tmp_path, "cifar100", {"cifar-100-binary.tar.gz": blob.getvalue()})
    x, y = datasets.cifar100("train")
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.uint8
    assert y.tolist() == [7, 99, 0]  # the fine labels, not the coarse ones
    np.testing.assert_array_equal(x[1, 4, 5], pixels[1, :, 4, 5])  # channel-last RGB of pixel (4, 5)


def test_svhn_maps_label_10_to_digit_0_and_puts_images_first(monkeypatch, tmp_path):
    import io

    from scipy.io import savemat
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(32, 32, 3, 4), dtype=np.uint8)
    files = {}
    for split in ("train", "test"):
        blob = io.BytesIO()
        savemat(blob, {"X": images, "y": np.array([[10], [1], [9], [10]], dtype=np.uint8)})
        files[f"{split}_32x32.mat"] = blob.getvalue()
    _supplied(monkeypatch, tmp_path, "svhn", files)
    x, y = datasets.svhn("test")
    assert x.shape == (4, 32, 32, 3) and y.tolist() == [0, 1, 9, 0]
    np.testing.assert_array_equal(x[2], images[..., 2])


def test_a_missing_user_supplied_dataset_is_one_clear_error(monkeypatch, tmp_path):
    from common import data
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(data, "ROOT", tmp_path / "project")
    monkeypatch.setattr(data, "_download", lambda entry, target: (_ for _ in ()).throw(OSError("offline")))
    datasets.svhn.cache_clear()
    with pytest.raises(data.DatasetMissing, match="'svhn' is missing train_32x32.mat.*ufldl"):
        datasets.svhn("train")
