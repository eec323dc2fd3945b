"""Unit tests of the uRNN: the composed recurrence is unitary, modReLU does what §4.3 says, the fused
recurrence (hand-written backward) agrees with the paper's factored form under autograd and passes
gradcheck, the official initialization, and resuming a killed run. Fast, CPU only."""
from __future__ import annotations

import math

import pytest
import torch

from common.config import resolve
from common.sequence_tasks import make_task
from reproductions.urnn import runner
from reproductions.urnn.urnn import URNN, FusedModReLURecurrence, modrelu_pairs, unitary_apply
from tests.conftest import assert_usage_error
from tests.resume import kill_then_resume


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_the_composed_recurrence_preserves_norms_to_1e5():
    model = URNN(input_size=2, hidden=64, output_size=1, per_step=False)
    with torch.no_grad():  # any parameters: move them far from their initial values
        for p in (model.theta, model.reflection):
            p.normal_(0, 3)
    h = torch.complex(torch.randn(32, 64), torch.randn(32, 64))
    ratio = torch.linalg.vector_norm(model.unitary(h), dim=1) / torch.linalg.vector_norm(h, dim=1)
    assert (ratio - 1).abs().max() < 1e-5
    wr = model.recurrence_matrix()
    assert torch.allclose(wr @ wr.T, torch.eye(128), atol=1e-5)


def test_each_factor_matters_and_the_permutation_is_fixed():
    h = torch.complex(torch.randn(4, 16), torch.randn(4, 16))
    theta, v = torch.zeros(3, 16), torch.complex(torch.randn(2, 16), torch.randn(2, 16))
    identity_perm = torch.arange(16)
    base = unitary_apply(h, theta, v, identity_perm)
    assert not torch.allclose(base, unitary_apply(h, theta + 0.1, v, identity_perm))
    assert not torch.allclose(base, unitary_apply(h, theta, v, identity_perm.flip(0)))
    a, b = URNN(2, 16, 1, False), URNN(2, 16, 1, False)
    assert torch.equal(a.permutation, a.permutation) and sorted(a.permutation.tolist()) == list(range(16))
    assert not torch.equal(a.permutation, b.permutation)  # drawn from the seeded init stream


def test_modrelu_keeps_the_phase_and_cuts_small_moduli():
    z = torch.tensor([[3.0, 0.1, 4.0, 0.0]])  # two complex units: 3 + 4i (|z| = 5) and 0.1 + 0i
    out = modrelu_pairs(z, torch.tensor([-1.0, -0.5]))
    assert torch.allclose(out, torch.tensor([[3 * 4 / (5 + 1e-5), 0.0, 4 * 4 / (5 + 1e-5), 0.0]]))


def test_official_initialization_ranges():
    model = URNN(input_size=10, hidden=128, output_size=9, per_step=True)
    assert model.bias.abs().max() <= 0.01
    assert model.h0.abs().max() <= math.sqrt(3 / 128)
    assert model.theta.abs().max() <= math.sqrt(6 / (3 + 128))
    assert model.input_weight.abs().max() <= math.sqrt(6 / (10 + 256))
    assert sum(p.numel() for p in model.parameters()) == 3 * 128 + 4 * 128 + 128 + 256 + 10 * 256 + 256 * 9 + 9


@pytest.mark.parametrize("per_step", [True, False])
def test_fused_recurrence_matches_the_factored_form_and_its_gradients(per_step):
    model = URNN(input_size=3, hidden=8, output_size=2, per_step=per_step).double()
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    fused, naive = model(x, fused=True), model(x, fused=False)
    assert torch.allclose(fused, naive, atol=1e-12)
    params = list(model.parameters())
    g_fused = torch.autograd.grad(fused.square().sum(), params)
    g_naive = torch.autograd.grad(naive.square().sum(), params)
    for name, a, b in zip([n for n, _ in model.named_parameters()], g_fused, g_naive):
        assert torch.allclose(a, b, atol=1e-10), name


def test_fused_backward_passes_gradcheck():
    double = dict(dtype=torch.float64, requires_grad=True)
    vx, wr = torch.randn(3, 5, 8, **double), (0.5 * torch.randn(8, 8, dtype=torch.float64)).requires_grad_()
    bias, h0 = torch.randn(4, **double), torch.randn(8, **double)
    assert torch.autograd.gradcheck(FusedModReLURecurrence.apply, (vx, wr, bias, h0))


def test_the_urnn_learns_the_copying_task_below_its_memoryless_baseline():
    task = make_task("copying", 5, test_size=200)
    model = URNN(task.input_size, 32, task.output_size, per_step=True)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-2, alpha=0.9)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        x, y = task.batch(20, generator)
        optimizer.zero_grad()
        task.loss(model(x), y).backward()
        optimizer.step()
    x, y = next(task.test_batches(200))
    assert task.loss(model(x), y).item() < 0.5 * task.baseline


@pytest.mark.parametrize("item, message", [
    ("models=urnn,gru", "models: unknown 'gru'; valid: urnn, lstm, rnn_tanh, irnn"),
    ("hidden.urnn=0", "hidden must be >= 1"), ("hidden=urnn:128", "hidden: is a section"),
    ("copying_lengths=0", "copying_lengths"), ("lr=fast", "lr takes a finite float"),
])
def test_bad_settings_are_usage_errors(item, message, tmp_path, monkeypatch, capsys):
    line = assert_usage_error("urnn", item, tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert message in line


def test_resume_after_kill_matches_uninterrupted(tmp_path):
    cfg = {**resolve(runner, "smoke", {}), "adding_lengths": []}
    reference, resumed, _, _ = kill_then_resume("urnn", runner.run, cfg, tmp_path, kill_at_log_call=3)
    assert resumed == reference
