"""Committed results are append-only: every file ever added under results/ is still there, byte for
byte as the commit that added it wrote it. A superseded run is kept (and listed as such), never
rewritten or deleted. The list of withdrawn runs is append-only as a whole: an entry is added, never
edited or removed, so what it was when added is the start of what it is now."""
import subprocess

import pytest

from common.papers import ROOT
from common.records import WITHDRAWN

APPEND_ONLY = f"results/{WITHDRAWN}"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def history():
    try:
        _git("rev-parse", "--verify", "HEAD")
        if _git("rev-parse", "--is-shallow-repository").strip() == "true":
            pytest.skip("a shallow clone has no history of results/ to compare with")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no history of results/ to compare with")
    added: dict[str, str] = {}  # path -> the commit that first added it
    log = _git("log", "--reverse", "--diff-filter=A", "--name-only", "--format=commit %H", "--", "results")
    commit = None
    for line in log.splitlines():
        if line.startswith("commit "):
            commit = line.split()[1]
        elif line.strip() and line not in added:
            added[line] = commit
    return added


def test_every_committed_result_file_is_kept_unchanged_since_it_was_added(history):
    assert history, "results/ has no history"
    tracked = set(_git("ls-files", "results").splitlines())
    missing = sorted(set(history) - tracked)
    assert not missing, f"results deleted (a record is kept even when superseded): {missing[:5]}"
    blobs = {}  # the blob each file had when it was added, read commit by commit
    for commit in set(history.values()):
        for line in _git("ls-tree", "-r", commit, "--", "results").splitlines():
            meta, path = line.split("\t", 1)
            if history.get(path) == commit:
                blobs[path] = meta.split()[2]
    now = {}  # the blob each file has in the index today
    for line in _git("ls-files", "-s", "results").splitlines():
        meta, path = line.split("\t", 1)
        now[path] = meta.split()[1]
    changed = sorted(p for p, blob in blobs.items() if now.get(p) != blob and p != APPEND_ONLY)
    assert not changed, f"results rewritten after they were committed: {changed[:5]}"
    if APPEND_ONLY in blobs:
        first, today = (_git("cat-file", "-p", blob) for blob in (blobs[APPEND_ONLY], now[APPEND_ONLY]))
        assert today.startswith(first), f"{APPEND_ONLY}: an entry was edited or removed (entries are only appended)"
    dirty = _git("status", "--porcelain", "--", "results").splitlines()
    modified = [line[3:] for line in dirty if line[:2].strip() in {"M", "D"} and line[3:] != APPEND_ONLY]
    assert not modified, f"committed results modified or deleted in the working tree: {modified[:5]}"
