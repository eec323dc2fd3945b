"""The object a paper's runner talks to while it runs: curves, progress, checkpoints, artifacts.

A runner never writes files itself. It calls `ctx.log(...)` for learning curves, `ctx.progress(...)`
for a progress bar, `ctx.save_arrays(...)` for pictures the report will draw, and
`ctx.checkpoint(...)`/`ctx.restore(...)` so that `repro run --resume` can continue a killed run.
The harness (`common.runs`) turns all of it into one run record when the runner returns.
"""
from __future__ import annotations

import math
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm


class Diverged(RuntimeError):
    """A logged value became NaN or inf. The run is recorded as diverged at `step`."""

    def __init__(self, step: int, name: str, value: float):
        super().__init__(f"{name} = {value} at step {step}")
        self.step, self.name, self.value = step, name, value


def _as_float(name: str, value) -> float:
    if isinstance(value, torch.Tensor):
        value = value.detach().item()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"metric {name!r} must be a number, got {type(value).__name__}") from None


@dataclass
class RunContext:
    paper: str
    tier: str
    seed: int
    device: torch.device
    checkpoint_dir: Path
    artifact_prefix: Path  # arrays are written to f"{artifact_prefix}.{name}.npz" at the end
    resume: bool = False
    show_progress: bool = True
    curves: list[dict] = field(default_factory=list)
    throughput: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    wandb_run: object = None

    def log(self, step: int, **values) -> None:
        """Append one row to the learning curves.

        String values are labels (e.g. ``model="siren"``); everything else must be a finite number.
        A NaN or inf raises `Diverged`, which the harness records as the run's outcome.
        """
        row: dict = {"step": int(step)}
        for name, value in values.items():
            if isinstance(value, str):
                row[name] = value
                continue
            number = _as_float(name, value)
            if not math.isfinite(number):
                raise Diverged(step, name, number)
            row[name] = number
        self.curves.append(row)
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in row.items() if not isinstance(v, str)})

    def progress(self, iterable, desc: str, total: int | None = None):
        """A tqdm progress bar over `iterable` (silenced with --quiet)."""
        return tqdm(iterable, desc=f"{self.paper}/{self.tier}/s{self.seed} {desc}", total=total,
                    disable=not self.show_progress, leave=False, dynamic_ncols=True)

    def record_throughput(self, name: str, value: float) -> None:
        """E.g. ``ctx.record_throughput("siren_steps_per_s", 12.5)``; stored in the run record."""
        self.throughput[name] = _as_float(name, value)

    def save_arrays(self, name: str, **arrays) -> None:
        """Keep small arrays (images, bases) for the report's pictures; written next to the record."""
        self.arrays[name] = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
                             for k, v in arrays.items()}

    # -- resume ------------------------------------------------------------------------------
    def _checkpoint_path(self, key: str) -> Path:
        return self.checkpoint_dir / f"{key}.pt"

    def checkpoint(self, key: str, state: dict) -> None:
        """Save `state` (tensors, numbers, strings, lists, dicts) under `key`, with the curves so far
        and the random number generators' states, so a resumed run continues the same streams.

        Written atomically, so a kill during the save leaves the previous checkpoint intact.
        """
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        payload = {"state": state, "curves": list(self.curves), "throughput": dict(self.throughput),
                   "rng": _rng_state()}
        fd, tmp = tempfile.mkstemp(dir=self.checkpoint_dir, suffix=".tmp")
        os.close(fd)
        torch.save(payload, tmp)
        os.replace(tmp, self._checkpoint_path(key))

    def restore(self, key: str) -> dict | None:
        """The state saved under `key` if this is a `--resume` run and it exists, else None.

        Restoring also rewinds the curves and the random streams to the moment of the checkpoint.
        """
        path = self._checkpoint_path(key)
        if not (self.resume and path.exists()):
            return None
        payload = torch.load(path, weights_only=True, map_location=self.device)
        self.curves = list(payload["curves"])
        self.throughput = dict(payload["throughput"])
        _set_rng_state(payload["rng"])
        return payload["state"]


def _rng_state() -> dict:
    """torch, numpy and python random streams, in types `torch.load(weights_only=True)` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
