"""Artifacts handed from one run to another: a trained encoder, a behaviour policy, a dataset file.

An artifact is addressed by what made it: the paper, the artifact's name, the producing run's
resolved config and its seed. It lives under `$REPRO_CACHE_DIR/artifacts/` (default `.cache/`),
never in results/, as one payload file and a `meta.json` holding the payload's SHA-256. The checksum
is verified before anything is loaded; a missing or corrupt artifact is rebuilt by its producer.

Payloads are data, never code: a dict of tensors and numbers (`torch.load(weights_only=True)`), a
dict of numpy arrays (`.npz`, no pickle), or a file the producer wrote (e.g. a D4RL-layout HDF5).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from common.config import config_hash
from common.papers import ROOT


def cache_root() -> Path:
    return Path(os.environ.get("REPRO_CACHE_DIR", ROOT / ".cache"))


def address(paper: str, name: str, config: dict, seed: int) -> str:
    """The content address: a hash of who made it, from what config, with what seed."""
    key = json.dumps({"paper": paper, "name": name, "config": config_hash(config), "seed": seed}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def folder(paper: str, name: str, addr: str) -> Path:
    return cache_root() / "artifacts" / paper / f"{name}-{addr}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def store(paper: str, name: str, addr: str, value, meta: dict) -> dict:
    """Write `value` (a dict of tensors/numbers, a dict of numpy arrays, or a Path to a file) under
    its address, atomically; returns the meta written beside it."""
    final = folder(paper, name, addr)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{name}-"))
    try:
        if isinstance(value, (str, Path)):
            kind, payload = "file", staging / Path(value).name
            shutil.copyfile(value, payload)
        elif isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
            kind, payload = "arrays", staging / "payload.npz"
            np.savez(payload, **value)
        elif isinstance(value, dict):
            kind, payload = "state", staging / "payload.pt"
            torch.save(_to_cpu(value), payload)
        else:
            raise TypeError(f"artifact {name!r}: publish a dict of tensors/numbers, a dict of numpy arrays "
                            f"or a file path, not {type(value).__name__}")
        meta = {**meta, "name": name, "address": addr, "kind": kind, "payload": payload.name,
                "sha256": sha256(payload), "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return meta


def lookup(paper: str, name: str, addr: str) -> dict | None:
    """The meta of an intact artifact, or None when it is missing or its checksum does not match."""
    where = folder(paper, name, addr)
    try:
        meta = json.loads((where / "meta.json").read_text())
        intact = sha256(where / meta["payload"]) == meta["sha256"]
    except (OSError, ValueError, KeyError):
        return None
    return meta if intact else None


def load(paper: str, name: str, addr: str, device: torch.device | str = "cpu"):
    """The artifact's value after its checksum is verified: a dict (state or arrays) or a Path."""
    meta = lookup(paper, name, addr)
    if meta is None:
        raise FileNotFoundError(f"artifact {name}-{addr} of {paper} is missing or corrupt")
    payload = folder(paper, name, addr) / meta["payload"]
    if meta["kind"] == "file":
        return payload
    if meta["kind"] == "arrays":
        with np.load(payload, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    return torch.load(payload, weights_only=True, map_location=device)
