"""Results as data: `repro export` (one row per run and metric, for pandas) and `repro show <paper>`
(a paper's claim table in the terminal)."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from common.checks import check_paper
from common.config import check_tier
from common.papers import UsageError, get_paper, implemented_papers
from common.records import judged_runs, scan

FORMATS = ("csv", "parquet")


def run_metric_rows(tier: str) -> pd.DataFrame:
    """Every committed record of `tier` (judged or not), one row per metric, with where it came from.
    A run that ended without metrics (diverged, failed) has one row with no metric."""
    rows = []
    for paper in implemented_papers():
        runs, _ = scan(paper.name, tier)
        judged = {r.path for r in judged_runs(runs, paper.runner(), tier)[0]}
        for run in runs:
            r = run.record
            hardware = r.get("hardware") or {}
            base = {"paper": paper.name, "tier": tier, "point": run.point, "seed": run.seed, "run_id": r["run_id"],
                    "status": r["status"], "judged": run.path in judged, "pilot": run.pilot,
                    "overrides": bool(r["overrides"]), "commit": (r["git"] or {}).get("commit"),
                    "dirty": (r["git"] or {}).get("dirty"), "device": hardware.get("device"),
                    "cpu": hardware.get("cpu"), "gpu": hardware.get("gpu"),
                    "torch_threads": hardware.get("torch_threads"), "wall_time_s": r["wall_time_s"],
                    "started_at": r["started_at"]}
            metrics = r["metrics"] or {None: None}
            rows += [{**base, "metric": name, "value": value} for name, value in metrics.items()]
    return pd.DataFrame(rows)


def export(tier: str, fmt: str, out: Path | None) -> int:
    check_tier(tier)
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: valid formats: {', '.join(FORMATS)}")
    frame = run_metric_rows(tier)
    if fmt == "csv":
        frame.to_csv(out or sys.stdout, index=False)
        return 0
    if out is None:
        raise UsageError("--format parquet writes a file: give --out results.parquet")
    try:
        frame.to_parquet(out, index=False)
    except ImportError:
        raise UsageError("--format parquet needs pyarrow: pip install 'repro-suite[export]'") from None
    return 0


def show(paper_name: str, tier: str) -> int:
    """The paper's claims at `tier`, judged on the committed records, as a terminal table."""
    check_tier(tier)
    paper = get_paper(paper_name)
    if not paper.implemented:
        raise UsageError(f"paper {paper_name!r} is planned, not implemented yet")
    result = check_paper(paper, tier)
    rows = [{"claim": v.claim.id, "kind": v.claim.kind, "rule": v.claim.rule,
             "paper": "—" if v.claim.paper_value is None else str(v.claim.paper_value),
             "ours": v.ours, "seeds passing": v.seeds or "-",
             "status": v.status} for v in result.verdicts]
    with pd.option_context("display.max_colwidth", 70, "display.width", 250):
        print(pd.DataFrame(rows).to_string(index=False) if rows else f"no claims have a check at tier {tier}")
    for problem in result.errors:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if result.errors else 0
