"""Running one seed of one paper at one tier (and one experiment point), and writing its run record."""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import random
import shutil
import subprocess
import sys
import traceback
import uuid

import numpy as np
import torch

from common import artifacts
from common import config as configs
from common.context import Diverged, RunContext
from common.experiments import Point, get_point
from common.data import REGISTRY, DatasetError, dataset_file
from common.papers import ROOT, UsageError, get_paper
from common.records import results_dir, write_run

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise UsageError(f"unknown device {name!r}; valid devices: {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is visible to torch")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: MPS is not available")
    return torch.device(name)


def git_state(paper: str | None = None) -> dict:
    """The commit the code came from, and whether the code a run uses differed from it.

    For a paper's run that code is the harness, the paper's own folder and the project file;
    without a paper, everything but results/ and report/.
    """
    def git(*args):
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None
    commit = git("rev-parse", "HEAD")
    if paper:
        paths = ["common", f"reproductions/{paper}", "reproductions/__init__.py", "pyproject.toml"]
    else:
        paths = [".", ":(exclude)results", ":(exclude)report"]
    status = git("status", "--porcelain", "--", *paths)
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def hardware(device: torch.device) -> dict:
    """What ran where: the device the models and batches were put on, and the machine around it."""
    info = {"device": device.type, "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform()}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        info.update(gpu=torch.cuda.get_device_name(index), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    gpu_count=torch.cuda.device_count(), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), driver=_nvidia_driver())
    elif device.type == "mps":
        info["gpu"] = "Apple MPS"
    return info


def versions(libraries: tuple[str, ...]) -> dict:
    found = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for name in libraries:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def checkpoint_dir(paper: str, tier: str, seed: int, chash: str, point: str | None = None):
    """One folder per (paper, tier, point, seed, resolved config): no two jobs share one."""
    return artifacts.cache_root() / "checkpoints" / paper / tier / f"s{seed}-{point or 'tier'}-{chash}"


def _start_wandb(paper: str, run_id: str, cfg: dict):
    try:
        import wandb
    except ImportError:
        raise UsageError("--wandb: wandb is not installed; pip install 'repro-suite[wandb]'") from None
    os.environ.setdefault("WANDB_MODE", "offline")  # never needs an account unless the user opts in
    return wandb.init(project="repro", group=paper, name=run_id, config=cfg,
                      dir=str(ROOT / ".cache"), reinit=True)


def prepare(paper_name: str, tier: str, overrides: dict | None = None, point: str | None = None):
    """(runner, point, resolved config) after every check of the user's input: paper, tier, point,
    keys, types and the runner's own `validate`. Raises UsageError before anything runs."""
    paper = get_paper(paper_name)
    if not paper.implemented:
        raise UsageError(f"paper {paper_name!r} is planned, not implemented yet")
    runner = paper.runner()
    configs.check_tier(tier)
    chosen = get_point(runner, tier, point)
    cfg = configs.resolve(runner, tier, dict(overrides or {}), chosen)
    configs.validate(runner, cfg)
    return runner, chosen, cfg


def _artifact_hooks(ctx: RunContext, paper: str, tier: str, point: Point | None, cfg: dict, seed: int,
                    overrides: dict, run_id: str, device: str, threads: int | None):
    """publish() stores under this run's address; require() finds (or has the producer build) the
    artifact a point's `requires` names."""
    def publish(name, value):
        meta = artifacts.store(paper, name, artifacts.address(paper, name, cfg, seed), value,
                               {"paper": paper, "tier": tier, "point": ctx.point, "seed": seed,
                                "config_hash": configs.config_hash(cfg), "run_id": run_id})
        return {k: meta[k] for k in ("address", "sha256", "kind")}

    def provide(name):
        needs = (point.requires if point else {}).get(name)
        if needs is None:
            raise RuntimeError(f"require({name!r}): point {ctx.point!r} does not list it in its requires")
        producer_seed = seed if needs.seed is None else needs.seed
        _, producer, producer_cfg = prepare(paper, tier, overrides, needs.point)
        addr = artifacts.address(paper, name, producer_cfg, producer_seed)
        if artifacts.lookup(paper, name, addr) is None:  # missing or corrupt: its producer rebuilds it
            with _isolated_random_streams():
                record = run_one(paper, tier, producer_seed, overrides, device=device, resume=True,
                                 threads=threads, quiet=True, point=needs.point)
            if record["status"] != "ok" or artifacts.lookup(paper, name, addr) is None:
                raise RuntimeError(f"artifact {name!r}: producer {needs.point}/s{producer_seed} "
                                   f"ended {record['status']} without publishing it ({record['reason']})")
        meta = artifacts.lookup(paper, name, addr)
        value = artifacts.load(paper, name, addr, ctx.device)
        return value, {"address": addr, "sha256": meta["sha256"], "point": needs.point,
                       "seed": producer_seed, "run_id": meta.get("run_id")}

    ctx.publisher, ctx.provider = publish, provide


class _isolated_random_streams:
    """A producer run inside a consumer must not move the consumer's random streams."""

    def __enter__(self):
        from common.context import _rng_state
        self.state = _rng_state()

    def __exit__(self, *exc):
        from common.context import _set_rng_state
        _set_rng_state(self.state)
        return False


def verify_datasets(runner) -> None:
    """Every file of every dataset the paper uses is present and has its checksum (DatasetError if not)."""
    for name in runner.DATASETS:
        for filename in REGISTRY[name]:
            dataset_file(name, filename)


# torch threads per run when none is asked for. Results differ in the last bits between thread counts,
# so the smoke and cpu tiers always run on one (as their committed records did), and a user's rerun
# gets the record's numbers; the paper tier takes torch's default (all cores). The record says which.
TIER_THREADS = {"smoke": 1, "cpu": 1, "paper": None}


def run_one(paper_name: str, tier: str, seed: int, overrides: dict | None = None, device: str = "auto",
            resume: bool = False, use_wandb: bool = False, threads: int | None = None,
            quiet: bool = False, point: str | None = None, pilot: bool = False) -> dict:
    """Run one seed (of one point, if the tier has points) and write its record; returns the record.
    A `pilot` run (one that shaped a tier: a learning rate, a budget, a threshold) is tagged so: kept
    and listed by the report, never judged. Bad input raises UsageError before anything runs or is
    written."""
    overrides = dict(overrides or {})
    runner, chosen, cfg = prepare(paper_name, tier, overrides, point)
    torch_device = pick_device(device)
    threads = threads or TIER_THREADS[tier]
    if threads:
        torch.set_num_threads(threads)
    verify_datasets(runner)  # before anything runs or is written
    code = git_state(paper_name)  # before the run: edits made while it runs are not its code
    chash = configs.config_hash(cfg)
    started = dt.datetime.now(dt.timezone.utc)
    run_id = f"{started:%Y%m%dT%H%M%S}-s{seed}-{chash}-{uuid.uuid4().hex[:6]}"
    ckpt = checkpoint_dir(paper_name, tier, seed, chash, chosen.name if chosen else None)
    ctx = RunContext(paper=paper_name, tier=tier, seed=seed, device=torch_device, checkpoint_dir=ckpt,
                     artifact_prefix=results_dir() / paper_name / tier / run_id, resume=resume,
                     show_progress=not quiet, point=chosen.name if chosen else None)
    _artifact_hooks(ctx, paper_name, tier, chosen, cfg, seed, overrides, run_id, device, threads)
    if use_wandb:
        ctx.wandb_run = _start_wandb(paper_name, run_id, cfg)

    seed_everything(seed)
    status, reason, metrics, diverged = "ok", None, {}, None
    ctx.begin_segment()
    try:
        returned = runner.run(configs.merge(cfg, {}), ctx)
        for name, value in returned.items():
            metrics[name] = float(value)
            if not np.isfinite(metrics[name]):
                raise Diverged(-1, name, metrics[name])
    except Diverged as err:
        where = "in the final metrics" if err.step < 0 else f"at step {err.step}"
        status, reason, metrics = "diverged", f"{err.name} = {err.value} {where}", {}
        diverged = {"name": err.name, "step": None if err.step < 0 else err.step}
    except (KeyboardInterrupt, UsageError, DatasetError):
        raise
    except Exception as err:  # the run's own failure is a result too; its record says why
        status, reason, metrics = "failed", f"{type(err).__name__}: {err}", {}
        traceback.print_exc(file=sys.stderr)
    wall = ctx.end_segment()
    if ctx.wandb_run is not None:
        ctx.wandb_run.finish()

    record = {
        "run_id": run_id, "paper": paper_name, "tier": tier, "seed": seed,
        "point": chosen.name if chosen else None, "labels": dict(chosen.labels) if chosen else {},
        "config": cfg, "overrides": overrides, "config_hash": chash, "tags": ["pilot"] if pilot else [],
        "metrics": metrics, "undefined": ctx.undefined, "status": status, "reason": reason, "diverged": diverged,
        "git": code, "started_at": ctx.segments[0]["started_at"],
        "wall_time_s": wall, "segments": ctx.segments, "stage_seconds": ctx.stage_seconds,
        "hardware": hardware(torch_device), "versions": versions(tuple(runner.LIBRARIES)),
        "throughput": ctx.throughput, "artifacts": ctx.artifacts,
        # a runner measures its rates over the steps this process ran: after a resume, the last segment's
        "throughput_covers": "the whole run" if len(ctx.segments) == 1 else "the last segment",
    }
    write_run(record, ctx.curves, ctx.arrays if status == "ok" else {})  # adds the record's sha256
    shutil.rmtree(ckpt, ignore_errors=True)  # a finished run, whatever its status, is not resumed
    return record
