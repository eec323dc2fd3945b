"""Run records on disk: `results/<paper>/<tier>/<run_id>.json`, with sidecars

    <run_id>.curves.csv         learning curves (long format: step, label columns, numbers)
    <run_id>.<name>.npz         arrays a paper keeps for the report's pictures

Every file is written to a temporary name and renamed into place, and the JSON goes last, so a
reader never sees a half-written run and two concurrent runs never share a name.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.papers import ROOT

RECORD_KEYS = ("run_id", "paper", "tier", "seed", "config", "overrides", "config_hash", "metrics",
               "status", "reason", "git", "started_at", "wall_time_s", "hardware", "versions",
               "throughput")  # records from before experiments lack "point", "labels", "artifacts": None/{}
STATUSES = ("ok", "diverged", "failed")


def results_dir() -> Path:
    return Path(os.environ.get("REPRO_RESULTS_DIR", ROOT / "results"))


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _finite_or_null(value):
    """The record with every non-finite float outside the metrics (a throughput, a timing) as null:
    JSON has no NaN, and the metrics are finite by then (a non-finite one makes the run diverged)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def content_sha256(record: dict) -> str:
    """The SHA-256 of a record's canonical JSON (sorted keys, no spaces), its own `sha256` left out."""
    body = {k: v for k, v in record.items() if k != "sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def write_run(record: dict, curves: list[dict], arrays: dict[str, dict[str, np.ndarray]]) -> Path:
    """Write the run's sidecars, then its record, sealed with `sha256` (added to `record` in place)."""
    record.update(_finite_or_null({k: v for k, v in record.items() if k != "metrics"}))
    as_read = json.loads(json.dumps(record, allow_nan=False))  # hash exactly what a reader will load
    record.clear()
    record.update(as_read)
    record["sha256"] = content_sha256(record)
    folder = results_dir() / record["paper"] / record["tier"]
    stem = folder / record["run_id"]
    if curves:
        csv = pd.DataFrame(curves).to_csv(index=False).encode()
        _atomic_write(stem.with_name(stem.name + ".curves.csv"), lambda f: f.write(csv))
    for name, named_arrays in arrays.items():
        _atomic_write(stem.with_name(f"{stem.name}.{name}.npz"), lambda f: np.savez_compressed(f, **named_arrays))
    text = json.dumps(record, indent=2, sort_keys=False, allow_nan=False).encode() + b"\n"
    path = stem.with_name(stem.name + ".json")
    _atomic_write(path, lambda f: f.write(text))
    return path


class MalformedRecord(ValueError):
    pass


@dataclass
class LoadedRun:
    """One run record as read back, for the checker and the report."""

    path: Path
    record: dict

    @property
    def seed(self) -> int:
        return self.record["seed"]

    @property
    def config(self) -> dict:
        """The run's config read under its paper's current CONFIG types (a list key stored by an
        older run as "3,10" reads as [3, 10]); figures use this, never their own parsing."""
        from common.config import read_config
        from common.papers import get_paper
        return read_config(get_paper(self.record["paper"]).runner(), self.record["config"])

    @property
    def point(self) -> str | None:
        return self.record.get("point")

    @property
    def labels(self) -> dict:
        return self.record.get("labels") or {}

    @property
    def pilot(self) -> bool:
        """A pilot run (it shaped the tier): listed by the report, never judged."""
        return "pilot" in (self.record.get("tags") or [])

    def curves(self) -> pd.DataFrame:
        """The learning curves with a `seed` column added; empty if the run logged none."""
        csv = self.path.with_name(self.path.name.removesuffix(".json") + ".curves.csv")
        if not csv.exists():
            return pd.DataFrame()
        frame = pd.read_csv(csv).assign(seed=self.seed)
        return frame.assign(point=self.point, **self.labels) if self.point else frame

    def arrays(self, name: str) -> dict[str, np.ndarray] | None:
        npz = self.path.with_name(self.path.name.removesuffix(".json") + f".{name}.npz")
        if not npz.exists():
            return None
        with np.load(npz, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


def first_arrays(runs: list[LoadedRun], name: str) -> tuple[int, dict[str, np.ndarray]] | None:
    """(seed, arrays) of the lowest-seed run that saved arrays `name`, for a figure of one run."""
    for run in sorted(runs, key=lambda r: r.seed):
        arrays = run.arrays(name)
        if arrays is not None:
            return run.seed, arrays
    return None


def all_curves(runs: list[LoadedRun]) -> pd.DataFrame:
    """Every run's curves in one frame (with its `seed` column); empty when none logged any."""
    frames = [f for f in (r.curves() for r in runs) if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_run(path: Path) -> LoadedRun:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MalformedRecord(f"{path}: does not parse as JSON ({err})") from None
    if not isinstance(record, dict):
        raise MalformedRecord(f"{path}: is not a JSON object")
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise MalformedRecord(f"{path}: missing fields {', '.join(missing)}")
    if record["status"] not in STATUSES:
        raise MalformedRecord(f"{path}: status {record['status']!r} is not one of {', '.join(STATUSES)}")
    for key, kinds, what in _FIELD_TYPES:
        value = record[key]
        if not isinstance(value, kinds) or isinstance(value, bool) or (key == "seed" and value < 0):
            raise MalformedRecord(f"{path}: field {key} must be {what}, got {value!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in record["metrics"].values()):
        raise MalformedRecord(f"{path}: metrics must map names to finite numbers")
    if "sha256" in record and record["sha256"] != content_sha256(record):
        raise MalformedRecord(f"{path}: edited after it was written (its content no longer matches its sha256); "
                              "a record is never rewritten: restore it (git checkout) and add a new run instead")
    return LoadedRun(path, record)


_FIELD_TYPES = (("seed", int, "an integer >= 0"), ("paper", str, "a string"), ("tier", str, "a string"),
                ("run_id", str, "a string"), ("started_at", str, "an ISO time string"),
                ("wall_time_s", (int, float), "a number"), ("config", dict, "an object"),
                ("overrides", dict, "an object"), ("metrics", dict, "an object"), ("git", dict, "an object"))


def scan(paper: str, tier: str) -> tuple[list[LoadedRun], list[str]]:
    """All records of one paper and tier, and one error line per file that does not load."""
    folder = results_dir() / paper / tier
    runs, errors = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            runs.append(load_run(path))
        except MalformedRecord as err:
            errors.append(str(err))
    return runs, errors


WITHDRAWN = "withdrawn.yaml"


def withdrawn() -> dict[str, str]:
    """Records withdrawn from judging, by file name, with why: `results/withdrawn.yaml` lists them when a
    defect in the code that made them is found after they were committed (e.g. corrupted generated data).
    Each entry: `{paper, tier, reason, runs: [file names]}`. The records stay, unedited, and are listed."""
    import yaml
    path = results_dir() / WITHDRAWN
    if not path.exists():
        return {}
    entries = yaml.safe_load(path.read_text()) or []
    return {name: f"withdrawn: {entry['reason']}" for entry in entries for name in entry["runs"]}


def judged_runs(runs: list[LoadedRun], runner, tier: str) -> tuple[list[LoadedRun], list[LoadedRun]]:
    """(judged, superseded). Judged: the runs a claim is judged on, the latest per (point, seed) of the
    tier's own configurations (no --set overrides, not a pilot) whose config is the tier's, or its
    point's, as the runner resolves it today. Superseded: the other runs without overrides, kept and
    listed, never judged: their config is no longer that one (`superseded_why`), or a later run of the
    same seed and config replaced them."""
    from common.config import resolve, same_config
    from common.experiments import tier_points
    points = {p.name: p for p in tier_points(runner, tier)}
    current = {name: resolve(runner, tier, {}, point) for name, point in points.items()} or \
        {None: resolve(runner, tier, {})}
    latest: dict[tuple, LoadedRun] = {}
    superseded = []
    withdrawn_runs = withdrawn()
    for run in sorted(runs, key=lambda r: r.record["started_at"]):
        if run.record["overrides"] or run.pilot:
            continue
        if run.path.name in withdrawn_runs:
            superseded.append(run)
            continue
        if run.point not in current or not same_config(runner, run.record["config"], current[run.point]):
            superseded.append(run)
            continue
        key = (run.point or "", run.seed)
        if key in latest:
            superseded.append(latest[key])
        latest[key] = run
    return [latest[k] for k in sorted(latest)], superseded


def superseded_why(run: LoadedRun, judged: list[LoadedRun], runner) -> str:
    """Why a superseded run is not judged: withdrawn (results/withdrawn.yaml), a later run of its seed, or a
    config the tier no longer has. Configs are compared as the runner's CONFIG reads them today (a list
    an older record stored as "3,10" is [3, 10])."""
    from common.config import _as_json, read_config
    gone = withdrawn()
    if run.path.name in gone:
        return gone[run.path.name]
    mine = _as_json(read_config(runner, run.record["config"]))
    later = next((r for r in judged if r.seed == run.seed and r.point == run.point
                  and _as_json(read_config(runner, r.record["config"])) == mine), None)
    return f"replaced by {later.path.name}, a later run of the same seed and config" if later else \
        "its config is no longer the tier's"
