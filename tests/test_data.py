import gzip
import hashlib
import io

import pytest

from common import data
from common.data import DataFile, DatasetError, DatasetMissing, dataset_file

_real_download = data._download

CONTENT = b"IDX-like payload " * 1000


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A registry with one gzip and one plain file, looked up under tmp_path, never downloaded."""
    digest = hashlib.sha256(CONTENT).hexdigest()
    monkeypatch.setitem(data.REGISTRY, "toyset", {
        "images.gz": DataFile(digest, "https://example.invalid/images.gz"),
        "raw.bin": DataFile(digest, None)})
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "shared"))
    monkeypatch.setattr(data, "ROOT", tmp_path / "project")
    monkeypatch.setattr(data, "_verified", set())

    def offline(entry, target):
        raise OSError("no network")
    monkeypatch.setattr(data, "_download", offline)
    return tmp_path


def _put(root, folder, name, payload):
    path = root / folder / "toyset" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def test_checksums_are_of_decoded_content(registry):
    path = _put(registry, "shared", "images.gz", gzip.compress(CONTENT, compresslevel=1))
    assert dataset_file("toyset", "images.gz") == path
    recompressed = gzip.compress(CONTENT, compresslevel=9)  # other bytes, same content: still valid
    assert recompressed != path.read_bytes()
    path.write_bytes(recompressed)
    data._verified.clear()
    assert dataset_file("toyset", "images.gz") == path


def test_repro_data_dir_comes_before_local_data(registry):
    _put(registry, "project/data", "raw.bin", CONTENT)
    shared = _put(registry, "shared", "raw.bin", CONTENT)
    assert dataset_file("toyset", "raw.bin") == shared


def test_local_data_is_used_when_repro_data_dir_lacks_it(registry):
    local = _put(registry, "project/data", "raw.bin", CONTENT)
    assert dataset_file("toyset", "raw.bin") == local


def test_a_corrupt_file_names_the_file_and_the_mismatch(registry):
    path = _put(registry, "shared", "raw.bin", CONTENT[:-1] + b"X")
    with pytest.raises(DatasetError) as err:
        dataset_file("toyset", "raw.bin")
    assert str(path) in str(err.value) and "fails its checksum" in str(err.value)


def test_a_truncated_gzip_is_reported_as_corrupt(registry):
    path = _put(registry, "shared", "images.gz", gzip.compress(CONTENT)[:-8])
    with pytest.raises(DatasetError, match="corrupt or truncated") as err:
        dataset_file("toyset", "images.gz")
    assert str(path) in str(err.value)


def test_a_flipped_byte_inside_the_compressed_stream_is_reported_as_corrupt(registry):
    packed = bytearray(gzip.compress(CONTENT))
    packed[len(packed) // 2] ^= 0xFF  # breaks the deflate stream (zlib.error), not the gzip header
    path = _put(registry, "shared", "images.gz", bytes(packed))
    with pytest.raises(DatasetError, match="corrupt or truncated") as err:
        dataset_file("toyset", "images.gz")
    assert str(path) in str(err.value)


@pytest.mark.parametrize("payload, error", [(b"not what was registered", "fails its checksum"),
                                            (None, "dataset 'toyset' is missing images.gz")])
def test_a_bad_or_failed_download_leaves_nothing_behind(registry, monkeypatch, payload, error):
    """Downloaded to a temporary name and verified before it is moved into place: a download that
    fails its checksum, or never arrives, leaves neither a file nor an empty dataset folder."""
    def urlopen(url, timeout):
        if payload is None:
            raise OSError("no network")
        return io.BytesIO(gzip.compress(payload))
    monkeypatch.setattr(data, "_download", _real_download)
    monkeypatch.setattr(data.urllib.request, "urlopen", urlopen)
    with pytest.raises(DatasetError, match=error):
        dataset_file("toyset", "images.gz")
    assert not (registry / "project" / "data" / "toyset").exists()


def test_a_good_download_is_verified_and_moved_into_place(registry, monkeypatch):
    monkeypatch.setattr(data, "_download", _real_download)
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(gzip.compress(CONTENT)))
    path = dataset_file("toyset", "images.gz")
    assert path == registry / "project" / "data" / "toyset" / "images.gz"
    assert [p.name for p in path.parent.iterdir()] == ["images.gz"]


def test_missing_offline_names_the_file_source_and_places(registry):
    with pytest.raises(DatasetMissing) as err:
        dataset_file("toyset", "images.gz")
    message = str(err.value)
    assert "images.gz" in message and "https://example.invalid/images.gz" in message
    assert str(registry / "shared" / "toyset") in message and "REPRO_DATA_DIR" in message


def test_unknown_names_list_the_valid_ones(registry):
    with pytest.raises(DatasetError, match="known datasets: .*cbcl-faces"):
        dataset_file("nope", "x")
    with pytest.raises(DatasetError, match="its files: images.gz, raw.bin"):
        dataset_file("toyset", "x")


def test_a_bad_dataset_stops_a_run_before_anything_is_written(registry, results_dir, monkeypatch, capsys):
    from common.cli import main
    from common.papers import PAPERS, Paper
    from tests import toy_runner
    _put(registry, "shared", "raw.bin", b"garbage")
    monkeypatch.setitem(PAPERS, "toy", Paper("toy", "Toy", module="tests.toy_runner"))
    monkeypatch.setattr(toy_runner, "DATASETS", ("toyset",))
    monkeypatch.setitem(data.REGISTRY, "toyset", {"raw.bin": data.REGISTRY["toyset"]["raw.bin"]})
    assert main(["run", "toy", "--seed", "0"]) == 2
    err = capsys.readouterr().err
    assert "raw.bin fails its checksum" in err and len(err.strip().splitlines()) == 1
    assert not results_dir.exists()


def test_a_file_registered_by_md5_is_checked_as_distributed(registry, monkeypatch):
    monkeypatch.setitem(data.REGISTRY, "toyset", {"blob.tar.gz": DataFile(None, None, md5=hashlib.md5(CONTENT).hexdigest())})
    path = _put(registry, "shared", "blob.tar.gz", CONTENT)  # hashed as stored, not gunzipped
    assert dataset_file("toyset", "blob.tar.gz") == path
    path.write_bytes(CONTENT + b"!")
    data._verified.clear()
    with pytest.raises(DatasetError, match="fails its checksum: md5"):
        dataset_file("toyset", "blob.tar.gz")


def test_a_data_file_takes_exactly_one_checksum():
    with pytest.raises(ValueError, match="exactly one checksum"):
        DataFile(None, None)
    with pytest.raises(ValueError, match="exactly one checksum"):
        DataFile("a" * 64, None, md5="b" * 32)
