"""IRNN (reproductions/irnn): the models' initializations, the learning-rate pilot, the runner's config
errors, and the smoke tier end to end through the real harness (deterministic, checked, resumable),
plus a few steps of the paper tier."""
from __future__ import annotations

import json
import math

import pytest
import torch

from common.cli import main
from common.sequence_tasks import make_task
from reproductions.irnn import runner
from tests.conftest import assert_usage_error, require_datasets
from tests.resume import kill_then_resume

SMOKE = {**runner.CONFIG, **runner.TIERS["smoke"]}


def _only_record(folder):
    records = sorted(folder.glob("*.json"))
    assert len(records) == 1, records
    return json.loads(records[0].read_text())


def test_irnn_starts_at_exactly_the_identity_with_zero_biases():
    task = make_task("adding", 30, test_size=10)
    cfg = {**runner.CONFIG, "hidden": 12}
    model = runner.build("irnn", task, cfg, seed=3)
    rnn = model.rnn
    assert torch.equal(rnn.weight_hh_l0, torch.eye(12))
    assert torch.count_nonzero(rnn.bias_hh_l0) == 0 and torch.count_nonzero(rnn.bias_ih_l0) == 0
    assert rnn.nonlinearity == "relu"
    scaled = runner.build("irnn", task, {**cfg, "identity_scale": 0.5}, seed=3)
    assert torch.equal(scaled.rnn.weight_hh_l0, 0.5 * torch.eye(12))
    # the "small random" ReLU RNN: the same architecture, N(0, 0.001) recurrent weights, not the identity
    relu = runner.build("rnn_relu", task, {**runner.CONFIG, "hidden": 100}, seed=3).rnn.weight_hh_l0
    assert relu.std().item() == pytest.approx(0.001, rel=0.05) and abs(relu.diagonal().mean().item()) < 1e-3


def test_build_is_seeded_and_leaves_the_global_stream_alone():
    task = make_task("adding", 10, test_size=10)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = runner.build("lstm", task, SMOKE, seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    b = runner.build("lstm", task, SMOKE, seed=5)
    c = runner.build("lstm", task, SMOKE, seed=6)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_pilot_picks_the_lowest_training_loss_and_never_a_diverged_lr():
    task = make_task("adding", 10, test_size=10)
    cfg = {**SMOKE, "optimizer": "sgd", "clip": 0.0, "pilot_steps": 20, "lr_grid": [1e-2, 1e30]}
    model = runner.build("irnn", task, cfg, seed=0)
    before = [p.clone() for p in model.parameters()]
    chosen, scores = runner.pick_lr(model, task, cfg, seed=1)
    assert scores[1e30] == math.inf and chosen == 1e-2 and math.isfinite(scores[1e-2])
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))  # pilots train copies
    cfg = {**cfg, "lr_grid": [1e-1, 1e-9]}  # on the adding problem, lr 1e-9 does not move off the initial loss
    chosen, scores = runner.pick_lr(model, task, cfg, seed=1)
    assert chosen == min(scores, key=scores.get) == 0.1 and scores[1e-9] > scores[0.1]
    assert runner.pick_lr(model, task, cfg, seed=1)[1] == scores  # the same minibatches every time


def test_metric_prefixes():
    assert runner.task_prefix(make_task("adding", 150, test_size=5)) == "adding150"


@pytest.mark.parametrize("item, message", [
    ("adding_models=irnn,gru", "adding_models: unknown 'gru'; valid: rnn_tanh, rnn_relu, irnn, lstm"),
    ("lr_grid=1e-3,fast", "lr_grid"), ("lr_grid=-0.1", "lr_grid"),
    ("optimizer=adam", "optimizer: unknown 'adam'; valid: rmsprop, sgd"),
    ("mnist_size=10", "mnist_size: unknown 10; valid: 7, 14, 28"), ("hidden=0", "hidden"),
])
def test_bad_config_values_are_usage_errors(item, message, tmp_path, monkeypatch, capsys):
    line = assert_usage_error("irnn", item, tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert message in line


def test_smoke_runs_end_to_end_deterministically_and_passes_its_check(tmp_path, monkeypatch):
    require_datasets(*runner.DATASETS)
    metrics = []
    for attempt in range(2):
        monkeypatch.setenv("REPRO_RESULTS_DIR", str(tmp_path / f"attempt{attempt}"))
        assert main(["run", "irnn", "--tier", "smoke", "--seed", "0", "--quiet"]) == 0
        record = _only_record(tmp_path / f"attempt{attempt}" / "irnn" / "smoke")
        assert record["status"] == "ok", record["reason"]
        metrics.append(record["metrics"])
    assert metrics[0] == metrics[1]  # bit-identical on CPU
    m = metrics[0]
    for model in ("irnn", "rnn_relu", "rnn_tanh", "lstm"):
        assert m[f"adding20_{model}_lr"] in (1e-3, 1e-4) and m[f"adding20_{model}_diverged_at"] == 0
        assert 0 < m[f"adding20_{model}_test_mse"] < 1
    for prefix in ("mnist7", "permuted7"):
        for model in ("irnn", "rnn_tanh"):
            assert 0 <= m[f"{prefix}_{model}_test_accuracy"] <= 1 and m[f"{prefix}_{model}_test_xent"] > 0
    assert main(["check", "irnn", "--tier", "smoke"]) == 0


def test_resume_after_kill_matches_uninterrupted(tmp_path):
    require_datasets(*runner.DATASETS)
    cfg = {**SMOKE, "adding_models": ["irnn", "rnn_relu"], "mnist_tasks": ["pixel_mnist"], "mnist_models": ["irnn"]}
    # 5 logs per adding model (steps 0, 10, 20, 30, 40): the 9th is rnn_relu's step 30, after its checkpoint at 20
    reference, resumed, ctx, ckpt = kill_then_resume("irnn", runner.run, cfg, tmp_path, kill_at_log_call=9)
    assert (ckpt / "stage-adding20_irnn.pt").exists() and (ckpt / "adding_T20-rnn_relu.pt").exists()
    assert resumed == reference
    rows = [(r["task"], r["model"], r["step"]) for r in ctx.curves]
    assert len(rows) == len(set(rows)) and len(rows) == 5 + 5 + 4


def test_paper_tier_runs_for_a_few_steps(results_dir):
    require_datasets(*runner.DATASETS)
    argv = ["run", "irnn", "--tier", "paper", "--seed", "0", "--quiet"]
    for key, value in runner.FEW_STEPS.items():
        argv += ["--set", f"{key}={','.join(map(str, value)) if isinstance(value, list) else value}"]
    assert main(argv) == 0
    record = _only_record(results_dir / "irnn" / "paper")
    assert record["status"] == "ok", record["reason"]
    assert record["config"]["optimizer"] == "sgd" and record["config"]["mnist_size"] == 28
    assert {"adding150_irnn_test_mse", "mnist28_lstm_test_accuracy", "permuted28_rnn_relu_lr"} <= set(record["metrics"])
