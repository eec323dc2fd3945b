import json
import os
from pathlib import Path

import pytest
import torch

from common.data import available
from common.papers import implemented_papers

# The tests' models are small: one thread is as fast, and never oversubscribes a machine shared with training.
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """The tests' checkpoints, artifacts, locks and logs go to a temporary folder, never into the
    project's .cache (where a sweep beside the tests keeps its own). A test may point at its own."""
    folder = tmp_path_factory.mktemp("cache")
    os.environ["REPRO_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture
def results_dir(tmp_path, monkeypatch) -> Path:
    """Runs in a test write here, never into the committed results/."""
    folder = tmp_path / "results"
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(folder))
    return folder


MISSING_DATA = "not found; set REPRO_DATA_DIR (see README, Data)"


def require_datasets(*names: str) -> None:
    """Skip (with the reason) when a dataset is missing; under CI with shared data, fail instead."""
    missing = [n for n in names if not available(n)]
    if not missing:
        return
    message = f"dataset(s) {', '.join(missing)} {MISSING_DATA}"
    if os.environ.get("REPRO_REQUIRE_DATA"):
        pytest.fail(message)
    pytest.skip(message)


def covering_points(runner, tier: str) -> list:
    """A few points of a tier with points, in order, such that every value of every label appears in
    one of them (every algorithm, every dataset, every environment); [None] for a tier without points.
    Their producers are built by the harness when a chosen point needs them."""
    from common.experiments import tier_points
    points = tier_points(runner, tier)
    if not points:
        return [None]
    seen, chosen = set(), []
    for point in points:
        pairs = set(point.labels.items())
        if not pairs <= seen:
            chosen.append(point)
            seen |= pairs
    return chosen


def implemented_names() -> list[str]:
    return [p.name for p in implemented_papers()]


def write_record(results: Path, paper: str, tier: str, seed: int, metrics: dict, status: str = "ok",
                 overrides: dict | None = None, started_at: str = "2026-01-01T00:00:00+00:00",
                 reason: str | None = None, config: dict | None = None, point=None, tags=()) -> Path:
    """A syntactically complete run record, for tests of the checker and the report. Its config is by
    default the toy runner's at `tier` (and `point`, an experiments.Point), so it is judged as current."""
    from common.config import config_hash, resolve
    from common.papers import _fill_defaults
    from tests import toy_runner
    if config is None:
        config = resolve(_fill_defaults(toy_runner), tier, overrides or {}, point)
    record = {"run_id": f"t-s{seed}-{started_at[:19]}{'-' + point.name if point else ''}", "paper": paper,
              "tier": tier, "seed": seed, "point": point.name if point else None,
              "labels": dict(point.labels) if point else {},
              "config": config, "overrides": overrides or {}, "config_hash": config_hash(config), "tags": list(tags),
              "metrics": metrics,
              "status": status, "reason": reason, "git": {"commit": "0" * 40, "dirty": False},
              "started_at": started_at, "wall_time_s": 1.0, "hardware": {"device": "cpu", "cpu": "test"},
              "versions": {"python": "3"}, "throughput": {}}
    path = results / paper / tier / f"{record['run_id'].replace(':', '').replace(',', '_')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def assert_usage_error(paper: str, *sets: str, tmp_path: Path, monkeypatch, capsys) -> str:
    """`repro run <paper> --tier smoke --set ...` must exit 2 with one line on stderr, no traceback,
    and write nothing: no record under results/, no checkpoint. Returns the line."""
    from common.cli import main
    results = tmp_path / "usage-results"
    checkpoints = tmp_path / "usage-checkpoints"
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(results))
    monkeypatch.setattr("common.runs.checkpoint_dir", lambda *a: checkpoints / "-".join(map(str, a)))
    argv = ["run", paper, "--tier", "smoke", "--seed", "0", "--quiet"]
    for item in sets:
        argv += ["--set", item]
    capsys.readouterr()
    code = main(argv)
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert code == 2, f"exit code {code}, stderr: {out.err[-2000:]}"
    assert len(lines) == 1 and "Traceback" not in out.err, out.err[-2000:]
    assert not results.exists() or not any(results.rglob("*")), "a record was written"
    assert not checkpoints.exists(), "a checkpoint was written"
    return lines[0]


def pytest_terminal_summary(terminalreporter):
    """One line at the end: how many tests were skipped for missing datasets, which, and how to get them."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if MISSING_DATA in str(r.longrepr)]
    if not skipped:
        return
    names = sorted({name.strip() for r in skipped
                    for name in str(r.longrepr).split("dataset(s) ")[1].split(f" {MISSING_DATA}")[0].split(",")})
    terminalreporter.write_line(
        f"{len(skipped)} test(s) skipped for missing data ({', '.join(names)}): export REPRO_DATA_DIR=<folder holding "
        "them> (this project: ../shared/data), or let the data layer download them where it can (README, Data)")
