"""`repro report`: build report/REPORT.md and report/index.html from results/ alone.

The report is rebuilt from scratch each time (into a temporary folder that then replaces report/),
so it never holds anything a run did not produce. Claims and deviations text come from each paper's
expected.yaml and README; every number comes from a run record.
"""
from __future__ import annotations

import ctypes
import html
import os
import re
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from common.checks import KINDS, ExpectedError, Verdict, check_paper, expected_path, load_expected, required_seeds
from common.experiments import tier_points
from common.papers import PAPERS, ROOT, TIER_NAMES, Paper
from common.records import judged_runs, scan, superseded_why
from common.runs import git_state
from common.stats import summarize

STATUS_LABEL = {"reproduced": "✅ reproduced", "not_reproduced": "❌ not reproduced", "not_run": "⚪ not run",
                "planned": "⏳ not implemented yet"}


# -- a document rendered twice, as Markdown and as HTML ------------------------------------------
@dataclass
class Doc:
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, level: int, text: str, anchor: str | None = None):
        self.blocks.append(("h", level, text, anchor))

    def para(self, text: str):
        self.blocks.append(("p", text))

    def table(self, frame: pd.DataFrame):
        self.blocks.append(("table", frame))

    def image(self, caption: str, rel_path: str):
        self.blocks.append(("img", caption, rel_path))

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            if block[0] == "h":
                out.append(f"{'#' * block[1]} {block[2]}")
            elif block[0] == "p":
                out.append(block[1])
            elif block[0] == "table":
                frame = block[1].map(lambda v: str(v).replace("|", "\\|").replace("\n", " "))
                out.append(frame.to_markdown(index=False))
            elif block[0] == "img":
                out.append(f"![{block[1]}]({block[2]})\n\n*{block[1]}*")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
               "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
               "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
               "font-size:90%;vertical-align:top}img{max-width:100%}figure{margin:1em 0}"
               "pre{white-space:pre-wrap}</style></head><body>"]
        for block in self.blocks:
            if block[0] == "h":
                anchor = f" id='{block[3]}'" if block[3] else ""
                out.append(f"<h{block[1]}{anchor}>{html.escape(block[2])}</h{block[1]}>")
            elif block[0] == "p":
                out.append(_inline_html(block[1]))
            elif block[0] == "table":
                out.append(block[1].to_html(index=False, escape=True, border=0))
            elif block[0] == "img":
                out.append(f"<figure><img src='{html.escape(block[2])}' alt='{html.escape(block[1])}'>"
                           f"<figcaption>{html.escape(block[1])}</figcaption></figure>")
        out.append("</body></html>")
        return "\n".join(out)


def _inline_html(text: str) -> str:
    """The little Markdown the report's paragraphs use: code spans, bold, links, bullet lists."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    escaped = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)
    escaped = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"<a href='\2'>\1</a>", escaped)
    lines = escaped.split("\n")
    if all(line.lstrip().startswith(("- ", "* ")) for line in lines if line.strip()):
        items = "".join(f"<li>{line.lstrip()[2:]}</li>" for line in lines if line.strip())
        return f"<ul>{items}</ul>"
    return f"<p>{'<br>'.join(lines)}</p>"


# -- pieces of a paper's section ---------------------------------------------------------------
def readme_section(paper: Paper, title: str) -> str | None:
    """The body of the README's `## <title>` section (e.g. Deviations), or None."""
    readme = paper.folder / "README.md"
    if not readme.exists():
        return None
    match = re.search(rf"^##\s+{title}[^\n]*$(.*?)(?=^##\s|\Z)", readme.read_text(), re.M | re.S | re.I)
    return match.group(1).strip() if match else None


def _paper_value(claim) -> str:
    if claim.paper_value is None:
        return "—"
    parts = [str(claim.paper_value)]
    meta = ", ".join(x for x in (claim.source, f"conf. {claim.confidence}" if claim.confidence else None) if x)
    return f"{parts[0]} ({meta})" if meta else parts[0]


POST_HOC = " †"  # marks a claim registered after its results


def _claim_name(claim) -> str:
    return claim.id + (POST_HOC if claim.registered == "after_results" else "")


def _status_cell(v: Verdict) -> str:
    """"✅ reproduced (3/3 seeds)": the status and how many seeds pass on their own."""
    return STATUS_LABEL[v.status] + (f" ({v.seeds} seeds)" if v.seeds else "")


def _claims_table(verdicts: list[Verdict], tier: str) -> pd.DataFrame:
    rows = []
    for v in verdicts:
        ours = v.summary.format() if v.summary else (v.note or "—")
        if v.seed_values:
            ours += "; per seed: " + ", ".join(f"{seed}: {value:.4g}" for seed, value in v.seed_values.items())
        status = _status_cell(v)
        if v.status == "not_reproduced" and v.claim.reason:
            status += f": {v.claim.reason}"
        if v.claim.registered == "after_results":
            status += f" (†registered after the results: {v.claim.registered_why})"
        rows.append({"claim": _claim_name(v.claim), "kind": v.claim.kind, "rule": v.claim.rule,
                     "what": v.claim.description, "paper": _paper_value(v.claim), "check": v.claim.checks[tier].text,
                     "ours (across seeds)": ours, "status": status})
    return pd.DataFrame(rows)


def _runtime_table(paper: Paper) -> pd.DataFrame:
    rows = []
    for tier in TIER_NAMES:
        runs, _ = judged_runs(scan(paper.name, tier)[0], paper.runner(), tier)
        if not runs:
            continue
        wall = summarize([r.record["wall_time_s"] for r in runs])
        first = runs[0].record
        hw = first["hardware"]
        device = hw.get("gpu") or hw.get("cpu")
        throughput = {}
        for run in runs:
            for k, val in run.record["throughput"].items():
                throughput.setdefault(k, []).append(val)
        speed = "; ".join(f"{k} {summarize(v).value:.4g}" for k, v in sorted(throughput.items()))
        commits = sorted({(r.record["git"]["commit"] or "?")[:8] + ("+dirty" if r.record["git"]["dirty"] else "")
                          for r in runs})
        rows.append({"tier": tier, "seeds": ", ".join(str(r.seed) for r in runs),
                     "wall time per seed (s)": f"{wall.value:.1f} ± {wall.std:.1f}",
                     "hardware": f"{hw['device']}: {device}, {hw.get('torch_threads')} thread(s)",
                     "commit": ", ".join(commits), "torch": first["versions"].get("torch"),
                     "throughput (mean over seeds)": speed or "—"})
    return pd.DataFrame(rows)


def _experiment_table(paper: Paper, tier: str) -> pd.DataFrame:
    """Rows = the tier's points (in the runner's order), columns = their labels, seeds and metrics."""
    runner = paper.runner()
    points = tier_points(runner, tier)
    if not points:
        return pd.DataFrame()
    runs, _ = judged_runs(scan(paper.name, tier)[0], runner, tier)
    rows = []
    for point in points:
        mine = [r for r in runs if r.point == point.name]
        if not mine:
            continue
        row = {**{k: str(v) for k, v in point.labels.items()}, "seeds": f"{len(mine)}"}
        bad = [r for r in mine if r.record["status"] != "ok"]
        if bad:
            row["seeds"] += f" ({len(bad)} " + ", ".join(sorted({r.record['status'] for r in bad})) + ")"
        ok = [r for r in mine if r.record["status"] == "ok"]
        names = sorted(set().union(*(r.record["metrics"] for r in ok))) if ok else []
        for name in names:
            values = [r.record["metrics"][name] for r in ok if name in r.record["metrics"]]
            row[name] = summarize(values).format(digits=3)
        rows.append(row)
    return pd.DataFrame(rows).fillna("—")


def _figures(paper: Paper, out: Path, doc: Doc) -> None:
    module = paper.figures_module()
    tiers = [t for t in ("paper", "cpu", "smoke") if judged_runs(scan(paper.name, t)[0], paper.runner(), t)[0]]
    # every point's runs go to figures(); a figure groups them by run.point / run.labels
    if module is None or not tiers:
        return
    tier = tiers[0]
    runs = [r for r in judged_runs(scan(paper.name, tier)[0], paper.runner(), tier)[0] if r.record["status"] == "ok"]
    if not runs:
        return
    fig_dir = out / "figures" / paper.name
    try:
        made = module.figures(runs, fig_dir)
    except Exception:  # a broken figure must not take the report down; say so in the report instead
        doc.para(f"Figures could not be drawn: `{traceback.format_exc().strip().splitlines()[-1]}`")
        return
    doc.heading(3, f"Figures (tier {tier}, {len(runs)} seed(s))")
    for caption, path in made:
        doc.image(caption, Path(path).relative_to(out).as_posix())


def _glance_row(paper: Paper, expected, verdicts: list[Verdict]) -> dict:
    """One paper on the report's first screen: its cpu-tier claims by kind, seeds, time and hardware."""
    row = {"paper": f"[{paper.name}](#{paper.name})"}
    for kind in KINDS:
        mine = [v for v in verdicts if v.claim.kind == kind]
        counts = {s: sum(v.status == s for v in mine) for s in ("reproduced", "not_reproduced", "not_run")}
        if kind == "reproduction":
            row["reproductions (cpu)"] = (f"✅ {counts['reproduced']} · ❌ {counts['not_reproduced']}"
                                          + (f" · ⚪ {counts['not_run']}" if counts["not_run"] else "")
                                          + f" of {len(mine)}")
        else:
            row[f"{kind} checks (cpu)"] = f"{counts['reproduced']}/{len(mine)} pass" if mine else "—"
    post_hoc = sum(c.registered == "after_results" for c in expected.claims)
    row["registered after results"] = str(post_hoc)
    runner = paper.runner()
    runs = judged_runs(scan(paper.name, "cpu")[0], runner, "cpu")[0]
    row["seeds (cpu)"] = f"{len({r.seed for r in runs})} of {required_seeds(runner, 'cpu')}"
    if runs:
        row["cpu time per seed"] = f"{summarize([r.record['wall_time_s'] for r in runs]).value / 60:.0f} min"
        hw = runs[0].record["hardware"]
        row["hardware"] = f"{hw.get('gpu') or hw.get('cpu')}, {hw.get('torch_threads')} thread(s)"
    return row


def _every_run() -> list:
    return [run for paper in PAPERS.values() if paper.implemented
            for tier in TIER_NAMES if tier != "smoke" for run in scan(paper.name, tier)[0]]


def _run_row(run) -> dict:
    """Where a listed run stands: paper, tier, point, seed and the --set values it ran with."""
    return {"paper": run.record["paper"], "tier": run.record["tier"], "point": run.point or "—", "seed": run.seed,
            "overrides": ", ".join(f"{k}={v}" for k, v in run.record["overrides"].items()) or "—"}


def _unfinished_runs(runs: list) -> pd.DataFrame:
    return pd.DataFrame([{**_run_row(r), "status": r.record["status"], "why": r.record["reason"] or "—",
                          "pilot": "yes" if r.pilot else "no", "record": r.path.name}
                         for r in runs if r.record["status"] != "ok"])


def _pilot_runs(runs: list) -> pd.DataFrame:
    return pd.DataFrame([{**_run_row(r), "status": r.record["status"],
                          "wall time (s)": f"{r.record['wall_time_s']:.0f}", "record": r.path.name}
                         for r in runs if r.pilot])


# -- the whole report --------------------------------------------------------------------------
def build_report(out: Path | None = None) -> Path:
    """Write the report to `out` (default report/) from results/ alone; the files that could not be
    read are named in it and on stderr. A failed build leaves the previous report and no staging folder."""
    out = out or ROOT / "report"
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        unreadable = _write_report(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap_into_place(staging, out)
    for problem in unreadable:
        print(f"repro: warning: left out of the report: {problem}", file=sys.stderr)
    return out


def _write_report(staging: Path) -> list[str]:
    """REPORT.md, index.html and the figures into `staging`; returns the files that could not be read."""
    doc = Doc()
    state = git_state()
    doc.heading(1, "Reproduction report")
    doc.para(f"Generated by `repro report` from `results/` (commit {(state['commit'] or '?')[:8]}). "
             "Do not edit by hand.")
    doc.para("How to read it:\n"
             "- Every claim is judged seed by seed; `2/3` says how many seeds pass on their own. The claim's "
             "rule turns that into a status: `all_seeds` (every seed passes), `majority`, `interval` (the whole "
             "interval of the mean passes) or `mean` (the across-seed statistic passes).\n"
             "- Intervals are honest for the number of seeds: below 10 seeds a Student-t interval on the seed "
             "values (`95% t-interval`), from 10 a percentile bootstrap, for max/min claims the range; each "
             "names its method and n.\n"
             "- A claim's kind: a `reproduction` is a result the paper reports; a `protocol` claim a property "
             "of the method that could fail; a `sanity` check an implementation property (true by "
             "construction or far from its boundary). Only reproductions count as reproduced.\n"
             f"- `{POST_HOC.strip()}`: the claim or its threshold was written after its results were seen "
             "(the claim table says why).")

    matrix, sections, unreadable, superseded, glance = [], [], [], [], []
    for paper in PAPERS.values():
        if not paper.implemented:
            matrix.append({"paper": paper.name, "claim": "—", "kind": "—", "rule": "—",
                           **{f"{t} tier": STATUS_LABEL["planned"] for t in TIER_NAMES}})
            glance.append({"paper": paper.name, "reproductions (cpu)": STATUS_LABEL["planned"]})
            continue
        for tier in TIER_NAMES:
            unreadable += scan(paper.name, tier)[1]
        try:
            expected = load_expected(expected_path(paper))
        except ExpectedError as err:
            unreadable.append(str(err))
            matrix.append({"paper": paper.name, "claim": "expected.yaml unreadable", "kind": "—", "rule": "—",
                           **{f"{t} tier": "—" for t in TIER_NAMES}})
            glance.append({"paper": f"[{paper.name}](#{paper.name})", "reproductions (cpu)": "expected.yaml unreadable"})
            continue
        per_tier = {}
        for tier in TIER_NAMES:
            result = check_paper(paper, tier)
            unreadable += [e for e in result.errors if e not in unreadable]
            per_tier[tier] = {v.claim.id: v for v in result.verdicts}
            superseded += [(paper.name, tier, r, superseded_why(r, result.judged)) for r in result.superseded]
        for claim in expected.claims:
            row = {"paper": paper.name, "claim": _claim_name(claim), "kind": claim.kind, "rule": claim.rule}
            for tier in TIER_NAMES:
                verdict = per_tier[tier].get(claim.id)
                row[f"{tier} tier"] = _status_cell(verdict) if verdict else "—"
            matrix.append(row)
        glance.append(_glance_row(paper, expected, list(per_tier["cpu"].values())))
        sections.append((paper, expected, per_tier))

    reproductions = [v for _, _, per_tier in sections for v in per_tier["cpu"].values() if v.claim.kind == "reproduction"]
    doc.heading(2, "At a glance (cpu tier)")
    doc.para(f"**{sum(v.status == 'reproduced' for v in reproductions)} of {len(reproductions)} reproduction claims "
             f"reproduce** at the cpu tier across {len(sections)} papers; "
             f"{sum(v.status == 'not_reproduced' for v in reproductions)} do not, "
             f"{sum(v.status == 'not_run' for v in reproductions)} were not run. Protocol and sanity checks are "
             "counted apart. The cpu tier is each paper's claim at a scale this machine runs (each paper's "
             "README says what shrank).")
    doc.table(pd.DataFrame(glance).fillna("—"))

    doc.heading(2, "Status matrix")
    doc.para("One row per claim; columns are tiers, each with the seeds that pass on their own. "
             "`—`: the claim has no check at that tier.")
    doc.table(pd.DataFrame(matrix))
    if unreadable:
        doc.heading(2, "Unreadable results or expectations")
        doc.para("\n".join(f"- {e}" for e in unreadable))
    if superseded:
        doc.heading(2, "Superseded records (kept, not judged)")
        doc.para("Records are never rewritten or deleted. These are not judged: their config is no longer the "
                 "tier's (or its point's) as the runner resolves it today, or a later run of the same seed "
                 "and config replaced them.")
        doc.table(pd.DataFrame([{"paper": p, "tier": t, "record": r.path.name, "seed": r.seed,
                                 "point": r.point or "—", "started": r.record["started_at"], "why": why}
                                for p, t, r, why in superseded]))
    every_run = _every_run()
    unfinished = _unfinished_runs(every_run)
    doc.heading(2, "Runs that diverged or failed")
    if unfinished.empty:
        doc.para("None: every committed run finished.")
    else:
        doc.para("Every committed run that did not finish, judged or not: a divergence is a result. A judged "
                 "seed that diverged makes its claims not reproduced.")
        doc.table(unfinished)
    pilots = _pilot_runs(every_run)
    if not pilots.empty:
        doc.heading(2, "Pilot runs")
        doc.para("Runs that shaped a tier (a learning rate, a budget, a threshold), tagged `--pilot`: kept, "
                 "never judged. Each paper's README says what they decided.")
        doc.table(pilots)

    for paper, expected, per_tier in sections:
        doc.heading(2, paper.name, anchor=paper.name)
        doc.para(f"{expected.citation}  \nCode and details: [reproductions/{paper.name}]"
                 f"(../reproductions/{paper.name}/README.md)")
        for tier in TIER_NAMES:
            verdicts = list(per_tier[tier].values())
            if not verdicts or all(v.status == "not_run" for v in verdicts):
                continue
            doc.heading(3, f"Claims at tier {tier}")
            doc.table(_claims_table(verdicts, tier))
        for tier in TIER_NAMES:
            experiment = _experiment_table(paper, tier)
            if not experiment.empty:
                doc.heading(3, f"Experiment at tier {tier}")
                doc.para("One row per point; each metric as the mean over seeds with its interval "
                         "(the method and n as in the claim tables).")
                doc.table(experiment)
        _figures(paper, staging, doc)
        runtime = _runtime_table(paper)
        doc.heading(3, "Runtime and hardware")
        if runtime.empty:
            doc.para("No runs recorded yet.")
        else:
            doc.table(runtime)
        deviations = readme_section(paper, "Deviations")
        if deviations:
            doc.heading(3, "Deviations from the paper")
            doc.para(deviations)

    (staging / "REPORT.md").write_text(doc.markdown())
    (staging / "index.html").write_text(doc.html("Reproduction report"))
    return unreadable


def _swap_into_place(staging: Path, out: Path) -> None:
    """Make `staging` the report at `out` so that a reader always sees a whole report: one atomic
    exchange of the two folders where the OS has it (Linux renameat2), else two renames, and a
    crash between them leaves the old report at `<out>.old`, which the next build puts back."""
    old = out.with_name(out.name + ".old")
    if old.exists() and not out.exists():
        old.rename(out)
    if out.exists() and _exchange(staging, out):
        shutil.rmtree(staging)
        return
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where that is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
