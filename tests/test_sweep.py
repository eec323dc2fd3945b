import json
import os
import socket
import subprocess
import sys

import pytest
import submitit

from common.papers import PAPERS, Paper, UsageError
from common.records import scan
from common.papers import ROOT
from common.sweep import Job, already_done, claim, job_name, plan, release, run_sweep
from tests.conftest import implemented_names, require_datasets, write_record


@pytest.fixture
def toy(monkeypatch, results_dir):
    monkeypatch.setitem(PAPERS, "toy", Paper("toy", "Toy 2026", module="tests.toy_runner"))
    return results_dir


def test_plan_fans_out_papers_seeds_and_grid(toy):
    jobs = plan(["toy"], "cpu", [0, 1], ["label=x"], ["lr=0.1,0.2", "steps=3,4"])
    assert len(jobs) == 2 * 2 * 2
    assert Job("toy", "cpu", 1, (("label", "x"), ("lr", 0.2), ("steps", 3))) in jobs


def test_plan_rejects_bad_input(toy):
    with pytest.raises(UsageError, match="valid keys"):
        plan(["toy"], "cpu", [0], [], ["nope=1,2"])
    with pytest.raises(UsageError, match="expected key=v1,v2"):
        plan(["toy"], "cpu", [0], [], ["lr"])
    with pytest.raises(UsageError, match="valid tiers"):
        plan(["toy"], "gpu", [0], [], [])


def test_a_run_with_the_same_config_and_seed_is_done(toy):
    job = Job("toy", "smoke", 0, ())
    assert not already_done(job)
    write_record(toy, "toy", "smoke", 0, {"loss": 1.0})
    assert already_done(job)
    assert not already_done(Job("toy", "smoke", 1, ()))
    assert not already_done(Job("toy", "smoke", 0, (("lr", 0.1),)))


def test_a_withdrawn_record_does_not_count_as_done(toy):
    """A record listed in results/withdrawn.yaml (made by code later found defective) is kept but must run again."""
    job = Job("toy", "smoke", 0, ())
    path = write_record(toy, "toy", "smoke", 0, {"loss": 1.0})
    assert already_done(job)
    (toy / "withdrawn.yaml").write_text(f"- paper: toy\n  tier: smoke\n  reason: a defect\n  runs: [{path.name}]\n")
    assert not already_done(job)


def _real_paper():
    names = implemented_names()
    if not names:
        pytest.skip("no paper is implemented yet")
    name = "nmf" if "nmf" in names else names[0]
    from common.papers import get_paper
    require_datasets(*get_paper(name).runner().DATASETS)
    return name


def test_local_sweep_runs_side_by_side_then_resumes(results_dir):
    name = _real_paper()
    jobs = plan([name], "smoke", [0, 1], [], [])
    assert run_sweep(jobs, workers=2, threads=1) == {"skipped": 0, "done": 2, "elsewhere": 0, "failed": 0}
    runs, errors = scan(name, "smoke")
    assert not errors and sorted(r.seed for r in runs) == [0, 1]
    assert all(r.record["status"] == "ok" and r.record["hardware"]["torch_threads"] == 1 for r in runs)
    assert run_sweep(jobs, workers=2, threads=1) == {"skipped": 2, "done": 0, "elsewhere": 0, "failed": 0}


def test_slurm_path_through_submitit_local_executor(results_dir, tmp_path):
    name = _real_paper()
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(timeout_min=10)
    jobs = plan([name], "smoke", [3], [], [])
    assert run_sweep(jobs, launcher="slurm", executor=executor, threads=1) == \
        {"skipped": 0, "done": 1, "elsewhere": 0, "failed": 0}
    runs, _ = scan(name, "smoke")
    assert [r.seed for r in runs] == [3] and runs[0].record["status"] == "ok"


def test_two_sweeps_started_together_run_each_job_once(tmp_path):
    env = {**os.environ, "REPRO_EXTRA_PAPERS": "toy=tests.toy_runner", "REPRO_RESULTS_DIR": str(tmp_path / "results"),
           "REPRO_CACHE_DIR": str(tmp_path / "cache"), "TOY_STEP_SLEEP": "0.5"}
    command = [sys.executable, "-m", "common", "sweep", "toy", "--tier", "smoke", "--seeds", "3", "--threads", "1"]
    sweeps = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(2)]
    outputs = [s.communicate(timeout=300)[0] for s in sweeps]
    assert [s.returncode for s in sweeps] == [0, 0], outputs
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "toy" / "smoke").glob("*.json")]
    assert sorted(r["seed"] for r in records) == [0, 1, 2]  # each job ran exactly once
    assert not list((tmp_path / "cache" / "locks").glob("*.lock"))  # every claim was released


def test_a_lock_of_a_live_sweep_is_respected_and_a_dead_ones_is_taken_over(monkeypatch, tmp_path):
    monkeypatch.setitem(PAPERS, "toy", Paper("toy", "Toy 2026", module="tests.toy_runner"))
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("common.sweep.TAKEOVER_SETTLE_S", 0.0)
    job = Job("toy", "smoke", 0, ())
    lock = tmp_path / "cache" / "locks" / f"{job_name(job)}.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": "other"}))
    assert claim(job) is None  # a live owner (this very process, another sweep in it)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(finished.stdout), "token": "dead"}))
    assert claim(job) == lock and json.loads(lock.read_text())["pid"] == os.getpid()  # taken over
    release(lock)
    lock.write_text(json.dumps({"host": "elsewhere.example", "pid": 1, "token": "remote"}))
    assert claim(job) is None  # another host's live owner cannot be checked: left alone ...
    old = lock.stat().st_mtime - 11 * 60
    os.utime(lock, (old, old))
    assert claim(job) == lock  # ... until its heartbeat has stopped for 10 minutes
    release(lock)


def test_reproduce_runs_afresh_apart_from_the_committed_records_and_prints_verdicts(tmp_path, capsys):
    from common.cli import main
    name = _real_paper()
    committed = sorted((ROOT / "results").rglob("*.json"))
    local = tmp_path / "local"
    for _ in range(2):
        assert main(["reproduce", name, "--tier", "smoke", "--results", str(local), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{name}/smoke: 1 run(s) (seeds 0)" in out and "afresh" in out
    assert "ours (this machine)" in out and "claims as expected.yaml records" in out
    assert len(list((local / name / "smoke").glob("*.json"))) == 2  # the second call ran the seed again
    assert main(["reproduce", name, "--tier", "smoke", "--results", str(local), "--resume"]) == 0
    assert len(list((local / name / "smoke").glob("*.json"))) == 2  # --resume keeps finished runs
    assert sorted((ROOT / "results").rglob("*.json")) == committed  # the reference records are untouched
    assert main(["reproduce", name, "--results", str(ROOT / "results")]) == 2
    assert "the committed reference folder" in capsys.readouterr().err
