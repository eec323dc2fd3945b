"""The data layer: one registry of datasets, verified by the checksum of their decoded content.

`dataset_file(name, filename)` finds a file in `$REPRO_DATA_DIR/<name>/`, then `./data/<name>/`,
downloads it from its canonical source when it is in neither place and the network allows, and
verifies the SHA-256 of its *decoded* content (a gzip file is hashed after decompression, so a
re-gzipped copy of the same bytes is valid) before any caller parses it.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from common.papers import ROOT


class DatasetError(RuntimeError):
    """A dataset file is missing (and cannot be downloaded) or fails its checksum."""


class DatasetMissing(DatasetError):
    pass


@dataclass(frozen=True)
class DataFile:
    sha256: str  # of the decoded content
    url: str | None  # canonical source; None when the file can only be placed by hand

    def decoded_digest(self, path: Path) -> str:
        digest = hashlib.sha256()
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_SIREN = "https://raw.githubusercontent.com/vsitzmann/siren/4df34baee3f0f9c8f351630992c1fe1f69114b5f/data/"

REGISTRY: dict[str, dict[str, DataFile]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": DataFile("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", _MNIST + "train-images-idx3-ubyte.gz"),
        "train-labels-idx1-ubyte.gz": DataFile("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", _MNIST + "train-labels-idx1-ubyte.gz"),
        "t10k-images-idx3-ubyte.gz": DataFile("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", _MNIST + "t10k-images-idx3-ubyte.gz"),
        "t10k-labels-idx1-ubyte.gz": DataFile("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", _MNIST + "t10k-labels-idx1-ubyte.gz"),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": DataFile("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", _FASHION + "train-images-idx3-ubyte.gz"),
        "train-labels-idx1-ubyte.gz": DataFile("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", _FASHION + "train-labels-idx1-ubyte.gz"),
        "t10k-images-idx3-ubyte.gz": DataFile("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", _FASHION + "t10k-images-idx3-ubyte.gz"),
        "t10k-labels-idx1-ubyte.gz": DataFile("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", _FASHION + "t10k-labels-idx1-ubyte.gz"),
    },
    # Lee & Seung's face set: MIT CBCL face database #1, 2429 training faces of 19x19.
    "cbcl-faces": {
        "CBCL.mat": DataFile("b2c4a9c3933f1dbc20889efb65e4aaa7a339ec91a13f93ead909c94b23993fa0",
                             "https://raw.githubusercontent.com/amjadseyedi/NMFcUDA/a13487ea821d51a9e5963ebd697589b1d89c3793/CBCL.mat"),
    },
    "siren": {
        "camera.png": DataFile("b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
                               "https://raw.githubusercontent.com/scikit-image/scikit-image/v0.26.0/skimage/data/camera.png"),
        "gt_bach.wav": DataFile("023940a1bcc534349e16ff46f360ffbfffa993842961dbed955c168fd2f38190", _SIREN + "gt_bach.wav"),
        "gt_counting.wav": DataFile("5becf4851addadb660da353e0e6ea6fd653d4d71e5ea1ce1f6973b556ad397ad", _SIREN + "gt_counting.wav"),
    },
    "olivetti-faces": {
        "olivettifaces.mat": DataFile("b1988d02c72fe5b8ee82b5ef3bb7982eafc74f1e1ff0ae0ade35061ad0af534d",
                                      "https://cs.nyu.edu/~roweis/data/olivettifaces.mat"),
    },
    # Derived from the CRAN `cems` copy in Roweis' layout; Roweis' own file has other bytes.
    "frey-faces": {
        "frey_rawface.mat": DataFile("760588854036111918bd5a327caa6124cca156ebe7cbb2e8b2cbbce0d69f399f", None),
    },
}


def search_dirs() -> list[Path]:
    """Where datasets are looked up, in order: $REPRO_DATA_DIR, then ./data."""
    dirs = []
    if os.environ.get("REPRO_DATA_DIR"):
        dirs.append(Path(os.environ["REPRO_DATA_DIR"]).expanduser())
    dirs.append(ROOT / "data")
    return dirs


def _entry(name: str, filename: str) -> DataFile:
    if name not in REGISTRY:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(REGISTRY)}")
    if filename not in REGISTRY[name]:
        raise DatasetError(f"dataset {name!r} has no file {filename!r}; its files: {', '.join(REGISTRY[name])}")
    return REGISTRY[name][filename]


def _download(entry: DataFile, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=30) as response:
            shutil.copyfileobj(response, out)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_verified: set[Path] = set()


def verify(entry: DataFile, path: Path) -> None:
    """Raise DatasetError unless the decoded content of `path` has the registered SHA-256."""
    if path in _verified:
        return
    try:
        actual = entry.decoded_digest(path)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DatasetError(f"dataset file {path} is corrupt or truncated ({err}); replace it") from None
    if actual != entry.sha256:
        raise DatasetError(f"dataset file {path} fails its checksum: decoded sha256 {actual[:16]}..., "
                           f"expected {entry.sha256[:16]}... (corrupt or truncated?); replace it")
    _verified.add(path)


def dataset_file(name: str, filename: str, download: bool = True) -> Path:
    """The verified path of one file of a registered dataset."""
    entry = _entry(name, filename)
    for folder in search_dirs():
        path = folder / name / filename
        if path.exists():
            verify(entry, path)
            return path
    if download and entry.url is not None:
        target = ROOT / "data" / name / filename
        try:
            _download(entry, target)
        except OSError:
            pass
        else:
            verify(entry, target)
            return target
    places = " or ".join(str(d / name) for d in search_dirs())
    source = f" (source: {entry.url})" if entry.url else ""
    raise DatasetMissing(f"dataset {name!r} is missing {filename}{source}; put it in {places}, "
                         f"or set REPRO_DATA_DIR to a folder holding {name}/{filename}")


def available(name: str) -> bool:
    """True when every file of `name` is present locally (no download is attempted)."""
    return all(any((d / name / f).exists() for d in search_dirs()) for f in REGISTRY[name])
