"""Every implemented paper: its smoke tier end to end, a few steps of its paper tier, its files."""
import json

import pytest

from common.checks import expected_path, load_expected
from common.cli import main
from common.papers import ROOT, TIER_NAMES, UsageError, get_paper
from common.records import judged_runs, scan
from common.records import results_dir as current_results_dir
from common.config import flat_keys, lookup, resolve
from tests.conftest import assert_usage_error, implemented_names, require_datasets

PAPERS = implemented_names()


def _only_record(folder):
    records = sorted(folder.glob("*.json"))
    assert len(records) == 1, records
    return json.loads(records[0].read_text())


@pytest.mark.parametrize("name", PAPERS)
def test_smoke_is_deterministic_and_meets_its_smoke_expectations(name, results_dir, tmp_path, monkeypatch):
    runner = get_paper(name).runner()
    require_datasets(*runner.DATASETS)
    metrics = []
    for attempt in range(2):
        monkeypatch.setenv("REPRO_RESULTS_DIR", str(tmp_path / f"attempt{attempt}"))
        assert main(["run", name, "--tier", "smoke", "--seed", "0", "--quiet"]) == 0
        record = _only_record(tmp_path / f"attempt{attempt}" / name / "smoke")
        assert record["status"] == "ok", record["reason"]
        metrics.append(record["metrics"])
    assert metrics[0] == metrics[1]  # bit-identical on CPU
    assert main(["check", name, "--tier", "smoke"]) == 0


@pytest.mark.parametrize("name", PAPERS)
def test_paper_tier_runs_for_a_few_steps(name, results_dir):
    runner = get_paper(name).runner()
    require_datasets(*runner.DATASETS)
    sets = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in runner.FEW_STEPS.items()]
    argv = ["run", name, "--tier", "paper", "--seed", "0", "--quiet"]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0
    record = _only_record(results_dir / name / "paper")
    assert record["status"] == "ok", record["reason"]
    assert record["config"] == resolve(runner, "paper", runner.FEW_STEPS)


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
