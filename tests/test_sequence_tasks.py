"""The shared recurrent-task layer (common/sequence_tasks.py, common/recurrent.py): the tasks' layouts,
targets and memoryless baselines, the fixed MNIST permutation, the LSTM's forget bias, and the errors
for unknown names."""
from __future__ import annotations

import math

import pytest
import torch

from common.recurrent import RecurrentBaseline
from common.sequence_tasks import (
    ADDING_BASELINE_MSE,
    COPY_BLANK,
    COPY_DELIMITER,
    copying_baseline,
    make_task,
)
from tests.conftest import require_datasets


def test_adding_target_is_the_sum_of_the_two_marked_values_one_per_half():
    T = 50
    task = make_task("adding", T, test_size=10)
    x, y = task.batch(500, torch.Generator().manual_seed(0))
    assert x.shape == (500, T, 2) and y.shape == (500, 1) and x.dtype == torch.float32
    values, markers = x[..., 0], x[..., 1]
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    assert torch.all(markers[:, :T // 2].sum(1) == 1) and torch.all(markers[:, T // 2:].sum(1) == 1)
    first, second = markers[:, :T // 2].argmax(1), T // 2 + markers[:, T // 2:].argmax(1)
    rows = torch.arange(500)
    torch.testing.assert_close(y[:, 0], values[rows, first] + values[rows, second])
    assert 0 <= values.min() and values.max() < 1


def test_adding_baseline_is_the_mse_of_always_predicting_one():
    task = make_task("adding", 20, test_size=10)
    _, y = task.batch(20_000, torch.Generator().manual_seed(1))
    empirical = task.loss(torch.ones_like(y), y).item()
    assert task.baseline == ADDING_BASELINE_MSE == pytest.approx(1 / 6)
    assert empirical == pytest.approx(1 / 6, abs=0.005)


def test_copying_layout_and_targets():
    T = 30
    task = make_task("copying", T, test_size=10)
    x, y = task.batch(64, torch.Generator().manual_seed(2))
    assert x.shape == (64, T + 20, 10) and y.shape == (64, T + 20)
    assert torch.all(x.sum(-1) == 1)  # one-hot
    symbols = x.argmax(-1)
    assert torch.all(symbols[:, :10] < 8)
    delimiter = 10 + T - 1
    assert torch.all(symbols[:, delimiter] == COPY_DELIMITER)
    others = torch.cat([symbols[:, 10:delimiter], symbols[:, delimiter + 1:]], dim=1)
    assert torch.all(others == COPY_BLANK) and others.shape[1] == T - 1 + 10
    assert torch.all(y[:, :-10] == COPY_BLANK) and torch.equal(y[:, -10:], symbols[:, :10])
    assert copying_baseline(100) == pytest.approx(10 * math.log(8) / 120)
    assert task.baseline == copying_baseline(T)


def test_memoryless_copying_predictor_scores_exactly_the_baseline():
    T = 25
    task = make_task("copying", T, test_size=10)
    _, y = task.batch(32, torch.Generator().manual_seed(3))
    logits = torch.full((32, T + 20, 10), -1e9)
    logits[:, :-10, COPY_BLANK] = 0.0   # blank, with certainty, everywhere but the last 10 steps
    logits[:, -10:, :8] = 0.0           # uniform over the 8 symbols on the last 10
    assert task.loss(logits, y).item() == pytest.approx(task.baseline, rel=1e-6)
    assert task.metrics(logits, y)["loss"] == pytest.approx(copying_baseline(T), rel=1e-6)


def test_pixel_mnist_shapes_and_downsampling():
    require_datasets("mnist")
    task = make_task("pixel_mnist", 14, test_size=20, train_size=30)
    assert task.T == 196 and task.name == "pixel_mnist14" and task.permutation is None
    assert task.train_x.shape == (30, 196, 1) and task.test_x.shape == (20, 196, 1)
    assert task.train_y.dtype == torch.int64 and 0 <= task.train_x.min() and task.train_x.max() <= 1
    full = make_task("pixel_mnist", 28, test_size=20, train_size=30)
    pooled = full.train_x.reshape(30, 14, 2, 14, 2).mean((2, 4)).reshape(30, 196, 1)
    torch.testing.assert_close(task.train_x, pooled)
    x, y = task.batch(8, torch.Generator().manual_seed(0))
    assert x.shape == (8, 196, 1) and y.shape == (8,)
    assert task.baseline == pytest.approx(math.log(10))


def test_permutation_is_fixed_by_its_seed_and_shared_by_train_and_test():
    require_datasets("mnist")
    plain = make_task("pixel_mnist", 14, test_size=20, train_size=30)
    a = make_task("permuted_mnist", 14, test_size=20, train_size=30, permutation_seed=0)
    b = make_task("permuted_mnist", 14, test_size=20, train_size=30, permutation_seed=0)
    c = make_task("permuted_mnist", 14, test_size=20, train_size=30, permutation_seed=1)
    assert a.name == "permuted_mnist14"
    assert torch.equal(a.permutation, b.permutation) and torch.equal(a.train_x, b.train_x)
    assert not torch.equal(a.permutation, c.permutation)
    assert sorted(a.permutation.tolist()) == list(range(196))
    assert torch.equal(a.train_x, plain.train_x[:, a.permutation])
    assert torch.equal(a.test_x, plain.test_x[:, a.permutation])
    assert torch.equal(a.test_y, plain.test_y)


def test_lstm_forget_gate_biases_sum_to_one():
    hidden = 7
    rnn = RecurrentBaseline("lstm", 3, hidden, 2, per_step=False).rnn
    forget = rnn.bias_ih_l0[hidden:2 * hidden] + rnn.bias_hh_l0[hidden:2 * hidden]
    torch.testing.assert_close(forget, torch.ones(hidden))
    other = rnn.bias_ih_l0[:hidden] + rnn.bias_hh_l0[:hidden]
    assert not torch.allclose(other, torch.ones(hidden))  # only the forget gate is set


def test_unknown_names_raise_with_the_valid_ones():
    with pytest.raises(ValueError, match="valid tasks: adding, copying, pixel_mnist, permuted_mnist"):
        make_task("parity", 10)
    with pytest.raises(ValueError, match="valid models: rnn_tanh, rnn_relu, irnn, lstm"):
        RecurrentBaseline("gru", 2, 4, 1, per_step=False)
    with pytest.raises(ValueError, match="T must be an integer"):
        make_task("adding", 1)
    with pytest.raises(ValueError, match="7, 14, 28"):
        make_task("pixel_mnist", 10)
