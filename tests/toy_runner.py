"""A tiny runner obeying the paper contract, for tests of the harness itself."""
import os
import time

import torch


class Killed(BaseException):
    """Stands in for a killed process: not an Exception, so no record is written."""

CONFIG = {"steps": 6, "lr": 0.5, "blow_up_at": -1, "fail": False, "label": "toy",
          "widths": [4, 8]}
TIERS = {"smoke": {"steps": 4}, "cpu": {}, "paper": {"steps": 10}}
SEEDS = {"smoke": 1, "cpu": 3, "paper": 1}
FEW_STEPS = {"steps": 2}
LIBRARIES = ("scipy",)
DATASETS = ()


def run(cfg, ctx):
    state = ctx.restore("train") or {"step": 0, "x": torch.randn(3)}
    x = state["x"]
    for step in ctx.progress(range(state["step"], cfg["steps"]), desc="toy"):
        if step == int(os.environ.get("TOY_KILL_AT", -1)):
            raise Killed
        if cfg["fail"]:
            raise RuntimeError("toy failure")
        time.sleep(float(os.environ.get("TOY_STEP_SLEEP", 0)))  # a slow job, for tests of concurrent sweeps
        x = x - cfg["lr"] * x + 0.01 * torch.randn(3)
        loss = float("nan") if step == cfg["blow_up_at"] else float((x ** 2).sum())
        ctx.log(step, model=cfg["label"], loss=loss)
        ctx.checkpoint("train", {"step": step + 1, "x": x})
    ctx.record_throughput("steps_per_s", 100.0)
    ctx.save_arrays("final", x=x)
    return {"loss": float((x ** 2).sum()), "norm": float(x.norm())}
