import pytest
import submitit

from common.papers import PAPERS, Paper, UsageError
from common.records import scan
from common.sweep import Job, already_done, plan, run_sweep
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
    assert run_sweep(jobs, workers=2, threads=1) == {"skipped": 0, "done": 2, "failed": 0}
    runs, errors = scan(name, "smoke")
    assert not errors and sorted(r.seed for r in runs) == [0, 1]
    assert all(r.record["status"] == "ok" and r.record["hardware"]["torch_threads"] == 1 for r in runs)
    assert run_sweep(jobs, workers=2, threads=1) == {"skipped": 2, "done": 0, "failed": 0}


def test_slurm_path_through_submitit_local_executor(results_dir, tmp_path):
    name = _real_paper()
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(timeout_min=10)
    jobs = plan([name], "smoke", [3], [], [])
    assert run_sweep(jobs, launcher="slurm", executor=executor, threads=1) == \
        {"skipped": 0, "done": 1, "failed": 0}
    runs, _ = scan(name, "smoke")
    assert [r.seed for r in runs] == [3] and runs[0].record["status"] == "ok"
