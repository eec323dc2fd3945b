"""Every implemented paper: its smoke tier end to end, a few steps of its paper tier, its files."""
import json

import pytest

from common.checks import expected_path, load_expected
from common.cli import main
from common.papers import ROOT, TIER_NAMES, UsageError, get_paper
from common.records import judged_runs, scan
from common.records import results_dir as current_results_dir
from common.config import flat_keys, lookup, resolve
from common.experiments import tier_points
from tests.conftest import assert_usage_error, covering_points, implemented_names, require_datasets

PAPERS = implemented_names()


def _records(folder) -> dict:
    """The records in `folder`, by point (None for a tier without points)."""
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    by_point = {r["point"]: r for r in records}
    assert len(by_point) == len(records), "two records of one point"
    return by_point


@pytest.mark.parametrize("name", PAPERS)
def test_smoke_is_deterministic_and_meets_its_smoke_expectations(name, results_dir, tmp_path, monkeypatch):
    runner = get_paper(name).runner()
    require_datasets(*runner.DATASETS)
    metrics = []
    for attempt in range(2):
        monkeypatch.setenv("REPRO_RESULTS_DIR", str(tmp_path / f"attempt{attempt}"))
        monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / f"cache{attempt}"))  # artifacts made afresh too
        assert main(["run", name, "--tier", "smoke", "--seed", "0", "--quiet"]) == 0
        records = _records(tmp_path / f"attempt{attempt}" / name / "smoke")
        assert len(records) == len(tier_points(runner, "smoke")) or list(records) == [None]
        for record in records.values():
            assert record["status"] == "ok", (record["point"], record["reason"])
        metrics.append({point: record["metrics"] for point, record in records.items()})
    assert metrics[0] == metrics[1]  # bit-identical on CPU
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(tmp_path / "attempt0"))
    assert main(["check", name, "--tier", "smoke"]) == 0


@pytest.mark.parametrize("name", PAPERS)
def test_paper_tier_runs_for_a_few_steps(name, results_dir, tmp_path, monkeypatch):
    """The paper tier, cut to FEW_STEPS; with points, enough of them that every label value runs."""
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    runner = get_paper(name).runner()
    require_datasets(*runner.DATASETS)
    sets = [f"{k}={v}" for k, v in flat_items(runner.FEW_STEPS)]
    chosen = covering_points(runner, "paper")
    for point in chosen:
        argv = ["run", name, "--tier", "paper", "--seed", "0", "--quiet"] + (["--point", point.name] if point else [])
        for item in sets:
            argv += ["--set", item]
        assert main(argv) == 0
    records = _records(results_dir / name / "paper")
    for point in chosen:
        record = records[point and point.name]
        assert record["status"] == "ok", record["reason"]
        assert record["config"] == resolve(runner, "paper", runner.FEW_STEPS, point)


def flat_items(settings: dict, prefix: str = ""):
    """FEW_STEPS as `--set` items: nested sections as dotted keys, lists comma-joined."""
    for key, value in settings.items():
        if isinstance(value, dict):
            yield from flat_items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", ",".join(map(str, value)) if isinstance(value, list) else value


@pytest.mark.parametrize("name", PAPERS)
def test_paper_folder_is_complete(name):
    paper = get_paper(name)
    runner = paper.runner()
    assert set(runner.TIERS) == set(TIER_NAMES) and set(runner.SEEDS) == set(TIER_NAMES)
    for tier, preset in runner.TIERS.items():
        assert set(preset) <= set(runner.CONFIG), f"tier {tier} sets keys CONFIG lacks"
    assert set(runner.FEW_STEPS) <= set(runner.CONFIG)
    expected = load_expected(expected_path(paper))
    assert expected.paper == name and expected.claims
    assert all("cpu" in c.checks or c.reason for c in expected.claims), \
        "every claim is tested at the cpu tier, or gives the reason it cannot be"
    readme = (paper.folder / "README.md").read_text().lower()
    for section in ("## claims", "## tiers", "## deviations"):
        assert section in readme, f"README lacks a '{section}' section"


def test_committed_results_pass_check_and_superseded_records_are_listed_not_judged(monkeypatch, capsys):
    """Every claim's status matches expected.yaml on the committed records. Records of an earlier config
    (a superseded sweep, kept because every record a sweep produces is kept) are named as superseded."""
    monkeypatch.delenv("REPRO_RESULTS_DIR", raising=False)
    assert current_results_dir() == ROOT / "results"
    assert main(["check", "--tier", "cpu"]) == 0
    err = capsys.readouterr().err
    for name in PAPERS:
        runs, errors = scan(name, "cpu")
        assert not errors
        for run in judged_runs(runs, get_paper(name).runner(), "cpu")[1]:
            assert run.path.name in err


@pytest.mark.parametrize("name", PAPERS)
def test_a_wrongly_typed_value_is_a_usage_error(name, tmp_path, monkeypatch, capsys):
    """For every paper: a number key given a word, and an unknown key, exit 2 with one line."""
    runner = get_paper(name).runner()
    numeric = next(k for k in flat_keys(runner.CONFIG)
                   if isinstance(lookup(runner.CONFIG, k), (int, float)) and not isinstance(lookup(runner.CONFIG, k), bool))
    line = assert_usage_error(name, f"{numeric}=abc", tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert numeric in line
    line = assert_usage_error(name, "no_such_key=1", tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert "valid keys" in line


@pytest.mark.parametrize("name", PAPERS)
def test_every_number_a_user_can_set_is_checked(name):
    """validate() catches NaN in every numeric key of every paper: NaN compares false with any bound,
    so a key validate() never looks at (or compares by hand) lets it through to training."""
    runner = get_paper(name).runner()
    numeric = [k for k in flat_keys(runner.CONFIG)
               if isinstance(lookup(runner.CONFIG, k), (int, float)) and not isinstance(lookup(runner.CONFIG, k), bool)]
    unchecked = []
    for key in numeric:
        try:
            runner.validate(resolve(runner, "smoke", {key: float("nan")}))
        except UsageError:
            continue
        unchecked.append(key)
    assert not unchecked, f"{name}: validate() accepts NaN for {unchecked}"
