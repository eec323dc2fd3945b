"""Every runner puts its models and batches on ctx.device: checked on the CPU with tests/device_probe.py."""
import pytest
import torch
from torch import nn

from common.config import resolve
from common.papers import get_paper
from tests.conftest import implemented_names, require_datasets
from tests.device_probe import DeviceProbe
from tests.resume import smoke_context

CPU = torch.device("cpu")


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 2))


def _train_step(model, batch):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(batch).pow(2).mean()
    loss.backward()
    opt.step()


def test_the_probe_passes_a_model_and_batch_both_on_the_device():
    with DeviceProbe(CPU) as probe:
        model = _model().to(CPU)
        _train_step(model, torch.randn(16, 4).to(CPU))
        _train_step(model, torch.randn(16, 4, device=CPU))
    assert not probe.violations, probe.report()


def test_the_probe_catches_a_model_left_behind():
    with DeviceProbe(CPU) as probe:
        _train_step(_model(), torch.randn(16, 4).to(CPU))
    assert probe.violations and "parameter" in probe.report()


def test_the_probe_catches_a_batch_left_behind():
    with DeviceProbe(CPU) as probe:
        _train_step(_model().to(CPU), torch.randn(16, 4))
    assert "mixes" in probe.report()


def test_the_probe_catches_a_runner_that_ignores_the_device_entirely():
    with DeviceProbe(CPU) as probe:
        _train_step(_model(), torch.randn(16, 4))
    assert probe.violations


@pytest.mark.parametrize("name", implemented_names())
def test_runner_keeps_models_and_batches_on_ctx_device(name, tmp_path):
    runner = get_paper(name).runner()
    require_datasets(*runner.DATASETS)
    cfg = resolve(runner, "smoke", runner.FEW_STEPS)
    ctx = smoke_context(name, tmp_path, resume=False)
    torch.manual_seed(0)
    with DeviceProbe(ctx.device) as probe:
        runner.run(cfg, ctx)
    assert not probe.violations, f"{name}: {probe.report()}"
