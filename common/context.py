"""The object a paper's runner talks to while it runs: curves, progress, checkpoints, artifacts.

A runner never writes files itself. It calls `ctx.log(...)` for learning curves, `ctx.progress(...)`
for a progress bar, `ctx.save_arrays(...)` for pictures the report will draw, `ctx.stage(...)` (or
`ctx.checkpoint(...)`/`ctx.restore(...)`) so that `repro run --resume` can continue a killed run,
`ctx.may_diverge(...)` so one model's NaN is a result rather than the end of the run, and
`ctx.publish(...)`/`ctx.require(...)` to hand artifacts between runs. Models and batches go to
`ctx.device`. The harness (`common.runs`) turns all of it into one run record when the runner returns.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import random
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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
class Divergence:
    """What `ctx.may_diverge(model)` saw: whether the model's logged values stayed finite."""
    model: str
    step: int | None = None
    name: str | None = None
    last_finite: float | None = None

    @property
    def diverged(self) -> bool:
        return self.step is not None

    def metrics(self) -> dict[str, float]:
        """`<model>_diverged` (0 or 1) always; when it did, the step and the last finite value."""
        out = {f"{self.model}_diverged": float(self.diverged)}
        if self.diverged:
            out[f"{self.model}_diverged_step"] = float(self.step)
            if self.last_finite is not None:
                out[f"{self.model}_last_finite_{self.name}"] = self.last_finite
        return out


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
    point: str | None = None  # the experiment point this run is, if its tier has points
    curves: list[dict] = field(default_factory=list)
    throughput: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, dict] = field(default_factory=lambda: {"published": {}, "consumed": {}})
    wandb_run: object = None
    # set by the harness: publish(name, value) -> meta, and require(name) -> (value, meta)
    publisher: Callable | None = None
    provider: Callable | None = None
    # the run's segments (one per start or --resume): when each began and its wall time, as of its
    # last checkpoint for a segment that was killed
    undefined: dict[str, str] = field(default_factory=dict)  # metric -> why it could not be measured
    segments: list[dict] = field(default_factory=list)
    _segment_clock: float = 0.0

    def begin_segment(self) -> None:
        """Start this process's segment of the run, after the earlier segments of a resumed run."""
        saved = self.checkpoint_dir / "segments.json"
        if self.resume and saved.exists():
            self.segments = json.loads(saved.read_text())
        done = sorted(p.stem for p in self.checkpoint_dir.glob("*.pt")) if self.resume else []
        self.segments.append({"started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                              "wall_time_s": 0.0, "resumed_after": done})
        self._segment_clock = time.perf_counter()

    def end_segment(self) -> float:
        """Close this segment; returns the whole run's wall time (every segment's)."""
        self.segments[-1]["wall_time_s"] = round(time.perf_counter() - self._segment_clock, 3)
        return round(sum(seg["wall_time_s"] for seg in self.segments), 3)

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

    def mark_undefined(self, name: str, why: str) -> None:
        """A metric this run could not measure (e.g. a return when no evaluation episode finished): it is
        left out of the metrics, and a claim that needs it is not reproduced on this seed, saying why."""
        self.undefined[name] = why

    def record_throughput(self, name: str, value: float) -> None:
        """E.g. ``ctx.record_throughput("siren_steps_per_s", 12.5)``; stored in the run record."""
        self.throughput[name] = _as_float(name, value)

    def save_arrays(self, name: str, **arrays) -> None:
        """Keep small arrays (images, bases) for the report's pictures; written next to the record."""
        self.arrays[name] = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
                             for k, v in arrays.items()}

    @contextmanager
    def may_diverge(self, model: str):
        """Train one model of several inside this block: a NaN or inf it logs (or a `Diverged` it
        raises) ends the block, not the run. `outcome.metrics()` gives the record's metrics.

            with ctx.may_diverge("naive") as outcome:
                train(naive, ...)
            metrics.update(outcome.metrics())
        """
        outcome, start = Divergence(model), len(self.curves)
        try:
            yield outcome
        except Diverged as err:
            outcome.step, outcome.name = err.step, err.name
            earlier = [row[err.name] for row in self.curves[start:] if isinstance(row.get(err.name), float)]
            outcome.last_finite = earlier[-1] if earlier else None

    # -- artifacts ---------------------------------------------------------------------------
    def publish(self, name: str, value) -> None:
        """Hand `value` to later runs: a dict of tensors/numbers, a dict of numpy arrays, or the path
        of a file this run wrote. Stored under the address of this run's config and seed."""
        if self.publisher is None:
            raise RuntimeError("publish() needs a run started by the harness (repro run / sweep)")
        self.artifacts["published"][name] = self.publisher(name, value)

    def require(self, name: str):
        """The artifact `name` that this point's `requires` names, checksum-verified; built first
        by its producer's run if it is missing. A dict, or a Path for a file artifact."""
        if self.provider is None:
            raise RuntimeError("require() needs a run started by the harness (repro run / sweep)")
        value, meta = self.provider(name)
        self.artifacts["consumed"][name] = meta
        return value

    # -- resume ------------------------------------------------------------------------------
    def stage(self, key: str, fn: Callable[[], object]):
        """Run `fn()` once and return its result (numbers, tensors, lists, dicts). Its result is
        checkpointed, so a resumed run skips a finished stage and gets the saved result; the stage's
        wall time goes into the record. Stages must run in the same order on every run."""
        saved = self.restore(f"stage-{key}")
        if saved is not None:
            return saved["result"]
        clock = time.perf_counter()
        result = fn()
        self.stage_seconds[key] = round(time.perf_counter() - clock, 3)
        self.checkpoint(f"stage-{key}", {"result": result, "seconds": self.stage_seconds})
        return result

    def _checkpoint_path(self, key: str) -> Path:
        return self.checkpoint_dir / f"{key}.pt"

    def checkpoint(self, key: str, state: dict) -> None:
        """Save `state` (tensors, numbers, strings, lists, dicts) under `key`, with the curves, the
        throughput and the arrays so far and the random number generators' states, so a resumed run
        continues the same streams and keeps the pictures of the stages it skips.

        Written atomically, so a kill during the save leaves the previous checkpoint intact.
        """
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        payload = {"state": state, "curves": list(self.curves), "throughput": dict(self.throughput),
                   "undefined": dict(self.undefined),
                   "arrays": {name: {k: torch.tensor(v) for k, v in group.items()}
                              for name, group in self.arrays.items()},
                   "rng": _rng_state()}
        fd, tmp = tempfile.mkstemp(dir=self.checkpoint_dir, suffix=".tmp")
        os.close(fd)
        torch.save(payload, tmp)
        os.replace(tmp, self._checkpoint_path(key))
        if self.segments:  # the segments so far, for a resumed run's record
            self.segments[-1]["wall_time_s"] = round(time.perf_counter() - self._segment_clock, 3)
            fd, tmp = tempfile.mkstemp(dir=self.checkpoint_dir, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(self.segments, f)
            os.replace(tmp, self.checkpoint_dir / "segments.json")

    def restore(self, key: str) -> dict | None:
        """The state saved under `key` if this is a `--resume` run and it exists, else None.

        Restoring also rewinds the curves, the arrays and the random streams to the moment of the
        checkpoint.
        """
        path = self._checkpoint_path(key)
        if not (self.resume and path.exists()):
            return None
        payload = torch.load(path, weights_only=True, map_location=self.device)
        if key.startswith("stage-"):
            self.stage_seconds = dict(payload["state"]["seconds"])
        self.curves = list(payload["curves"])
        self.throughput = dict(payload["throughput"])
        self.undefined = dict(payload.get("undefined", {}))
        self.arrays = {name: {k: v.cpu().numpy() for k, v in group.items()}
                       for name, group in payload.get("arrays", {}).items()}
        _set_rng_state(payload["rng"])
        return payload["state"]


def fork_rng(device: torch.device | str):
    """`torch.random.fork_rng` over the CPU's streams and, on an accelerator, `device`'s stream too:
    what a pilot or a side computation draws inside it leaves the run's streams where they were, on
    whatever device the run trains."""
    device = torch.device(device)
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device], device_type=device.type)


def _rng_state() -> dict:
    """torch (CPU and, when in use, every CUDA device), numpy and python random streams, in types
    `torch.load(weights_only=True)` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    random.setstate((3, tuple(state["python"]), None))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
