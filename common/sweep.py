"""`repro sweep`: fan out paper x point x seed (x --grid values), locally in a process pool or on
Slurm via submitit.

Jobs run in waves: the points that produce artifacts before the points that consume them (and a
consumer's producer run is added to the sweep when it is not already in it). Runs whose record
already exists (same paper, tier, point, seed and resolved config, status ok) are skipped, and every
job runs with --resume, so an interrupted sweep continues where it stopped. A done producer whose
artifact a job still to run needs, but which the cache lacks (a fresh clone, a cleared cache), runs
again in its wave, once, rather than inside each of its consumers.

Sweeps started side by side (on one machine, or on hosts sharing the project folder) split the work:
a sweep claims each job by creating its lock file atomically (`.cache/locks/<job>.lock`, holding the
owner's host and pid, touched every minute while it runs) and skips a job another sweep holds; it
waits for those at the end of the wave and then counts them as done elsewhere, or runs them itself if
their owner failed. A lock is taken over when its owner process is gone (same host) or when it has not
been touched for 10 minutes (any host: a sweep killed with its machine).
"""
from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm.auto import tqdm

from common import config as configs
from common import artifacts
from common.artifacts import cache_root
from common.experiments import depth, get_point, tier_points
from common.papers import ROOT, UsageError, get_paper
from common.records import scan, withdrawn
from common.runs import TIER_THREADS, prepare, verify_datasets

LAUNCHERS = ("local", "slurm")


@dataclass(frozen=True)
class Job:
    paper: str
    tier: str
    seed: int
    overrides: tuple[tuple[str, object], ...]
    point: str | None = None
    wave: int = 0  # 0: needs no artifact; n: needs one made in wave n - 1
    pilot: bool = False  # its record is tagged a pilot: kept and listed, never judged

    def override_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.overrides}

    def sets(self) -> list[str]:
        def text(v):
            return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
        return [f"{k}={text(v)}" for k, v in self.overrides]

    def __str__(self) -> str:
        extra = " ".join(self.sets())
        where = f"{self.paper}/{self.tier}" + (f"/{self.point}" if self.point else "")
        return f"{where}/s{self.seed}" + (f" {extra}" if extra else "")


def plan(papers: list[str], tier: str, seeds: list[int] | None, sets: list[str], grid: list[str],
         points: list[str] | None = None, pilot: bool = False) -> list[Job]:
    """Every (paper, point, seed, grid value) job, after validating names, tier, points and values
    (each job's resolved config passes its runner's validate()). `seeds=None`: the tier's count."""
    configs.check_tier(tier)
    jobs: list[Job] = []
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
        all_points = tier_points(runner, tier)
        chosen = [get_point(runner, tier, p) for p in points] if points else all_points
        if points and not all_points:
            raise UsageError(f"--point: {name} has no points at tier {tier}")
        paper_seeds = seeds if seeds is not None else list(range(runner.SEEDS[tier]))
        for values in itertools.product(*axes):
            overrides = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                     for k, v in {**fixed, **dict(values)}.items()))
            for point in chosen or [None]:
                for seed in (paper_seeds if point is None or point.seeds is None
                             else [s for s in point.seeds if s in paper_seeds]):
                    jobs += _with_producers(Job(name, tier, seed, overrides, point and point.name), runner,
                                            all_points)
    unique = list(dict.fromkeys(replace(job, pilot=pilot) for job in jobs))
    for job in unique:  # bad values fail here, before any job starts
        prepare(job.paper, job.tier, job.override_dict(), job.point)
    for name in papers:  # and missing or corrupt data: one line, not a failed job per seed
        verify_datasets(get_paper(name).runner())
    return sorted(unique, key=lambda j: j.wave)


def _with_producers(job: Job, runner, points) -> list[Job]:
    """The job, after the jobs that make the artifacts it needs (recursively), each in its wave."""
    if job.point is None:
        return [job]
    point = next(p for p in points if p.name == job.point)
    before = []
    for needs in point.requires.values():
        seed = job.seed if needs.seed is None else needs.seed
        before += _with_producers(Job(job.paper, job.tier, seed, job.overrides, needs.point), runner, points)
    return before + [Job(job.paper, job.tier, job.seed, job.overrides, job.point, depth(point, points))]


def already_done(job: Job) -> bool:
    runner, _, cfg = prepare(job.paper, job.tier, job.override_dict(), job.point)
    overrides = configs._as_json(job.override_dict())
    runs, _ = scan(job.paper, job.tier)
    gone = withdrawn()
    return any(r.record["status"] == "ok" and r.path.name not in gone and r.seed == job.seed and r.point == job.point and r.pilot == job.pilot
               and configs.same_config(runner, r.record["config"], cfg) and r.record["overrides"] == overrides
               for r in runs)


def missing_artifacts(job: Job, todo: list[Job]) -> list[str]:
    """The artifacts `job` publishes that a job in `todo` requires and the cache does not hold intact."""
    points = {p.name: p for p in tier_points(get_paper(job.paper).runner(), job.tier)}
    names = {name for consumer in todo if consumer.point and consumer.overrides == job.overrides
             for name, needs in points[consumer.point].requires.items()
             if needs.point == job.point and (consumer.seed if needs.seed is None else needs.seed) == job.seed}
    if not names:
        return []
    _, _, cfg = prepare(job.paper, job.tier, job.override_dict(), job.point)
    return sorted(n for n in names if artifacts.lookup(job.paper, n, artifacts.address(job.paper, n, cfg, job.seed)) is None)


def _jobs_to_run(jobs: list[Job]) -> list[Job]:
    """The jobs without a record, and the done producers whose artifacts those jobs need but the cache
    lacks (recursively: a rebuilt producer may need its own producer's artifact)."""
    done = [j for j in jobs if already_done(j)]
    todo = [j for j in jobs if j not in done]
    while rebuild := [j for j in done if j not in todo and missing_artifacts(j, todo)]:
        todo += rebuild
    return sorted(todo, key=jobs.index)


# -- claiming jobs ------------------------------------------------------------------------------------
TAKEOVER_SETTLE_S = 0.2   # after creating a lock, how long to wait before checking it is still ours
POLL_S = 5.0              # how often a sweep looks at jobs another sweep holds
HEARTBEAT_S = 60.0        # a live sweep touches its locks this often ...
EXPIRE_S = 600.0          # ... so a lock untouched this long is abandoned, whichever host wrote it
_held: set[Path] = set()  # the locks this process holds, kept fresh by the heartbeat


def _heartbeat() -> None:
    while True:
        time.sleep(HEARTBEAT_S)
        for lock in list(_held):
            try:
                os.utime(lock)
            except FileNotFoundError:
                pass


_heartbeat_thread = threading.Thread(target=_heartbeat, name="sweep-lock-heartbeat", daemon=True)


def job_name(job: Job) -> str:
    """A file name unique to the job: paper, tier, point, seed and the hash of its resolved config."""
    _, _, cfg = prepare(job.paper, job.tier, job.override_dict(), job.point)
    tag = f"{job.paper}-{job.tier}-{job.point or 'tier'}-s{job.seed}-{configs.config_hash(cfg)}"
    return tag.replace("/", "_").replace(",", "_") + ("-pilot" if job.pilot else "")


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}


def _abandoned(path: Path) -> bool:
    """True when the lock's owner is gone: a process of this host that no longer exists, or any owner
    whose heartbeat stopped `EXPIRE_S` ago (a sweep killed on a host that is gone too)."""
    try:
        if time.time() - path.stat().st_mtime > EXPIRE_S:
            return True
        owner = json.loads(path.read_text())
    except FileNotFoundError:
        return False  # released meanwhile: the next claim creates it afresh
    except (OSError, ValueError):  # being written, or a broken file: abandoned only once it is old
        return False
    if owner.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, TypeError, ValueError):
        return False
    return False


def claim(job: Job) -> Path | None:
    """The job's lock if this sweep now owns it; None while another live sweep holds it."""
    path = cache_root() / "locks" / f"{job_name(job)}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    me = _owner()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if not _abandoned(path):
                return None
            path.unlink(missing_ok=True)  # its owner is gone: take it over
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        time.sleep(TAKEOVER_SETTLE_S)  # two sweeps taking over one dead lock: the later writer wins
        try:
            mine = json.loads(path.read_text()).get("token") == me["token"]
        except (OSError, ValueError):
            mine = False
        if mine:
            _held.add(path)
            if not _heartbeat_thread.is_alive():
                _heartbeat_thread.start()
        return path if mine else None
    return None


def release(lock: Path) -> None:
    _held.discard(lock)
    lock.unlink(missing_ok=True)


def _local(job: Job, threads: int, device: str, log_dir: Path) -> tuple[Job, int]:
    command = [sys.executable, "-m", "common", "run", job.paper, "--tier", job.tier, "--seed", str(job.seed),
               "--threads", str(threads), "--device", device, "--resume", "--quiet"]
    if job.point:
        command += ["--point", job.point]
    if job.pilot:
        command.append("--pilot")
    for item in job.sets():
        command += ["--set", item]
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{job_name(job)}.log", "w") as out:
        code = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)}).returncode
    return job, code


def _submitit_job(job: Job, device: str, threads: int) -> str:
    """What a Slurm (or submitit-local) task runs: one seed of one point, in process."""
    from common.runs import run_one
    record = run_one(job.paper, job.tier, job.seed, job.override_dict(), device=device, resume=True,
                     threads=threads, quiet=True, point=job.point, pilot=job.pilot)
    return record["status"]


def _waves(jobs: list[Job]) -> list[list[Job]]:
    return [list(group) for _, group in itertools.groupby(sorted(jobs, key=lambda j: j.wave), key=lambda j: j.wave)]


def run_sweep(jobs: list[Job], workers: int = 1, launcher: str = "local", device: str = "auto",
              threads: int | None = None, executor=None, slurm_options: dict | None = None,
              skip_done: bool = True) -> dict[str, int]:
    """Run the jobs not done yet (every job when `skip_done` is False), wave by wave; returns counts:
    done (here), skipped (already in results), elsewhere (run meanwhile by another sweep) and failed.
    `executor` overrides submitit's (the tests pass a submitit LocalExecutor)."""
    if launcher not in LAUNCHERS:
        raise UsageError(f"unknown launcher {launcher!r}; valid launchers: {', '.join(LAUNCHERS)}")
    if workers < 1:
        raise UsageError(f"--workers {workers}: must be at least 1")
    todo = _jobs_to_run(jobs) if skip_done else list(jobs)
    counts = {"skipped": len(jobs) - len(todo), "done": 0, "elsewhere": 0, "failed": 0}
    tier = jobs[0].tier if jobs else "paper"  # a sweep runs one tier
    threads = threads or TIER_THREADS[tier] or max(1, (os.cpu_count() or 1) // workers)
    if launcher == "slurm" and executor is None:
        import submitit
        executor = submitit.AutoExecutor(folder=cache_root() / "submitit", cluster="slurm")
        executor.update_parameters(cpus_per_task=threads, timeout_min=60, **(slurm_options or {}))
    waiting: set[Job] = set()
    with tqdm(total=len(todo), desc="sweep") as bar:
        for wave in _waves(todo):
            pending = wave
            while pending:
                mine, held = [], []
                for job in pending:
                    lock = claim(job)
                    if lock is None:
                        held.append(job)
                    elif skip_done and already_done(job) and not missing_artifacts(job, todo):
                        # another sweep finished it before we claimed it
                        release(lock)
                        counts["elsewhere"] += 1
                        bar.update()
                    else:
                        mine.append((job, lock))
                locks = dict(mine)
                batch = [job for job, _ in mine]
                outcomes = (_run_local(batch, workers, threads, device) if launcher == "local"
                            else _run_submitit(batch, executor, device, threads))
                for job, ok, why in outcomes:
                    release(locks[job])
                    counts["done" if ok else "failed"] += 1
                    if not ok:
                        tqdm.write(f"{job}: {why}")
                    bar.update()
                for job in set(held) - set(waiting):
                    tqdm.write(f"{job}: another sweep holds it ({cache_root() / 'locks' / job_name(job)}.lock); "
                               "waiting for it")
                waiting.update(held)
                if held:
                    time.sleep(POLL_S)
                pending = held
    return counts


def _run_local(wave: list[Job], workers: int, threads: int, device: str):
    if not wave:
        return
    log_dir = cache_root() / "logs"
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(_local, job, threads, device, log_dir) for job in wave]
        for future in as_completed(futures):
            job, code = future.result()
            yield job, code == 0, f"exit code {code}, see {log_dir}"


def _run_submitit(wave: list[Job], executor, device: str, threads: int):
    if not wave:
        return
    submitted = [(job, executor.submit(_submitit_job, job, device, threads)) for job in wave]
    for job, handle in submitted:
        try:
            status = handle.result()
        except Exception as err:  # a task that crashed outright: report it, keep collecting the rest
            yield job, False, f"{type(err).__name__}: {err}"
            continue
        yield job, status != "failed", f"run {status}"
