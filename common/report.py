"""`repro report`: build report/REPORT.md and report/index.html from results/ alone.

The report is rebuilt from scratch each time (into a temporary folder that then replaces report/),
so it never holds anything a run did not produce. Claims and deviations text come from each paper's
expected.yaml and README; every number comes from a run record.

This module gathers what the report says (a `Report`); `common.report_markdown` writes it as
REPORT.md, for GitHub, and `common.report_html` as index.html, one self-contained page (its CSS and
script inline, no fonts or files from elsewhere) from the Jinja2 template in common/report_templates/.

A paper's figures. `reproductions/<paper>/figures.py` may define `figures(runs, out_dir)`. It is
called with the judged runs that finished (status ok) of the paper's highest tier that has any, and
returns a list of (caption, item) pairs, in the order the report shows them. An item is either
  - the path of an image (PNG or SVG) that it wrote under `out_dir`: shown as a picture; or
  - a pandas.DataFrame: shown as a table, an HTML table in index.html (sortable by any column) and a
    Markdown table in REPORT.md. Its columns are the header; its index is not shown (call
    `reset_index()` to show it); every cell is shown as `str(value)`, so format numbers as they
    should be read.
A figures() that raises, or returns anything else, is one line in the paper's section saying why,
in place of its figures: a broken figure never takes the report down.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from common.checks import Expected, ExpectedError, Verdict, check_paper, expected_path, load_expected, required_seeds
from common.experiments import tier_points
from common.papers import PAPERS, ROOT, TIER_NAMES, Paper
from common.records import judged_runs, scan, superseded_why
from common.runs import git_state
from common.stats import summarize

POST_HOC = " †"  # marks a claim registered after its results
JUDGED_STATUSES = ("reproduced", "not_reproduced", "not_run")

# The report's prose, in Markdown: REPORT.md prints it as it is, index.html renders it.
HOW_TO_READ = (
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
MATRIX_INTRO = ("One row per claim; columns are tiers, each with the seeds that pass on their own. "
                "`—`: the claim has no check at that tier.")
SUPERSEDED_INTRO = ("Records are never rewritten or deleted. These are not judged: their config is no longer the "
                    "tier's (or its point's) as the runner resolves it today, or a later run of the same seed "
                    "and config replaced them.")
UNFINISHED_INTRO = ("Every committed run that did not finish, judged or not: a divergence is a result. A judged "
                    "seed that diverged makes its claims not reproduced.")
NO_UNFINISHED = "None: every committed run finished."
PILOTS_INTRO = ("Runs that shaped a tier (a learning rate, a budget, a threshold), tagged `--pilot`: kept, "
                "never judged. Each paper's README says what they decided.")
EXPERIMENT_INTRO = ("One row per point; each metric as the mean over seeds with its interval "
                    "(the method and n as in the claim tables).")
NO_RUNS = "No runs recorded yet."


# -- what the report says ----------------------------------------------------------------------
@dataclass
class Figure:
    """One item of a paper's figures(): an image (its path relative to the report folder) or a table."""
    caption: str
    image: str | None = None
    table: pd.DataFrame | None = None


@dataclass
class Figures:
    """A paper's figures, drawn from the judged ok runs of one tier; or why they could not be drawn."""
    tier: str
    seeds: int
    items: list[Figure] = field(default_factory=list)
    error: str | None = None


@dataclass
class PaperReport:
    """One paper as the report shows it. `state`: "planned" (no runner yet), "unreadable" (its
    expected.yaml does not load: `Report.unreadable` says why) or "judged" (every other field is set)."""
    paper: Paper
    state: str
    expected: Expected | None = None
    verdicts: dict[str, list[Verdict]] = field(default_factory=dict)  # per tier, in expected.yaml's order
    cpu_runs: list = field(default_factory=list)  # the cpu tier's judged runs
    seeds_required: int = 0  # at the cpu tier
    experiments: dict[str, pd.DataFrame] = field(default_factory=dict)  # per tier with points
    figures: Figures | None = None
    runtime: pd.DataFrame = field(default_factory=pd.DataFrame)
    deviations: str | None = None  # the README's Deviations section, Markdown

    @property
    def name(self) -> str:
        return self.paper.name

    def cpu_verdicts(self, kind: str) -> list[Verdict]:
        return [v for v in self.verdicts.get("cpu", []) if v.claim.kind == kind]

    def cpu_counts(self, kind: str) -> dict[str, int]:
        """How many of the cpu tier's claims of `kind` have each status."""
        mine = self.cpu_verdicts(kind)
        return {status: sum(v.status == status for v in mine) for status in JUDGED_STATUSES}

    @property
    def post_hoc(self) -> int:
        """How many claims were registered after their results."""
        return sum(c.registered == "after_results" for c in self.expected.claims)

    @property
    def cpu_seeds(self) -> int:
        return len({r.seed for r in self.cpu_runs})

    @property
    def cpu_minutes_per_seed(self) -> float | None:
        """One seed's wall time summed over the tier's points (its one run for a tier without points),
        averaged over the seeds."""
        per_seed: dict[int, float] = {}
        for run in self.cpu_runs:
            per_seed[run.seed] = per_seed.get(run.seed, 0.0) + run.record["wall_time_s"]
        return summarize(list(per_seed.values())).value / 60 if per_seed else None

    @property
    def cpu_hardware(self) -> str | None:
        """Every machine the judged runs ran on (in order of first use), with the thread count."""
        machines = [f"{hw.get('gpu') or hw.get('cpu')}, {hw.get('torch_threads')} thread(s)"
                    for hw in (r.record["hardware"] for r in self.cpu_runs)]
        return " + ".join(dict.fromkeys(machines)) or None

    def tiers_run(self) -> list[str]:
        """The tiers at which some claim was judged (not every claim `not_run`)."""
        return [t for t in TIER_NAMES if any(v.status != "not_run" for v in self.verdicts.get(t, []))]


@dataclass
class Report:
    commit: str  # the commit the report was built at, 8 hex digits or "?"
    papers: list[PaperReport]  # every paper the suite knows, in PAPERS' order
    unreadable: list[str]  # files that could not be read, each with why
    superseded: pd.DataFrame  # records kept but not judged
    unfinished: pd.DataFrame  # runs that diverged or failed
    pilots: pd.DataFrame

    @property
    def judged(self) -> list[PaperReport]:
        return [p for p in self.papers if p.state == "judged"]

    @property
    def cpu_reproductions(self) -> list[Verdict]:
        return [v for p in self.judged for v in p.cpu_verdicts("reproduction")]

    def generated_line(self) -> str:
        return f"Generated by `repro report` from `results/` (commit {self.commit}). Do not edit by hand."

    def headline(self) -> str:
        """The report's first sentence: how many reproduction claims reproduce at the cpu tier."""
        claims = self.cpu_reproductions
        counts = {s: sum(v.status == s for v in claims) for s in JUDGED_STATUSES}
        return (f"**{counts['reproduced']} of {len(claims)} reproduction claims reproduce** at the cpu tier across "
                f"{len(self.judged)} papers; {counts['not_reproduced']} do not, {counts['not_run']} were not run. "
                "Protocol and sanity checks are counted apart. The cpu tier is each paper's claim at a scale "
                "this machine runs (each paper's README says what shrank).")


# -- pieces of a paper's section ---------------------------------------------------------------
def readme_section(paper: Paper, title: str) -> str | None:
    """The body of the README's `## <title>` section (e.g. Deviations), or None."""
    readme = paper.folder / "README.md"
    if not readme.exists():
        return None
    match = re.search(rf"^##\s+{title}[^\n]*$(.*?)(?=^##\s|\Z)", readme.read_text(), re.M | re.S | re.I)
    return match.group(1).strip() if match else None


def paper_source(claim) -> str:
    """Where the paper's number is in the paper and how sure that reading is ("Fig. 2, conf. M"), or ""."""
    return ", ".join(x for x in (claim.source, f"conf. {claim.confidence}" if claim.confidence else None) if x)


def paper_value(claim) -> str:
    """The paper's number for a claim, then its source in brackets."""
    if claim.paper_value is None:
        return "—"
    source = paper_source(claim)
    return f"{claim.paper_value} ({source})" if source else str(claim.paper_value)


def claim_name(claim) -> str:
    return claim.id + (POST_HOC if claim.registered == "after_results" else "")


def ours_with_seeds(v: Verdict) -> str:
    """Our across-seed statistic with its interval (or why there is none), then each seed's value."""
    text = v.ours or "—"
    if v.seed_values:
        text += "; per seed: " + ", ".join(f"{seed}: {value:.4g}" for seed, value in v.seed_values.items())
    return text


def status_note(v: Verdict) -> str:
    """What the status cell adds to the status: why a claim does not reproduce, and why it was
    registered after its results; "" when neither applies."""
    note = f": {v.claim.reason}" if v.status == "not_reproduced" and v.claim.reason else ""
    if v.claim.registered == "after_results":
        note += f" (†registered after the results: {v.claim.registered_why})"
    return note


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


def _figures(paper: Paper, out: Path) -> Figures | None:
    """The paper's figures() drawn into out/figures/<paper>/ from the highest tier with judged runs;
    None when it has no figures.py or no finished judged run."""
    module = paper.figures_module()
    if module is None:
        return None
    for tier in ("paper", "cpu", "smoke"):
        judged = judged_runs(scan(paper.name, tier)[0], paper.runner(), tier)[0]
        if judged:  # every point's runs go to figures(); a figure groups them by run.point / run.labels
            runs = [r for r in judged if r.record["status"] == "ok"]
            break
    else:
        return None
    if not runs:
        return None
    figures = Figures(tier, len({r.seed for r in runs}))  # a paper with points has several runs per seed
    try:
        figures.items = [_figure(paper, item, out) for item in module.figures(runs, out / "figures" / paper.name)]
    except Exception:  # a broken figure must not take the report down; say so in the report instead
        figures.error = traceback.format_exc().strip().splitlines()[-1]
    return figures


def _figure(paper: Paper, item, out: Path) -> Figure:
    """One (caption, image path | DataFrame) pair that a paper's figures() returned, checked."""
    valid = "each item must be a (caption, image path) or a (caption, pandas.DataFrame) pair"
    if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
        raise TypeError(f"{paper.name}'s figures() returned {item!r:.100}; {valid}")
    caption, content = item
    if isinstance(content, pd.DataFrame):
        return Figure(caption, table=content)
    if not isinstance(content, (str, os.PathLike)):
        raise TypeError(f"{paper.name}'s figures() returned {content!r:.100} for {caption!r}; {valid}")
    path = Path(content).resolve()
    if not path.is_file() or not path.is_relative_to(out.resolve()):
        raise ValueError(f"{paper.name}'s figures() names {content} for {caption!r}, which is not a file it "
                         f"wrote under {out / 'figures' / paper.name}")
    return Figure(caption, image=path.relative_to(out.resolve()).as_posix())


def _paper_report(paper: Paper, staging: Path, unreadable: list[str], superseded: list[dict]) -> PaperReport:
    """Judge one paper at every tier and draw its figures into `staging`; the files that could not be
    read go to `unreadable`, the records kept but not judged to `superseded`."""
    if not paper.implemented:
        return PaperReport(paper, "planned")
    for tier in TIER_NAMES:
        unreadable += scan(paper.name, tier)[1]
    try:
        expected = load_expected(expected_path(paper))
    except ExpectedError as err:
        unreadable.append(str(err))
        return PaperReport(paper, "unreadable")
    report = PaperReport(paper, "judged", expected, seeds_required=required_seeds(paper.runner(), "cpu"))
    for tier in TIER_NAMES:
        result = check_paper(paper, tier)
        unreadable += [e for e in result.errors if e not in unreadable]
        report.verdicts[tier] = result.verdicts
        if tier == "cpu":
            report.cpu_runs = result.judged
        superseded += [{"paper": paper.name, "tier": tier, "record": r.path.name, "seed": r.seed,
                        "point": r.point or "—", "started": r.record["started_at"],
                        "why": superseded_why(r, result.judged, paper.runner())} for r in result.superseded]
        experiment = _experiment_table(paper, tier)
        if not experiment.empty:
            report.experiments[tier] = experiment
    report.figures = _figures(paper, staging)
    report.runtime = _runtime_table(paper)
    report.deviations = readme_section(paper, "Deviations")
    return report


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


def gather(staging: Path) -> Report:
    """Everything the report says, from results/ alone; the papers' figures are drawn into `staging`."""
    unreadable, superseded = [], []
    papers = [_paper_report(paper, staging, unreadable, superseded) for paper in PAPERS.values()]
    every_run = _every_run()
    return Report(commit=(git_state()["commit"] or "?")[:8], papers=papers, unreadable=unreadable,
                  superseded=pd.DataFrame(superseded), unfinished=_unfinished_runs(every_run),
                  pilots=_pilot_runs(every_run))


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
    from common.report_html import render_html
    from common.report_markdown import render_markdown
    report = gather(staging)
    (staging / "REPORT.md").write_text(render_markdown(report))
    (staging / "index.html").write_text(render_html(report))
    return report.unreadable


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
