"""Kill a paper's run part-way, resume it, and compare with an uninterrupted run (papers' resume tests)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common.context import RunContext


class Killed(Exception):
    """Raised from inside ctx.log: the process 'dies' between two logged steps."""


def smoke_context(paper: str, folder: Path, resume: bool) -> RunContext:
    return RunContext(paper=paper, tier="smoke", seed=0, device=torch.device("cpu"), checkpoint_dir=folder / "ckpt",
                      artifact_prefix=folder / "art", resume=resume, show_progress=False)


def kill_then_resume(paper: str, run, cfg: dict, tmp: Path, kill_at_log_call: int):
    """Run `run(cfg, ctx)` uninterrupted, then killed at the `kill_at_log_call`-th ctx.log call, then
    resumed from the killed run's checkpoints. Returns (reference metrics, resumed metrics,
    the resumed context, the killed run's checkpoint folder)."""
    def go(ctx):
        torch.manual_seed(0)
        return run(dict(cfg), ctx)

    reference_ctx = smoke_context(paper, tmp / "uninterrupted", resume=False)
    reference = go(reference_ctx)
    killed = smoke_context(paper, tmp / "killed", resume=False)
    calls, log = [0], killed.log

    def dying_log(step, **values):
        calls[0] += 1
        if calls[0] == kill_at_log_call:
            raise Killed
        log(step, **values)

    killed.log = dying_log
    try:
        go(killed)
    except Killed:
        pass
    else:
        raise AssertionError(f"the run logged fewer than {kill_at_log_call} times; it was never killed")
    resumed_ctx = smoke_context(paper, tmp / "killed", resume=True)
    resumed = go(resumed_ctx)
    # the pictures too: a stage skipped on resume keeps the arrays it saved (they ride in the checkpoints)
    assert set(resumed_ctx.arrays) == set(reference_ctx.arrays), "arrays lost or added by the resume"
    for name, group in reference_ctx.arrays.items():
        assert set(resumed_ctx.arrays[name]) == set(group), f"arrays of {name!r} lost by the resume"
        for k, v in group.items():
            got = resumed_ctx.arrays[name][k]
            assert got.dtype == v.dtype and np.array_equal(got, v, equal_nan=True), f"{name}/{k} differs on resume"
    return reference, resumed, resumed_ctx, tmp / "killed" / "ckpt"
