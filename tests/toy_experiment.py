"""A toy paper with an experiment, for tests of the harness: a "pretrain" point publishes a weight
vector, and two "probe" points (at two label counts) require it and fit on top of it."""
import os

import torch

from common.experiments import Needs, Point, grid
from common.papers import UsageError

CONFIG = {"stage": "probe", "steps": 5, "labels": 10, "dim": 3}
TIERS = {"smoke": {}, "cpu": {"steps": 8}}
FEW_STEPS = {"steps": 2}
LIBRARIES = ()
DATASETS = ()

_PRETRAIN = Point("pretrain", {"stage": "pretrain"}, {"stage": "pretrain"})
_PROBES = grid(labels={"10": {"labels": 10}, "40": {"labels": 40}},
               requires={"encoder": Needs("pretrain")})
POINTS = {"smoke": [_PRETRAIN, *_PROBES], "cpu": [_PRETRAIN, *_PROBES]}


def validate(cfg):
    if cfg["stage"] not in ("pretrain", "probe"):
        raise UsageError(f"stage must be pretrain or probe, got {cfg['stage']!r}")
    if cfg["steps"] < 1:
        raise UsageError(f"steps must be >= 1, got {cfg['steps']}")


def run(cfg, ctx):
    if cfg["stage"] == "pretrain":
        weights = ctx.stage("fit", lambda: {"w": torch.randn(cfg["dim"], device=ctx.device)})["w"]
        ctx.log(0, norm=float(weights.norm()))
        ctx.publish("encoder", {"w": weights})
        return {"norm": float(weights.norm())}
    encoder = ctx.require("encoder")["w"]
    state = ctx.restore("probe") or {"step": 0, "acc": 0.0}
    for step in range(state["step"], cfg["steps"]):
        if step == int(os.environ.get("TOY_KILL_AT", -1)):
            raise SystemExit(9)  # a killed process: no record
        acc = 1 - 1 / (1 + cfg["labels"] * (step + 1)) + 0.001 * float(encoder.sum())
        ctx.log(step, acc=acc)
        ctx.checkpoint("probe", {"step": step + 1, "acc": acc})
        state["acc"] = acc
    return {"acc": state["acc"], "encoder_sum": float(encoder.sum())}
