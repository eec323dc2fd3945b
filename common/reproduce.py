"""`repro reproduce <paper>` (what `make <paper>` runs): run a tier's seeds afresh on this machine, judge
the paper's claims on those runs, and print the verdicts beside the committed reference.

The fresh records go to their own folder (default `local-results/`, not committed), so they never mix
with the reference records in `results/`, which `repro check` and the report keep judging.
"""
from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from common.checks import Verdict, check_paper
from common.papers import ROOT, UsageError, get_paper
from common.records import scan
from common.sweep import plan, run_sweep

LOCAL_RESULTS = ROOT / "local-results"


@contextmanager
def _results_in(folder: Path):
    """Point the harness (and the sweep's subprocesses) at `folder` for the duration."""
    saved = os.environ.get("REPRO_RESULTS_DIR")
    os.environ["REPRO_RESULTS_DIR"] = str(folder)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("REPRO_RESULTS_DIR", None)
        else:
            os.environ["REPRO_RESULTS_DIR"] = saved


def expected_minutes(paper: str, tier: str, seeds: int, workers: int, reference: Path) -> float | None:
    """From the reference records' wall time per seed: waves of `workers` seeds, each as long as one
    seed took there (those records were mostly run side by side too); None without reference runs."""
    with _results_in(reference):
        runs, _ = scan(paper, tier)
    walls = [r.record["wall_time_s"] for r in runs if r.record["status"] == "ok" and not r.record["overrides"]]
    if not walls:
        return None
    return math.ceil(seeds / workers) * sum(walls) / len(walls) / 60


def verdict_table(fresh: list[Verdict], reference: list[Verdict]) -> pd.DataFrame:
    by_id = {v.claim.id: v for v in reference}
    rows = []
    for v in fresh:
        ref = by_id.get(v.claim.id)
        rows.append({"claim": v.claim.id, "kind": v.claim.kind,
                     "paper": "—" if v.claim.paper_value is None else str(v.claim.paper_value),
                     "ours (this machine)": v.ours, "seeds passing": v.seeds or "-", "status": v.status,
                     "committed": f"{ref.status}: {ref.ours}" if ref else "—",
                     "as recorded": "yes" if v.matches else "NO"})
    return pd.DataFrame(rows)


def reproduce(paper_name: str, tier: str = "cpu", workers: int = 3, results: Path | None = None,
              resume: bool = False, device: str = "auto") -> int:
    """Run, judge, print; 0 when every claim has the status expected.yaml records, else 1."""
    paper = get_paper(paper_name)
    if not paper.implemented:
        raise UsageError(f"paper {paper_name!r} is planned, not implemented yet")
    folder = Path(results) if results else LOCAL_RESULTS
    reference = ROOT / "results"
    if folder.resolve() == reference.resolve():
        raise UsageError(f"--results {folder}: that is the committed reference folder; give another")
    jobs = plan([paper_name], tier, None, [], [])
    seeds = sorted({j.seed for j in jobs})
    minutes = expected_minutes(paper_name, tier, len(seeds), workers, reference)
    cores = os.cpu_count() or 1
    guess = f"about {minutes:.0f} min on this machine's {cores} core(s)" if minutes is not None else \
        "no reference runs to estimate from"
    print(f"{paper_name}/{tier}: {len(jobs)} run(s) (seeds {', '.join(map(str, seeds))}), {workers} side by side, "
          f"{'resuming' if resume else 'afresh'}, records to {folder}; {guess}", flush=True)
    clock = time.perf_counter()
    with _results_in(folder):
        counts = run_sweep(jobs, workers=workers, device=device, skip_done=resume)
        fresh = check_paper(paper, tier)
    with _results_in(reference):
        committed = check_paper(paper, tier)
    table = verdict_table(fresh.verdicts, committed.verdicts)
    with pd.option_context("display.max_colwidth", 60, "display.width", 250):
        print(table.to_string(index=False) if not table.empty else f"no claims have a check at tier {tier}")
    for problem in fresh.errors:
        print(f"error: {problem}")
    reproductions = [v for v in fresh.verdicts if v.claim.kind == "reproduction"]
    reproduced = sum(v.status == "reproduced" for v in reproductions)
    as_recorded = sum(v.matches for v in fresh.verdicts)
    elapsed = time.perf_counter() - clock
    print(f"{paper_name}: {reproduced} of {len(reproductions)} reproduction claims reproduced on this machine; "
          f"{as_recorded} of {len(fresh.verdicts)} claims as expected.yaml records "
          f"({counts['failed']} run(s) failed); {int(elapsed // 60)} min {int(elapsed % 60)} s")
    return 0 if as_recorded == len(fresh.verdicts) and not fresh.errors and not counts["failed"] else 1
