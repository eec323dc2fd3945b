"""The long-range sequence tasks the recurrent-network papers share (IRNN: Le et al. 2015 §4.1-4.2;
uRNN: Arjovsky et al. 2016 §5.1-5.3), generated for any length T from a seeded generator, with their
memoryless baselines.

Every task gives batches as (x, y) with x shaped (batch, steps, input_size), float32, and knows
its loss, its metrics and, where there is one, the loss of the best model that remembers nothing:

  adding    x_t = (value ~ U[0, 1], marker); one marker in each half; y = the sum of the two marked
            values. Predicting 1 always gives MSE Var(u1 + u2) = 2/12 = 0.167.
  copying   10 symbols drawn from a0..a7, then T-1 blanks (a8), the delimiter a9, then 10 blanks:
            T + 20 steps, one-hot inputs. The target is blanks, then the 10 symbols in the last 10
            steps. Blanks first, then a uniform guess over the 8 symbols: 10 log 8 / (T + 20).
  pixels    an MNIST image read one pixel per step (optionally downsampled, optionally with one fixed
            seeded permutation of the pixels); the class is read out after the last pixel.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

ADDING_BASELINE_MSE = 2 / 12   # Var(u1 + u2) for u ~ U[0, 1]: the "0.167" of both papers
COPY_SYMBOLS, COPY_LENGTH = 8, 10
COPY_BLANK, COPY_DELIMITER = 8, 9
COPY_CATEGORIES = 10


def copying_baseline(T: int) -> float:
    """Cross-entropy per step of the memoryless strategy (uRNN §5.1): 10 log 8 / (T + 20)."""
    return COPY_LENGTH * math.log(COPY_SYMBOLS) / (T + 2 * COPY_LENGTH)


def _check_length(T: int, least: int) -> None:
    if not isinstance(T, int) or T < least:
        raise ValueError(f"sequence length T must be an integer >= {least}, got {T!r}")


class _Synthetic:
    """A generated task's held-out set: `test_size` sequences from a fixed seed, the same for every
    model and every training seed."""

    TEST_SEED = 20_150_000

    def test_batches(self, n: int):
        if getattr(self, "_test", None) is None:
            self._test = self.batch(self.test_size, torch.Generator().manual_seed(self.TEST_SEED + self.T))
        x, y = self._test
        for start in range(0, len(x), n):
            yield x[start:start + n], y[start:start + n]


class AddingTask(_Synthetic):
    """The adding problem (Hochreiter & Schmidhuber 1997, as in IRNN §4.1 and uRNN §5.2)."""

    per_step = False
    input_size, output_size = 2, 1

    def __init__(self, T: int, test_size: int = 1000):
        _check_length(T, 2)
        self.T, self.name, self.test_size = T, f"adding_T{T}", test_size
        self.baseline = ADDING_BASELINE_MSE

    def batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        half = self.T // 2
        values = torch.rand(n, self.T, generator=generator)
        first = torch.randint(0, half, (n,), generator=generator)
        second = torch.randint(half, self.T, (n,), generator=generator)
        markers = torch.zeros(n, self.T)
        rows = torch.arange(n)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        target = (values * markers).sum(1, keepdim=True)
        return torch.stack([values, markers], dim=2), target

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target)

    def metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        return {"loss": self.loss(output, target).item()}


class CopyingTask(_Synthetic):
    """The copying memory problem (uRNN §5.1): reproduce 10 symbols after T blank steps."""

    per_step = True
    input_size = output_size = COPY_CATEGORIES

    def __init__(self, T: int, test_size: int = 1000):
        _check_length(T, 1)
        self.T, self.name, self.test_size = T, f"copying_T{T}", test_size
        self.baseline = copying_baseline(T)

    def batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        symbols = torch.randint(0, COPY_SYMBOLS, (n, COPY_LENGTH), generator=generator)
        blanks = torch.full((n, self.T - 1), COPY_BLANK)
        delimiter = torch.full((n, 1), COPY_DELIMITER)
        tail = torch.full((n, COPY_LENGTH), COPY_BLANK)
        inputs = torch.cat([symbols, blanks, delimiter, tail], dim=1)
        target = torch.cat([torch.full((n, self.T + COPY_LENGTH), COPY_BLANK), symbols], dim=1)
        return F.one_hot(inputs, COPY_CATEGORIES).float(), target

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output.reshape(-1, COPY_CATEGORIES), target.reshape(-1))

    def metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        recalled = output[:, -COPY_LENGTH:].argmax(-1) == target[:, -COPY_LENGTH:]
        return {"loss": self.loss(output, target).item(), "recall_accuracy": recalled.float().mean().item()}


class PixelMNISTTask:
    """Sequential (IRNN §4.2) and permuted (uRNN §5.3) pixel MNIST: one grey level per step in [0, 1].

    `size` < 28 downsamples by averaging 28/size × 28/size blocks (14 gives 196 steps);
    `permutation_seed` fixes one random order of the pixels for every image, train and test alike.
    `train_size` and `test_size` take the first images of each split (None: all of them).
    """

    per_step = False
    input_size, output_size = 1, 10
    baseline = math.log(10)  # a uniform guess over the classes

    def __init__(self, size: int = 28, permutation_seed: int | None = None,
                 train_size: int | None = None, test_size: int | None = None):
        if size not in (7, 14, 28):
            raise ValueError(f"pixel MNIST size must be one of 7, 14, 28 (28 divided evenly), got {size!r}")
        self.size, self.T = size, size * size
        self.name = f"{'permuted' if permutation_seed is not None else 'pixel'}_mnist{size}"
        self.permutation = None if permutation_seed is None else \
            torch.randperm(self.T, generator=torch.Generator().manual_seed(permutation_seed))
        self.train_x, self.train_y = self._load("train", train_size)
        self.test_x, self.test_y = self._load("test", test_size)

    def _load(self, split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        from common.datasets import mnist
        images, labels = mnist(split)
        images, labels = images[:limit], labels[:limit]
        x = torch.from_numpy(images.astype(np.float32) / 255).unsqueeze(1)
        if self.size < 28:
            x = F.avg_pool2d(x, 28 // self.size)
        x = x.reshape(len(x), self.T)
        if self.permutation is not None:
            x = x[:, self.permutation]
        return x.unsqueeze(2).contiguous(), torch.from_numpy(labels.astype(np.int64))

    def batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(0, len(self.train_x), (n,), generator=generator)
        return self.train_x[index], self.train_y[index]

    def test_batches(self, n: int):
        for start in range(0, len(self.test_x), n):
            yield self.test_x[start:start + n], self.test_y[start:start + n]

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        return {"loss": self.loss(output, target).item(),
                "accuracy": (output.argmax(-1) == target).float().mean().item()}


TASKS = ("adding", "copying", "pixel_mnist", "permuted_mnist")


def make_task(name: str, T: int, test_size: int = 1000, train_size: int | None = None,
              permutation_seed: int = 0) -> AddingTask | CopyingTask | PixelMNISTTask:
    """'adding' or 'copying' of length T; 'pixel_mnist' or 'permuted_mnist' with images `T` pixels on
    a side (28, 14 or 7). `train_size` only applies to MNIST (None: the whole training set)."""
    if name == "adding":
        return AddingTask(T, test_size)
    if name == "copying":
        return CopyingTask(T, test_size)
    if name in ("pixel_mnist", "permuted_mnist"):
        return PixelMNISTTask(size=T, permutation_seed=permutation_seed if name == "permuted_mnist" else None,
                              train_size=train_size, test_size=test_size)
    raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
