"""REPORT.md: the report as Markdown, for reading on GitHub (statuses as emoji, tables as pipe tables)."""
from __future__ import annotations

import pandas as pd

from common.checks import KINDS, Verdict
from common.papers import TIER_NAMES
from common.report import (EXPERIMENT_INTRO, HOW_TO_READ, MATRIX_INTRO, NO_RUNS, NO_UNFINISHED, PILOTS_INTRO,
                           SUPERSEDED_INTRO, UNFINISHED_INTRO, Figures, PaperReport, Report, claim_name,
                           ours_with_seeds, paper_value, status_note)

STATUS_LABEL = {"reproduced": "✅ reproduced", "not_reproduced": "❌ not reproduced", "not_run": "⚪ not run",
                "planned": "⏳ not implemented yet"}


def render_markdown(report: Report) -> str:
    blocks = ["# Reproduction report", report.generated_line(), "How to read it:\n" + HOW_TO_READ,
              "## At a glance (cpu tier)", report.headline(), _table(pd.DataFrame(_glance(report)).fillna("—")),
              "## Status matrix", MATRIX_INTRO, _table(pd.DataFrame(_matrix(report)))]
    if report.unreadable:
        blocks += ["## Unreadable results or expectations", "\n".join(f"- {e}" for e in report.unreadable)]
    if not report.superseded.empty:
        blocks += ["## Superseded records (kept, not judged)", SUPERSEDED_INTRO, _table(report.superseded)]
    blocks.append("## Runs that diverged or failed")
    blocks += [NO_UNFINISHED] if report.unfinished.empty else [UNFINISHED_INTRO, _table(report.unfinished)]
    if not report.pilots.empty:
        blocks += ["## Pilot runs", PILOTS_INTRO, _table(report.pilots)]
    for paper in report.judged:
        blocks += _section(paper)
    return "\n\n".join(blocks) + "\n"


def _table(frame: pd.DataFrame) -> str:
    frame = frame.map(lambda v: str(v).replace("|", "\\|").replace("\n", " "))
    return frame.to_markdown(index=False)


def _status_cell(v: Verdict) -> str:
    """"✅ reproduced (3/3 seeds)": the status and how many seeds pass on their own."""
    return STATUS_LABEL[v.status] + (f" ({v.seeds} seeds)" if v.seeds else "")


def _glance(report: Report) -> list[dict]:
    """One row per paper: its cpu-tier claims by kind, seeds, time and hardware."""
    rows = []
    for paper in report.papers:
        if paper.state == "planned":
            rows.append({"paper": paper.name, "reproductions (cpu)": STATUS_LABEL["planned"]})
        elif paper.state == "unreadable":
            rows.append({"paper": paper.name, "reproductions (cpu)": "expected.yaml unreadable"})
        else:
            rows.append(_glance_row(paper))
    return rows


def _glance_row(paper: PaperReport) -> dict:
    row = {"paper": f"[{paper.name}](#{paper.name})"}
    for kind in KINDS:
        counts, total = paper.cpu_counts(kind), len(paper.cpu_verdicts(kind))
        if kind == "reproduction":
            row["reproductions (cpu)"] = (f"✅ {counts['reproduced']} · ❌ {counts['not_reproduced']}"
                                          + (f" · ⚪ {counts['not_run']}" if counts["not_run"] else "")
                                          + f" of {total}")
        else:
            row[f"{kind} checks (cpu)"] = f"{counts['reproduced']}/{total} pass" if total else "—"
    row["registered after results"] = str(paper.post_hoc)
    row["seeds (cpu)"] = f"{paper.cpu_seeds} of {paper.seeds_required}"
    if paper.cpu_runs:
        row["cpu time per seed"] = f"{paper.cpu_minutes_per_seed:.0f} min"
        row["hardware"] = paper.cpu_hardware
    return row


def _matrix(report: Report) -> list[dict]:
    """One row per claim, with its status at each tier."""
    rows = []
    for paper in report.papers:
        if paper.state == "planned":
            rows.append({"paper": paper.name, "claim": "—", "kind": "—", "rule": "—",
                         **{f"{t} tier": STATUS_LABEL["planned"] for t in TIER_NAMES}})
        elif paper.state == "unreadable":
            rows.append({"paper": paper.name, "claim": "expected.yaml unreadable", "kind": "—", "rule": "—",
                         **{f"{t} tier": "—" for t in TIER_NAMES}})
        else:
            per_tier = {t: {v.claim.id: v for v in paper.verdicts[t]} for t in TIER_NAMES}
            for claim in paper.expected.claims:
                row = {"paper": paper.name, "claim": claim_name(claim), "kind": claim.kind, "rule": claim.rule}
                for tier in TIER_NAMES:
                    verdict = per_tier[tier].get(claim.id)
                    row[f"{tier} tier"] = _status_cell(verdict) if verdict else "—"
                rows.append(row)
    return rows


def _claims_table(verdicts: list[Verdict], tier: str) -> pd.DataFrame:
    return pd.DataFrame([{"claim": claim_name(v.claim), "kind": v.claim.kind, "rule": v.claim.rule,
                          "what": v.claim.description, "paper": paper_value(v.claim),
                          "check": v.claim.checks[tier].text, "ours (across seeds)": ours_with_seeds(v),
                          "status": _status_cell(v) + status_note(v)} for v in verdicts])


def _figures(figures: Figures) -> list[str]:
    if figures.error:
        return [f"Figures could not be drawn: `{figures.error}`"]
    blocks = [f"### Figures (tier {figures.tier}, {figures.seeds} seed(s))"]
    for figure in figures.items:
        if figure.image:
            blocks.append(f"![{figure.caption}]({figure.image})\n\n*{figure.caption}*")
        else:
            blocks += [f"*{figure.caption}*", _table(figure.table)]
    return blocks


def _section(paper: PaperReport) -> list[str]:
    blocks = [f"## {paper.name}", (f"{paper.expected.citation}  \nCode and details: [reproductions/{paper.name}]"
                                    f"(../reproductions/{paper.name}/README.md)")]
    for tier in paper.tiers_run():
        blocks += [f"### Claims at tier {tier}", _table(_claims_table(paper.verdicts[tier], tier))]
    for tier, experiment in paper.experiments.items():
        blocks += [f"### Experiment at tier {tier}", EXPERIMENT_INTRO, _table(experiment)]
    if paper.figures:
        blocks += _figures(paper.figures)
    blocks.append("### Runtime and hardware")
    blocks.append(NO_RUNS if paper.runtime.empty else _table(paper.runtime))
    if paper.deviations:
        blocks += ["### Deviations from the paper", paper.deviations]
    return blocks
