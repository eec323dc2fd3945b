"""The data layer: one registry of datasets, verified by the checksum of their decoded content.

`dataset_file(name, filename)` finds a file in `$REPRO_DATA_DIR/<name>/`, then `./data/<name>/`,
downloads it from its canonical source when it is in neither place and the network allows, and
verifies the SHA-256 of its *decoded* content (a gzip file is hashed after decompression, so a
re-gzipped copy of the same bytes is valid) before any caller parses it. A file this project has
never held (CIFAR-100, SVHN: only a user supplies them) is verified instead by the MD5 its source
publishes for the file as distributed.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from common.papers import ROOT


class DatasetError(RuntimeError):
    """A dataset file is missing (and cannot be downloaded) or fails its checksum."""


class DatasetMissing(DatasetError):
    pass


@dataclass(frozen=True)
class DataFile:
    sha256: str | None  # of the decoded content
    url: str | None  # canonical source; None when the file can only be placed by hand
    md5: str | None = None  # of the file as distributed, as its source publishes it (when sha256 is unknown)

    def __post_init__(self):
        if (self.sha256 is None) == (self.md5 is None):
            raise ValueError("a DataFile takes exactly one checksum: sha256 (decoded) or md5 (as distributed)")

    def digest(self, path: Path) -> tuple[str, str]:
        """(kind, hex digest) of `path`, the kind this entry is registered with."""
        if self.md5 is not None:
            digest, opener = hashlib.md5(usedforsecurity=False), open
        else:
            digest, opener = hashlib.sha256(), gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return ("md5" if self.md5 is not None else "decoded sha256"), digest.hexdigest()

    @property
    def expected(self) -> str:
        return self.md5 if self.md5 is not None else self.sha256


_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_CIFAR_PNG = "https://raw.githubusercontent.com/ml4a/ml4a.github.io/07ab41737671cb336c1e4df9978da2983cbbf52e/demos/datasets/cifar/"
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
    # Karpathy's convnetjs PNG batches of CIFAR-10 (ml4a mirror): batch k < 50 holds training images
    # 1000k..1000k+999, batch 50 the first 1000 test images; row r of a PNG is one 32x32x3 image.
    "cifar10": {
        "cifar10_batch_0.png": DataFile("0614720d69293a033786d5fe2924c4e9a9b48874f19ca4627c4662a864ee9f2d", _CIFAR_PNG + "cifar10_batch_0.png"),
        "cifar10_batch_1.png": DataFile("2927e26ea68602e34a7424826b76b7336ce36b8f6bcc2e9fce0c05568ff6b4c1", _CIFAR_PNG + "cifar10_batch_1.png"),
        "cifar10_batch_2.png": DataFile("0b2759e307bb405bb1a6531f8a0f557eaec46d7546050612fdb836f0fa60eae0", _CIFAR_PNG + "cifar10_batch_2.png"),
        "cifar10_batch_3.png": DataFile("a4530ff15c83886058a97c352f53f38be07d191de8f410e998e91786b5900a26", _CIFAR_PNG + "cifar10_batch_3.png"),
        "cifar10_batch_4.png": DataFile("6368e6cf9ded682f69919f391510b73ac16058592013789501caea14cd6f15e2", _CIFAR_PNG + "cifar10_batch_4.png"),
        "cifar10_batch_5.png": DataFile("b8d480bb9e1fceddf958efbe7fa0613e42b36d77f2dd839040b6bb5c3fb4fd1c", _CIFAR_PNG + "cifar10_batch_5.png"),
        "cifar10_batch_6.png": DataFile("fcc06b274a20361573764fa885fa6e40cd50b2e6eb95656690d4f5125f295e14", _CIFAR_PNG + "cifar10_batch_6.png"),
        "cifar10_batch_7.png": DataFile("e7b8d6e916b2d5c9e6b9a3b6fc3161ccecb5142ce1d3d5a05e465f090daeb417", _CIFAR_PNG + "cifar10_batch_7.png"),
        "cifar10_batch_8.png": DataFile("4c582a8c638f2333a544526d3f24d0d85d108b3587d4b44cabc0cbc66dd269ac", _CIFAR_PNG + "cifar10_batch_8.png"),
        "cifar10_batch_9.png": DataFile("218b20c7526f88c0d79b485167147ebc3ace9ef3d3b8561358bd9f667164a0a8", _CIFAR_PNG + "cifar10_batch_9.png"),
        "cifar10_batch_10.png": DataFile("2b31fb8431f2b9a7870e5ff41cee102fdba5ccced08e651f7f6b456770014476", _CIFAR_PNG + "cifar10_batch_10.png"),
        "cifar10_batch_11.png": DataFile("140e4b9b97ecf75761490f3ee32d75bfc5e8bd9253afd4cbd5e4f60bbe9ff34e", _CIFAR_PNG + "cifar10_batch_11.png"),
        "cifar10_batch_12.png": DataFile("1a3e5536a73667845110320ba8ec58c566a0fe99953aa38e16dabb14f9af4e22", _CIFAR_PNG + "cifar10_batch_12.png"),
        "cifar10_batch_13.png": DataFile("29b3899e14ce5951fbb919261e6db35eaafbc583cff76ba6860fa8abd996f8bd", _CIFAR_PNG + "cifar10_batch_13.png"),
        "cifar10_batch_14.png": DataFile("55588e636c37daa059a0b578460f8cbdbd8c68155f998612f2fff9dd243c85f2", _CIFAR_PNG + "cifar10_batch_14.png"),
        "cifar10_batch_15.png": DataFile("6ba30e658a5b844d90831c9dd815fe3edee95ae0e819f7927cd8fe893e82c2b1", _CIFAR_PNG + "cifar10_batch_15.png"),
        "cifar10_batch_16.png": DataFile("0f7933aa56882614d7b43655b8cd44e521fd654edf3a0b50ac96b18b1a780bd9", _CIFAR_PNG + "cifar10_batch_16.png"),
        "cifar10_batch_17.png": DataFile("00cf8579a5cd7e100e1a864819bc89a8d9b6753e4c32f9b42a348a6b102bdde2", _CIFAR_PNG + "cifar10_batch_17.png"),
        "cifar10_batch_18.png": DataFile("601a291981f71e5107168ea50b5a7f236d299355c8adfb31bcd56b13632390bc", _CIFAR_PNG + "cifar10_batch_18.png"),
        "cifar10_batch_19.png": DataFile("4a6a93b0917bacee8b8b365cc3a0f1c39e21d7384a9419d5d1bedf2713863806", _CIFAR_PNG + "cifar10_batch_19.png"),
        "cifar10_batch_20.png": DataFile("92bc52eb05655923e8fb8129080d5e03df7a46d7da6204b50c9816e259a0676a", _CIFAR_PNG + "cifar10_batch_20.png"),
        "cifar10_batch_21.png": DataFile("a730969e1f84933e229f425188a0bfb5b3de18797a957796d3984557f9309d4f", _CIFAR_PNG + "cifar10_batch_21.png"),
        "cifar10_batch_22.png": DataFile("15ed3eda1cee18c1af480be95d689b51e3432618df778d090a3dff7d3e8d779a", _CIFAR_PNG + "cifar10_batch_22.png"),
        "cifar10_batch_23.png": DataFile("3ba69f0d363769250ef72c47cafa54f58e065278177357f901899c2fba1042af", _CIFAR_PNG + "cifar10_batch_23.png"),
        "cifar10_batch_24.png": DataFile("7bce4e5642aeafcef3081d7131bd75a7cd6472e9caec165aac08439395132560", _CIFAR_PNG + "cifar10_batch_24.png"),
        "cifar10_batch_25.png": DataFile("44fa9d4c84b3b7ead48fa92f3532eb6d498359d50cd000fc587d2e2592da83c1", _CIFAR_PNG + "cifar10_batch_25.png"),
        "cifar10_batch_26.png": DataFile("ef7ad1e7611a6d39a5acc84ae3b54bcb1f7f65ee832bb801b35bdf5b26cd9e42", _CIFAR_PNG + "cifar10_batch_26.png"),
        "cifar10_batch_27.png": DataFile("46bd31e937571fb914c005718d0ff3341fb68fd3972ac3416028d7e9c320a985", _CIFAR_PNG + "cifar10_batch_27.png"),
        "cifar10_batch_28.png": DataFile("6648cfec1dc6d779ed9ac63be4edc9fd4fb112a8d89ae68bcead8a610335a5b1", _CIFAR_PNG + "cifar10_batch_28.png"),
        "cifar10_batch_29.png": DataFile("e7c12162c9838553386d793c1cf586d28fa3401b6587e449396a1b37d9d9642f", _CIFAR_PNG + "cifar10_batch_29.png"),
        "cifar10_batch_30.png": DataFile("5c45e810054f8144c6e3ebe6411961f8fd29b43c63d8e562f2bd12a80a3c0795", _CIFAR_PNG + "cifar10_batch_30.png"),
        "cifar10_batch_31.png": DataFile("06b3b2a58823353396829cdb0b440531ad3cc471d60ba9a2462d558e0b3cb0ad", _CIFAR_PNG + "cifar10_batch_31.png"),
        "cifar10_batch_32.png": DataFile("c3a0fc60d267ada752d5662a3445704e73b28de23803e5f0e609bc19de9e05b8", _CIFAR_PNG + "cifar10_batch_32.png"),
        "cifar10_batch_33.png": DataFile("388087fc603a85244fbab20de596fcbf9d21fcbc76de8eac9b58bdfcb5848b98", _CIFAR_PNG + "cifar10_batch_33.png"),
        "cifar10_batch_34.png": DataFile("ef2f6a3992af2aa9640d168c740d6dd55eb7b00aabd5aa8362ebece726b77c8a", _CIFAR_PNG + "cifar10_batch_34.png"),
        "cifar10_batch_35.png": DataFile("030f3ff9b55a4036e00db83fb902cca4efb0047391c9edbbad0a1e611bbe6c6b", _CIFAR_PNG + "cifar10_batch_35.png"),
        "cifar10_batch_36.png": DataFile("efb2d7a90d2c69b5ac4f3ad570fc55bea1539125c664193b5ee2ea75f2bf0839", _CIFAR_PNG + "cifar10_batch_36.png"),
        "cifar10_batch_37.png": DataFile("d5dbb81db1ddd126b1181097a2836070db90555996978d8112f462f60ddbc86f", _CIFAR_PNG + "cifar10_batch_37.png"),
        "cifar10_batch_38.png": DataFile("1bdba9a63cff4f0bdd67e3baa6ffbf258c73162aafa2029b0105a68fe8d90723", _CIFAR_PNG + "cifar10_batch_38.png"),
        "cifar10_batch_39.png": DataFile("5c3f58e2e7069d5ec7594fd6daab326526c0721a5fe46fd758336d9eec93d57e", _CIFAR_PNG + "cifar10_batch_39.png"),
        "cifar10_batch_40.png": DataFile("2d8938dbe5bbfe219e36b9a9771faf67a439b277f612747c5d86e8e6c280d7b8", _CIFAR_PNG + "cifar10_batch_40.png"),
        "cifar10_batch_41.png": DataFile("fc5e0d70d3406436149c67fb65678da9ec51c44b6e01f44542b5307fd44f4ad2", _CIFAR_PNG + "cifar10_batch_41.png"),
        "cifar10_batch_42.png": DataFile("31bd0ad52693e936875038435aa98b39fc98631b0da32f8139970babdf1a6b7b", _CIFAR_PNG + "cifar10_batch_42.png"),
        "cifar10_batch_43.png": DataFile("8a31bce1aed0fbac719f82a7489671abce6625b5b78c24511aa8ed5a94ca4124", _CIFAR_PNG + "cifar10_batch_43.png"),
        "cifar10_batch_44.png": DataFile("70b6aece6cbe4c7d93f9b74ff5c1cdf4d56bd21ac579623481fa3f215b6775d0", _CIFAR_PNG + "cifar10_batch_44.png"),
        "cifar10_batch_45.png": DataFile("dee0cecbb1722ade96827dafa27c068ee14387ff5954707445b12d34acfd1207", _CIFAR_PNG + "cifar10_batch_45.png"),
        "cifar10_batch_46.png": DataFile("319e939ee664287c9e1a29261c182721ac302fe6c61743f9886cae58baccebe6", _CIFAR_PNG + "cifar10_batch_46.png"),
        "cifar10_batch_47.png": DataFile("eb05822e3f5332bafbf08604f28a36b32a59405a3117b1d0120c7a764d0b761d", _CIFAR_PNG + "cifar10_batch_47.png"),
        "cifar10_batch_48.png": DataFile("e03204977cbf03a94a618c4e4d4e820f207d2055d968d3a05f7abe550976c4b9", _CIFAR_PNG + "cifar10_batch_48.png"),
        "cifar10_batch_49.png": DataFile("b90a69f7b97caf83e62a50e4ac1329598e6bb0aae8c9d7df65a5fe540ddd11eb", _CIFAR_PNG + "cifar10_batch_49.png"),
        "cifar10_batch_50.png": DataFile("5cea9e8fb7933540a2236a4bb25c1ed3a8447f345c55ae659143a95a5d8dac5e", _CIFAR_PNG + "cifar10_batch_50.png"),
        "cifar10_labels.json": DataFile("50b3bed76cca2bb9d7e03b73a4ef0810b9f4e5169e9b883a70d2af5f7a5bc565", _CIFAR_PNG + "cifar10_labels.json"),
    },
    # Krizhevsky's binary version (no pickle): train.bin / test.bin, records of <coarse><fine><3072 bytes>.
    # Not on this project's machines; the MD5 is the one the CIFAR page publishes.
    "cifar100": {
        "cifar-100-binary.tar.gz": DataFile(None, "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                                            md5="03b5dce01913d631647c71ecec9e9cb8"),
    },
    # SVHN format 2 (cropped 32x32 digits, MATLAB files; label 10 means the digit 0). MD5s as published
    # with the files (and used by torchvision). Not on this project's machines.
    "svhn": {
        "train_32x32.mat": DataFile(None, "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
                                    md5="e26dedcc434d2e4c54c9b2d4a06d8373"),
        "test_32x32.mat": DataFile(None, "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
                                   md5="eb5a983be6a315427106f1b164d9cef3"),
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
    """Fetch `entry` to a temporary name beside `target`, verify it, then move it into place: a failed
    or corrupt download leaves nothing behind (not even a folder this call created)."""
    created = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-", suffix=f"-{target.name}")  # same extension
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=30) as response:
            shutil.copyfileobj(response, out)
        _check(entry, Path(tmp), shown_as=target)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if created and not any(target.parent.iterdir()):
            target.parent.rmdir()


_verified: set[Path] = set()


def _check(entry: DataFile, path: Path, shown_as: Path) -> None:
    try:
        kind, actual = entry.digest(path)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"dataset file {shown_as} is corrupt or truncated ({err}); replace it") from None
    if actual != entry.expected:
        raise DatasetError(f"dataset file {shown_as} fails its checksum: {kind} {actual[:16]}..., "
                           f"expected {entry.expected[:16]}... (corrupt or truncated?); replace it")


def verify(entry: DataFile, path: Path) -> None:
    """Raise DatasetError unless `path` has the registered checksum (decoded SHA-256, or MD5)."""
    if path not in _verified:
        _check(entry, path, shown_as=path)
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
            _verified.add(target)
            return target
    places = " or ".join(str(d / name) for d in search_dirs())
    source = f" (source: {entry.url})" if entry.url else ""
    raise DatasetMissing(f"dataset {name!r} is missing {filename}{source}; put it in {places}, "
                         f"or set REPRO_DATA_DIR to a folder holding {name}/{filename}")


def available(name: str) -> bool:
    """True when every file of `name` is present locally (no download is attempted)."""
    return all(any((d / name / f).exists() for d in search_dirs()) for f in REGISTRY[name])
