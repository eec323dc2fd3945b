"""Every runner puts its models and batches on ctx.device: checked on the CPU with tests/device_probe.py.

The probe's own tests come first (a toy model and batch, moved or not); then every implemented paper
runs its smoke tier cut to FEW_STEPS under the probe, which must see no violation.
"""
import pytest
import torch
from torch import nn

from common.config import resolve
from common.papers import get_paper
from common.runs import run_one
from tests.conftest import covering_points, implemented_names, require_datasets
from tests.device_probe import DeviceProbe
from tests.resume import smoke_context

CPU = torch.device("cpu")


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 2))


def _train_step(model, batch):
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    loss = model(batch).pow(2).mean()
    loss.backward()
    opt.step()


def _probe(fn) -> DeviceProbe:
    with DeviceProbe(CPU) as probe:
        fn()
    return probe


def test_the_probe_passes_a_model_and_batch_both_on_the_device():
    def run():
        model = _model().to(CPU)
        _train_step(model, torch.randn(16, 4).to(CPU))
        _train_step(model, torch.randn(16, 4, device=CPU))
        target = torch.zeros(16, dtype=torch.long, device=CPU)
        model(torch.randn(16, 4, device=CPU)).gather(1, target[:, None]).sum().backward()
        host, generator = torch.randn(64, 4), torch.Generator(device=CPU).manual_seed(0)
        order = torch.randperm(64, generator=torch.Generator().manual_seed(0))  # drawn on the host...
        _train_step(model, host[order[:16]].to(CPU) + torch.randn(16, 4, device=CPU, generator=generator))
        _train_step(model, host.to(CPU)[order[:16]])  # ...and CUDA takes host indices
        model(torch.randn(2, 4, device=CPU)).detach().cpu().numpy()
    probe = _probe(run)
    assert not probe.violations, probe.report()
    assert probe.device_ops > 0


def test_the_probe_sees_module_to_factories_and_likes():
    with DeviceProbe(CPU) as probe:
        model = _model()
        assert not any(probe.is_placed(t) for t in [*model.parameters(), *model.buffers()])
        model.to(CPU)  # nn.Module.to: param.data = param.to(device), for each parameter and buffer
        assert all(probe.is_placed(t) for t in [*model.parameters(), *model.buffers()])
        assert probe.is_placed(torch.zeros(3, device=CPU)) and not probe.is_placed(torch.zeros(3))
        placed = torch.ones(2, 3, device=CPU)
        assert all(probe.is_placed(t) for t in [torch.zeros_like(placed), placed.new_zeros(4), placed[0], placed.T])
        host = torch.ones(3)
        moved = host.to(CPU)
        assert probe.is_placed(moved) and not probe.is_placed(host)  # a copy, as on a GPU
        assert not probe.is_placed(moved.cpu()) and probe.is_placed(moved)


def _original_used_after_to():
    model, batch = _model().to(CPU), torch.randn(16, 4)
    batch.to(CPU)
    model(batch)


# what a runner gets wrong -> (a few lines doing it, what the report must say)
MISTAKES = {
    "model left behind": (lambda: _train_step(_model(), torch.randn(16, 4).to(CPU)), "parameter"),
    "batch left behind": (lambda: _train_step(_model().to(CPU), torch.randn(16, 4)), "mixes"),
    "device ignored": (lambda: _train_step(_model(), torch.randn(16, 4)), "parameter"),
    "host batch after .to": (_original_used_after_to, "mixes"),
    "host batch from .cpu()": (lambda: _model().to(CPU)(torch.randn(16, 4, device=CPU).cpu()), "mixes"),
    "host index in gather": (lambda: torch.ones(16, 2, device=CPU).gather(1, torch.zeros(16, 1, dtype=torch.long)),
                             "mixes"),  # CUDA takes host indices in x[index], not in gather
    "device index into host": (lambda: torch.ones(16, 4)[torch.arange(4, device=CPU)], "indexes a host tensor"),
    "buffers left behind": (lambda: nn.BatchNorm1d(4, affine=False).eval()(torch.ones(16, 4, device=CPU)), "buffer"),
    "host generator": (lambda: torch.randn(3, device=CPU, generator=torch.Generator()), "generator"),
    "numpy of the device": (lambda: torch.ones(3, device=CPU).numpy(), "numpy"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_the_probe_catches(mistake):
    run, expected = MISTAKES[mistake]
    probe = _probe(run)
    assert expected in probe.report(), f"{mistake}: {probe.report() if probe.violations else 'unseen'}"


@pytest.mark.parametrize("name", implemented_names())
def test_runner_keeps_models_and_batches_on_ctx_device(name, tmp_path, monkeypatch):
    runner = get_paper(name).runner()
    require_datasets(*runner.DATASETS)
    points = covering_points(runner, "smoke")
    if points == [None]:
        cfg = resolve(runner, "smoke", runner.FEW_STEPS)
        ctx = smoke_context(name, tmp_path, resume=False)
        torch.manual_seed(0)
        with DeviceProbe(ctx.device) as probe:
            runner.run(cfg, ctx)
    else:  # through the harness, which hands the artifacts from point to point
        monkeypatch.setenv("REPRO_RESULTS_DIR", str(tmp_path / "results"))
        monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
        with DeviceProbe(CPU) as probe:
            for point in points:
                record = run_one(name, "smoke", 0, dict(runner.FEW_STEPS), device="cpu", quiet=True, point=point.name)
                assert record["status"] == "ok", record["reason"]
    assert not probe.violations, f"{name}: {probe.report()}"
    assert probe.device_ops, f"{name}: nothing was ever put on ctx.device"
