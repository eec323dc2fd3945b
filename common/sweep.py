"""`repro sweep`: fan out paper x seed x config, locally in a process pool or on Slurm via submitit.

Runs whose record already exists (same paper, tier, seed and resolved config, status ok) are skipped,
so an interrupted sweep resumes where it stopped.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from common import config as configs
from common.papers import ROOT, UsageError, get_paper
from common.records import scan

LAUNCHERS = ("local", "slurm")


@dataclass(frozen=True)
class Job:
    paper: str
    tier: str
    seed: int
    overrides: tuple[tuple[str, object], ...]

    def sets(self) -> list[str]:
        def text(v):
            return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
        return [f"{k}={text(v)}" for k, v in self.overrides]

    def __str__(self) -> str:
        extra = " ".join(self.sets())
        return f"{self.paper}/{self.tier}/s{self.seed}" + (f" {extra}" if extra else "")


def plan(papers: list[str], tier: str, seeds: list[int], sets: list[str], grid: list[str]) -> list[Job]:
    """Every (paper, seed, grid point) job, after validating names, tier and values."""
    configs.check_tier(tier)
    jobs = []
    for name in papers:
        paper = get_paper(name)
        if not paper.implemented:
            raise UsageError(f"paper {name!r} is planned, not implemented yet")
        runner = paper.runner()
        fixed = configs.parse_sets(runner, sets)
        axes = []
        for item in grid:
            key, sep, values = item.partition("=")
            if not sep or not values:
                raise UsageError(f"--grid {item!r}: expected key=v1,v2,...")
            parsed = [configs.parse_sets(runner, [f"{key}={v}"])[key] for v in values.split(",")]
            axes.append([(key, v) for v in parsed])
        for point in itertools.product(*axes):
            overrides = {**fixed, **dict(point)}
            for seed in seeds:
                jobs.append(Job(name, tier, seed, tuple(sorted(overrides.items()))))
    return jobs


def already_done(job: Job) -> bool:
    runner = get_paper(job.paper).runner()
    overrides = dict(job.overrides)
    chash = configs.config_hash(configs.resolve(runner, job.tier, overrides))
    runs, _ = scan(job.paper, job.tier)
    return any(r.record["status"] == "ok" and r.seed == job.seed and r.record["config_hash"] == chash
               and r.record["overrides"] == overrides for r in runs)


def _local(job: Job, threads: int, device: str, log_dir: Path) -> tuple[Job, int]:
    command = [sys.executable, "-m", "common", "run", job.paper, "--tier", job.tier, "--seed", str(job.seed),
               "--threads", str(threads), "--device", device, "--resume", "--quiet"]
    for item in job.sets():
        command += ["--set", item]
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{job.paper}-{job.tier}-s{job.seed}-{abs(hash(job.overrides)) % 10**8}.log"
    with open(log, "w") as out:
        code = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)}).returncode
    return job, code


def _submitit_job(job: Job, device: str, threads: int) -> str:
    """What a Slurm (or submitit-local) task runs: one seed, in process."""
    from common.runs import run_one
    record = run_one(job.paper, job.tier, job.seed, dict(job.overrides), device=device, resume=True,
                     threads=threads, quiet=True)
    return record["status"]


def run_sweep(jobs: list[Job], workers: int = 1, launcher: str = "local", device: str = "auto",
              threads: int | None = None, executor=None, slurm_options: dict | None = None) -> dict[str, int]:
    """Run the jobs not done yet; returns counts of done/skipped/failed. `executor` overrides submitit's."""
    if launcher not in LAUNCHERS:
        raise UsageError(f"unknown launcher {launcher!r}; valid launchers: {', '.join(LAUNCHERS)}")
    if workers < 1:
        raise UsageError(f"--workers {workers}: must be at least 1")
    todo = [j for j in jobs if not already_done(j)]
    counts = {"skipped": len(jobs) - len(todo), "done": 0, "failed": 0}
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    if launcher == "local":
        log_dir = ROOT / ".cache" / "logs"
        with ThreadPoolExecutor(workers) as pool, tqdm(total=len(todo), desc="sweep") as bar:
            futures = [pool.submit(_local, job, threads, device, log_dir) for job in todo]
            for future in as_completed(futures):
                job, code = future.result()
                counts["done" if code == 0 else "failed"] += 1
                if code != 0:
                    tqdm.write(f"{job}: exit code {code}, see {log_dir}")
                bar.update()
        return counts
    import submitit
    if executor is None:
        executor = submitit.AutoExecutor(folder=ROOT / ".cache" / "submitit", cluster="slurm")
        executor.update_parameters(cpus_per_task=threads, timeout_min=60, **(slurm_options or {}))
    submitted = [(job, executor.submit(_submitit_job, job, device, threads)) for job in todo]
    for job, handle in tqdm(submitted, desc="sweep"):
        try:
            status = handle.result()
        except Exception as err:  # a task that crashed outright: report it, keep collecting the rest
            tqdm.write(f"{job}: {type(err).__name__}: {err}")
            status = "failed"
        counts["done" if status != "failed" else "failed"] += 1
    return counts
