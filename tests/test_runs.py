import json

import pytest

from common.cli import main
from common.papers import PAPERS, Paper, UsageError
from common.records import RECORD_KEYS, load_run
from common.runs import run_one
from tests import toy_runner


@pytest.fixture
def toy(monkeypatch, results_dir, tmp_path):
    """Register the toy runner as paper 'toy' (and a folder-less paper 'ghost', always planned),
    with checkpoints under tmp_path."""
    monkeypatch.setitem(PAPERS, "toy", Paper("toy", "Toy 2026", module="tests.toy_runner"))
    monkeypatch.setitem(PAPERS, "ghost", Paper("ghost", "Ghost 2026"))
    monkeypatch.setattr("common.runs.checkpoint_dir", lambda *a: tmp_path / "ckpt" / "-".join(map(str, a)))
    return results_dir


def _records(results_dir, tier="cpu"):
    return sorted((results_dir / "toy" / tier).glob("*.json"))


def test_a_record_carries_everything_the_suite_promises(toy):
    record = run_one("toy", "cpu", seed=3, quiet=True)
    path, = _records(toy)
    assert json.loads(path.read_text()) == record
    assert set(RECORD_KEYS) <= set(record)
    assert record["seed"] == 3 and record["status"] == "ok" and record["reason"] is None
    assert record["config"] == {**toy_runner.CONFIG} and record["overrides"] == {}
    assert set(record["metrics"]) == {"loss", "norm"}
    assert set(record["versions"]) >= {"python", "torch", "numpy", "scipy"}
    assert record["hardware"]["device"] == "cpu" and record["hardware"]["cpu"]
    assert record["throughput"] == {"steps_per_s": 100.0} and record["wall_time_s"] > 0
    assert "commit" in record["git"] and "dirty" in record["git"]
    run = load_run(path)
    curves = run.curves()
    assert list(curves["step"]) == list(range(6)) and set(curves["model"]) == {"toy"}
    assert run.arrays("final")["x"].shape == (3,)


def test_the_git_state_is_read_before_the_run_starts(toy, monkeypatch):
    """Code edited while a run is going is not the code it ran: the record keeps the state at start."""
    edited = []
    monkeypatch.setattr("common.runs.git_state", lambda paper=None: {"commit": "a" * 40, "dirty": bool(edited)})
    original_run = toy_runner.run
    monkeypatch.setattr(toy_runner, "run", lambda cfg, ctx: (edited.append(True), original_run(cfg, ctx))[1])
    record = run_one("toy", "cpu", seed=0, quiet=True)
    assert edited and record["git"] == {"commit": "a" * 40, "dirty": False}


def test_runs_are_bit_identical_for_a_seed(toy):
    first = run_one("toy", "cpu", seed=1, quiet=True)
    second = run_one("toy", "cpu", seed=1, quiet=True)
    assert first["metrics"] == second["metrics"] and first["run_id"] != second["run_id"]
    assert len(_records(toy)) == 2  # concurrent or repeated runs never share a file


def test_nan_is_recorded_as_diverged_at_its_step(toy):
    record = run_one("toy", "cpu", seed=0, overrides={"blow_up_at": 2}, quiet=True)
    assert record["status"] == "diverged" and record["metrics"] == {}
    assert record["reason"] == "loss = nan at step 2"
    assert record["diverged"] == {"name": "loss", "step": 2}  # as fields, not only in the reason
    path, = _records(toy)
    assert list(load_run(path).curves()["step"]) == [0, 1]
    assert not (toy.parent / "ckpt").exists() or not any((toy.parent / "ckpt").rglob("*.pt"))  # not resumable


def test_a_record_is_sealed_and_an_edited_one_is_refused(toy, capsys):
    from common.records import MalformedRecord, content_sha256
    record = run_one("toy", "cpu", seed=0, quiet=True)
    path, = _records(toy)
    assert record["sha256"] == content_sha256(json.loads(path.read_text())) == load_run(path).record["sha256"]
    edited = path.read_text().replace(f'"loss": {record["metrics"]["loss"]}', '"loss": 0.0')
    assert edited != path.read_text()
    path.write_text(edited)
    with pytest.raises(MalformedRecord, match="edited after it was written"):
        load_run(path)


def test_a_crash_is_recorded_as_failed_and_exits_nonzero(toy, capsys):
    assert main(["run", "toy", "--seed", "0", "--set", "fail=true", "--quiet"]) == 1
    path, = _records(toy)
    record = json.loads(path.read_text())
    assert record["status"] == "failed" and record["reason"] == "RuntimeError: toy failure"


def test_resume_continues_a_killed_run_to_the_same_result(toy, monkeypatch):
    reference = run_one("toy", "cpu", seed=5, quiet=True)
    monkeypatch.setenv("TOY_KILL_AT", "3")
    with pytest.raises(toy_runner.Killed):
        run_one("toy", "cpu", seed=5, quiet=True)
    assert len(_records(toy)) == 1  # a killed run leaves no record
    monkeypatch.setenv("TOY_KILL_AT", "1")  # would fire again if the run restarted from scratch
    resumed = run_one("toy", "cpu", seed=5, resume=True, quiet=True)
    # the random streams are restored too, so the resumed run ends exactly where the reference did
    assert resumed["status"] == "ok" and resumed["metrics"] == reference["metrics"]
    # the record says it was resumed: two segments, the first up to its last checkpoint (step 3 done)
    first, second = resumed["segments"]
    assert first["resumed_after"] == [] and "train" in second["resumed_after"]
    assert resumed["wall_time_s"] == pytest.approx(first["wall_time_s"] + second["wall_time_s"], abs=2e-3)
    assert resumed["started_at"] == first["started_at"]
    assert resumed["throughput_covers"] == "the last segment" and reference["throughput_covers"] == "the whole run"
    latest = max(_records(toy), key=lambda p: json.loads(p.read_text())["started_at"])
    curves = load_run(latest).curves()
    assert list(curves["step"]) == list(range(6))


@pytest.mark.parametrize("argv, message", [
    (["run", "nope"], "unknown paper 'nope'; valid papers: dqn_atari"),
    (["run", "toy", "--tier", "huge"], "unknown tier 'huge'; valid tiers: smoke, cpu, paper"),
    (["run", "toy", "--set", "stepz=3"], "--set stepz: unknown key; valid keys: blow_up_at, fail, label"),
    (["run", "toy", "--set", "steps=3.5"], "--set steps=3.5: steps takes a int"),
    (["run", "toy", "--set", "fail=maybe"], "fail takes true or false"),
    (["run", "toy", "--set", "lr=__import__('os')"], "lr takes a finite float"),
    (["run", "toy", "--set", "lr=nan"], "--set lr=nan: lr takes a finite float"),
    (["run", "toy", "--set", "lr=1e999"], "--set lr=1e999: lr takes a finite float"),
    (["run", "toy", "--set", "lr=-inf"], "--set lr=-inf: lr takes a finite float"),
    (["run", "toy", "--seed", "-1"], "argument --seed: '-1' is not an integer >= 0"),
    (["run", "toy", "--threads", "0"], "argument --threads: '0' is not an integer >= 1"),
    (["run", "toy", "--threads", "-1"], "argument --threads: '-1' is not an integer >= 1"),
    (["sweep", "toy", "--seeds", "0"], "argument --seeds: '0' is not an integer >= 1"),
    (["sweep", "toy", "--workers", "0"], "argument --workers: '0' is not an integer >= 1"),
    (["run", "toy", "--set", "steps"], "expected key=value"),
    (["run", "toy", "--device", "tpu"], "unknown device 'tpu'; valid devices: auto, cpu, cuda, mps"),
    (["run", "toy", "--seeds", "0"], "argument --seeds: '0' is not an integer >= 1"),
    (["run", "ghost"], "paper 'ghost' is planned, not implemented yet"),
    (["sweep", "ghost"], "paper 'ghost' is planned, not implemented yet"),
    (["check", "toy", "--tier", "gpu"], "unknown tier 'gpu'"),
    (["sweep", "toy", "--launcher", "k8s"], "unknown launcher 'k8s'; valid launchers: local, slurm"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(toy, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not toy.exists() or not any(toy.rglob("*.json"))


def test_a_malformed_expected_yaml_is_exit_2_for_check_and_a_warning_for_report(toy, capsys, monkeypatch, tmp_path):
    from common.report import build_report
    broken = tmp_path / "expected.yaml"
    broken.write_text("claims: [\n")
    monkeypatch.setattr("common.checks.expected_path", lambda paper: broken)
    monkeypatch.setattr("common.report.expected_path", lambda paper: broken)
    assert main(["check", "toy"]) == 2
    err = capsys.readouterr().err
    assert f"{broken}: is not valid YAML" in err and len(err.strip().splitlines()) == 1
    out = build_report(tmp_path / "report")
    assert f"warning: left out of the report: {broken}: is not valid YAML" in capsys.readouterr().err
    assert f"{broken}: is not valid YAML" in (out / "REPORT.md").read_text()


def test_set_values_are_typed_by_the_config(toy):
    record = run_one("toy", "cpu", seed=0, overrides={"steps": 2, "label": "b", "widths": [1, 2]}, quiet=True)
    assert record["config"]["steps"] == 2 and record["config"]["label"] == "b"
    from common.config import parse_sets
    assert parse_sets(toy_runner, ["widths=16,32", "fail=yes", "lr=1e-3"]) == \
        {"widths": [16, 32], "fail": True, "lr": 0.001}


def test_wandb_without_the_package_is_a_clear_error(toy, capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_wandb)
    assert main(["run", "toy", "--seed", "0", "--wandb"]) == 2
    assert "wandb is not installed" in capsys.readouterr().err


def test_lists_and_sections_parse_as_data_and_name_what_is_valid():
    from common.config import check_names, check_range, merge, parse_sets, read_config
    runner = type("R", (), {"CONFIG": {"acts": ["elu"], "sizes": [3], "lrs": [0.1], "sac": {"lr": 3e-4, "tau": 0.005}}})
    assert parse_sets(runner, ["acts= elu, relu ,", "sizes=3,5", "lrs=0.01,1e-3", "sac.lr=1e-3"]) == \
        {"acts": ["elu", "relu"], "sizes": [3, 5], "lrs": [0.01, 0.001], "sac.lr": 0.001}
    with pytest.raises(UsageError, match="sizes takes a int"):
        parse_sets(runner, ["sizes=3,__import__"])
    with pytest.raises(UsageError, match="sac: is a section; set one of its keys: sac.lr, sac.tau"):
        parse_sets(runner, ["sac=1"])
    with pytest.raises(UsageError, match="valid keys: acts, lrs, sac.lr, sac.tau, sizes"):
        parse_sets(runner, ["sac.gamma=0.9"])
    assert merge(runner.CONFIG, {"sac.lr": 1.0})["sac"] == {"lr": 1.0, "tau": 0.005}
    with pytest.raises(UsageError, match="acts: unknown 'gelu'; valid: elu, relu"):
        check_names("acts", ["elu", "gelu"], ("elu", "relu"))
    with pytest.raises(UsageError, match=r"lengths must be >= 1, got \[1, -2\]"):
        check_range("lengths", [1, -2], 1)
    # records written before lists and sections were real values read as the same config
    assert read_config(runner, {"acts": "elu,relu", "sizes": "3,5", "sac": "lr=0.001,tau=0.01"}) == \
        {"acts": ["elu", "relu"], "sizes": [3, 5], "sac": {"lr": 0.001, "tau": 0.01}}


def test_stage_runs_once_and_a_resumed_run_gets_its_saved_result(tmp_path):
    from tests.resume import smoke_context
    calls = []

    def work():
        calls.append(1)
        return {"value": 1.5}
    first = smoke_context("toy", tmp_path, resume=False)
    assert first.stage("fit", work) == {"value": 1.5} and "fit" in first.stage_seconds
    again = smoke_context("toy", tmp_path, resume=True)
    assert again.stage("fit", work) == {"value": 1.5} and len(calls) == 1
    assert again.stage_seconds == first.stage_seconds
    fresh = smoke_context("toy", tmp_path, resume=False)  # without --resume a stage always runs
    fresh.stage("fit", work)
    assert len(calls) == 2


def test_one_models_divergence_is_data_and_the_run_goes_on(tmp_path):
    from tests.resume import smoke_context
    ctx = smoke_context("toy", tmp_path, resume=False)
    with ctx.may_diverge("naive") as naive:
        for step, loss in enumerate([1.0, 4.0, float("nan"), 2.0]):
            ctx.log(step, model="naive", loss=loss)
    with ctx.may_diverge("bear") as bear:
        ctx.log(0, model="bear", loss=0.5)
    assert naive.metrics() == {"naive_diverged": 1.0, "naive_diverged_step": 2.0, "naive_last_finite_loss": 4.0}
    assert bear.metrics() == {"bear_diverged": 0.0}
    assert [row["loss"] for row in ctx.curves] == [1.0, 4.0, 0.5]
