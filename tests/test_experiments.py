"""Experiments end to end on a toy paper: points, artifacts between runs, sweeps that order, skip and
resume, claims across points, the experiment table, superseded records."""
import json
import shutil
import textwrap

import pytest
import submitit

from common import artifacts
from common.checks import judge, load_expected
from common.cli import main
from common.experiments import tier_points
from common.records import judged_runs, scan
from common.runs import run_one
from common.sweep import plan, run_sweep

PAPER = "toyexp"


@pytest.fixture
def toyexp(monkeypatch, results_dir, tmp_path):
    """The toy experiment registered as an extra paper (so sweep subprocesses know it too), with its
    cache (artifacts, checkpoints, logs) under tmp_path."""
    monkeypatch.setenv("REPRO_EXTRA_PAPERS", f"{PAPER}=tests.toy_experiment")
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    from common.papers import get_paper
    return get_paper(PAPER).runner()


def _records(tier="smoke"):
    runs, errors = scan(PAPER, tier)
    assert not errors
    return runs


def test_plan_orders_producers_first_and_defaults_to_the_tiers_seeds(toyexp):
    jobs = plan([PAPER], "cpu", None, [], [])
    assert len(jobs) == 3 * 3  # pretrain + two probes, 3 seeds (the cpu tier's default)
    assert [j.point for j in jobs[:3]] == ["pretrain"] * 3 and {j.wave for j in jobs[3:]} == {1}
    only = plan([PAPER], "cpu", [5], [], [], points=["labels=40"])  # the producer comes along
    assert [(j.point, j.seed) for j in only] == [("pretrain", 5), ("labels=40", 5)]


def test_bad_point_and_bad_values_stop_before_anything_runs(toyexp, results_dir, capsys):
    assert main(["run", PAPER, "--tier", "smoke", "--point", "labels=99"]) == 2
    assert "valid points: pretrain, labels=10, labels=40" in capsys.readouterr().err
    assert main(["sweep", PAPER, "--tier", "smoke", "--set", "steps=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "steps must be >= 1" in err[0]
    assert not results_dir.exists()


def test_a_consumer_builds_a_missing_artifact_and_names_its_hash(toyexp):
    record = run_one(PAPER, "smoke", 0, point="labels=10", quiet=True)
    assert record["status"] == "ok" and record["labels"] == {"labels": "10"}
    consumed = record["artifacts"]["consumed"]["encoder"]
    producer, = [r for r in _records() if r.point == "pretrain"]  # built on demand, with its own record
    assert producer.record["artifacts"]["published"]["encoder"]["address"] == consumed["address"]
    assert consumed["sha256"] == producer.record["artifacts"]["published"]["encoder"]["sha256"]
    published = artifacts.load(PAPER, "encoder", consumed["address"])["w"]
    assert record["metrics"]["encoder_sum"] == pytest.approx(float(published.sum()))
    # a second consumer reuses the artifact: no second producer run
    run_one(PAPER, "smoke", 0, point="labels=40", quiet=True)
    assert len([r for r in _records() if r.point == "pretrain"]) == 1


def test_a_corrupt_artifact_is_rebuilt_not_loaded(toyexp):
    first = run_one(PAPER, "smoke", 0, point="labels=10", quiet=True)
    meta = first["artifacts"]["consumed"]["encoder"]
    payload = artifacts.folder(PAPER, "encoder", meta["address"]) / "payload.pt"
    payload.write_bytes(payload.read_bytes()[:-7] + b"corrupt")
    assert artifacts.lookup(PAPER, "encoder", meta["address"]) is None
    second = run_one(PAPER, "smoke", 0, point="labels=10", quiet=True)
    assert second["status"] == "ok" and second["metrics"] == first["metrics"]  # same seed, same encoder
    assert len([r for r in _records() if r.point == "pretrain"]) == 2


def test_sweep_runs_waves_skips_done_jobs_and_resumes_killed_ones(toyexp, monkeypatch):
    jobs = plan([PAPER], "smoke", [0, 1], [], [])
    monkeypatch.setenv("TOY_KILL_AT", "3")  # every probe dies at step 3, after checkpointing steps 0-2
    assert run_sweep(jobs, workers=2, threads=1) == {"skipped": 0, "done": 2, "elsewhere": 0, "failed": 4}
    assert {r.point for r in _records()} == {"pretrain"}  # killed runs leave no record
    monkeypatch.delenv("TOY_KILL_AT")
    assert run_sweep(jobs, workers=2, threads=1) == {"skipped": 2, "done": 4, "elsewhere": 0, "failed": 0}
    runs = _records()
    assert sorted((r.point, r.seed) for r in runs) == sorted((p, s) for p in ("pretrain", "labels=10", "labels=40")
                                                              for s in (0, 1))
    probe = next(r for r in runs if r.point == "labels=10" and r.seed == 0)
    assert [int(s) for s in probe.curves()["step"]] == [0, 1, 2, 3, 4]  # resumed at 3, curves kept
    assert run_sweep(jobs, workers=2, threads=1) == {"skipped": 6, "done": 0, "elsewhere": 0, "failed": 0}


def test_a_sweep_rebuilds_a_lost_artifact_once_and_only_when_a_job_needs_it(toyexp, tmp_path):
    run_sweep(plan([PAPER], "smoke", [0], [], [], points=["pretrain"]), workers=2, threads=1)
    shutil.rmtree(tmp_path / "cache" / "artifacts")  # a fresh clone: the record is there, its encoder is not
    jobs = plan([PAPER], "smoke", [0], [], [])
    # the producer runs again in its own wave, not inside each of the two probes that need it
    assert run_sweep(jobs, workers=2, threads=1) == {"skipped": 0, "done": 3, "elsewhere": 0, "failed": 0}
    pretrains = [r for r in _records() if r.point == "pretrain"]
    assert len(pretrains) == 2 and pretrains[0].record["metrics"] == pretrains[1].record["metrics"]  # same seed, same encoder
    shutil.rmtree(tmp_path / "cache" / "artifacts")
    assert run_sweep(jobs, workers=2, threads=1)["skipped"] == 3  # every consumer done: nothing to rebuild for


def test_slurm_path_runs_points_in_waves_through_submitit_local_executor(toyexp, tmp_path):
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(timeout_min=10)
    jobs = plan([PAPER], "smoke", [2], [], [], points=["labels=40"])
    assert run_sweep(jobs, launcher="slurm", executor=executor, threads=1) == {"skipped": 0, "done": 2, "elsewhere": 0, "failed": 0}
    assert sorted(r.point for r in _records()) == ["labels=40", "pretrain"]


CLAIMS = """
paper: toyexp
citation: "Toy"
claims:
  - id: more_labels_help
    description: "40 labels beat 10"
    kind: reproduction
    rule: all_seeds
    registered: before_results
    metrics: [acc]
    checks:
      smoke: "acc@labels=40 - acc@labels=10 > 0"
  - id: ambiguous
    description: "a bare metric in a tier with points"
    kind: sanity
    rule: all_seeds
    registered: before_results
    metrics: [acc]
    checks:
      smoke: "acc > 0"
"""


def test_claims_read_point_metrics_paired_by_seed(toyexp, tmp_path):
    for point in ("labels=10", "labels=40"):
        for seed in (0, 1):
            run_one(PAPER, "smoke", seed, point=point, quiet=True)
    path = tmp_path / "expected.yaml"
    path.write_text(textwrap.dedent(CLAIMS))
    claims = load_expected(path).claims
    runs, stale = judged_runs(_records(), toyexp, "smoke")
    assert not stale and len(runs) == 6
    points = tier_points(toyexp, "smoke")
    verdict = judge(claims[0], "smoke", runs, PAPER, points)
    assert verdict.status == "reproduced" and verdict.summary.n == 2
    by = {(r.point, r.seed): r.record["metrics"]["acc"] for r in runs if r.point != "pretrain"}
    assert verdict.summary.value == pytest.approx(sum(by["labels=40", s] - by["labels=10", s] for s in (0, 1)) / 2)
    with pytest.raises(Exception, match="needs its point"):
        judge(claims[1], "smoke", runs, PAPER, points)
    # a point missing a seed the other has: not judged, and the note says why
    lone = [r for r in runs if not (r.point == "labels=40" and r.seed == 1)]
    assert "needs the same seeds" in judge(claims[0], "smoke", lone, PAPER, points).note


def test_a_record_from_an_older_config_is_superseded(toyexp):
    from common.records import content_sha256
    record = run_one(PAPER, "smoke", 0, point="pretrain", quiet=True)
    path = next(p for p in (scan(PAPER, "smoke")[0]) if p.record["run_id"] == record["run_id"]).path
    older = json.loads(path.read_text())
    older["config"]["dim"] = 4
    older["sha256"] = content_sha256(older)  # as a run of an older config would have written it
    path.write_text(json.dumps(older))
    runs, stale = judged_runs(_records(), toyexp, "smoke")
    assert not runs and [r.record["run_id"] for r in stale] == [record["run_id"]]


def test_the_report_shows_an_experiment_as_a_table(toyexp):
    from common.papers import get_paper
    from common.report import _experiment_table
    for point in ("labels=10", "labels=40"):
        run_one(PAPER, "smoke", 0, point=point, quiet=True)
    table = _experiment_table(get_paper(PAPER), "smoke")
    assert list(table["labels"].fillna("—")) == ["—", "10", "40"]
    assert table.loc[table["labels"] == "40", "acc"].item().startswith("0.9")
