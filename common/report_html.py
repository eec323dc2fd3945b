"""index.html: the report as one self-contained page, from the Jinja2 template in report_templates/.

Its CSS and its sorting script are inline, it loads no font or file from elsewhere, and only the
figures' images are separate files (figures/<paper>/). Statuses are words in coloured badges (never
emoji, which a machine without an emoji font draws as empty boxes); the Markdown of the report's prose
and of the papers' READMEs is rendered by markdown-it-py; every table is an HTML table that sorts by
any column when its header is clicked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markdown_it import MarkdownIt
from markupsafe import Markup

from common.checks import Verdict
from common.papers import TIER_NAMES
from common.report import (EXPERIMENT_INTRO, HOW_TO_READ, MATRIX_INTRO, NO_RUNS, NO_UNFINISHED, PILOTS_INTRO,
                           SUPERSEDED_INTRO, UNFINISHED_INTRO, PaperReport, Report, claim_name, ours_with_seeds,
                           paper_source, paper_value, status_note)

TEMPLATES = Path(__file__).with_name("report_templates")
STATUS_WORDS = {"reproduced": "reproduced", "not_reproduced": "not reproduced", "not_run": "not run",
                "planned": "not implemented yet", "unreadable": "expected.yaml unreadable"}
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")  # raw HTML in a README is shown, not run


@dataclass
class Cell:
    """A table cell: its content (text, escaped, or Markup) and the key it sorts by, when not its text."""
    content: str | Markup
    sort: str | float | None = None


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""
    widths: dict[str, str] = field(default_factory=dict)  # column -> CSS width; given for all, the layout is fixed


def markdown(text: str) -> Markup:
    return Markup(_MARKDOWN.render(text))


def markdown_inline(text: str) -> Markup:
    return Markup(_MARKDOWN.renderInline(text))


def badge(status: str, text: str | None = None) -> Markup:
    """A status as a word in a coloured badge: `status` is a verdict's status, "planned" or "unreadable"."""
    return Markup('<span class="status {}">{}</span>').format(status.replace("_", "-"), text or STATUS_WORDS[status])


def _cell(value) -> Cell:
    return value if isinstance(value, Cell) else Cell(str(value))


def frame_table(frame: pd.DataFrame, caption: str = "") -> Table:
    """A DataFrame as a table of text: its columns, not its index."""
    return Table([str(c) for c in frame.columns], [[_cell(v) for v in row] for row in frame.itertuples(index=False)],
                 caption)


def _status_with_seeds(v: Verdict, note: str = "") -> Cell:
    """The status badge, how many seeds pass on their own, then `note`."""
    seeds = Markup(' <span class="seeds">{} seeds</span>').format(v.seeds) if v.seeds else ""
    note = Markup('<span class="note">{}</span>').format(note) if note else ""
    return Cell(badge(v.status) + seeds + note, v.status)


def _name_and_citation(paper: PaperReport) -> Markup:
    """The paper's name, a link to its section when it has one, over its citation (cut to fit, whole on hover)."""
    name = paper.name if paper.state != "judged" else Markup('<a href="#{0}">{0}</a>').format(paper.name)
    return Markup('{}<span class="citation" title="{}">{}</span>').format(name, paper.paper.citation,
                                                                        paper.paper.citation)


def _reproduction_cell(paper: PaperReport) -> Cell:
    """The cpu tier's reproduction claims: a badge per status that has any, and a bar of their shares."""
    counts, total = paper.cpu_counts("reproduction"), len(paper.cpu_verdicts("reproduction"))
    badges = [badge(s, f"{n} {STATUS_WORDS[s]}") for s, n in counts.items() if n]
    bar = Markup("").join(Markup('<span class="{}" style="width:{:.1f}%"></span>').format(s.replace("_", "-"),
                                                                                          100 * n / total)
                          for s, n in counts.items() if n)
    content = Markup('{} <span class="of">of {}</span><span class="bar">{}</span>').format(
        Markup(" ").join(badges), total, bar)
    return Cell(content, counts["reproduced"] / total if total else -1)


def summary_table(report: Report) -> Table:
    """The first screen: one row per paper, from its cpu tier."""
    columns = ["paper", "reproductions (cpu)", "protocol checks", "sanity checks", "registered after results",
               "seeds (cpu)", "cpu time per seed", "hardware"]
    rows = []
    for paper in report.papers:
        if paper.state != "judged":
            rows.append([Cell(_name_and_citation(paper), paper.name), Cell(badge(paper.state), -2)]
                        + [Cell("—")] * (len(columns) - 2))
            continue
        checks = []
        for kind in ("protocol", "sanity"):
            total = len(paper.cpu_verdicts(kind))
            passing = paper.cpu_counts(kind)["reproduced"]
            checks.append(Cell(f"{passing}/{total} pass", passing / total) if total else Cell("—", -1))
        minutes = paper.cpu_minutes_per_seed
        rows.append([Cell(_name_and_citation(paper), paper.name), _reproduction_cell(paper), *checks,
                     Cell(str(paper.post_hoc)), Cell(f"{paper.cpu_seeds} of {paper.seeds_required}"),
                     Cell(f"{minutes:.0f} min", minutes) if minutes is not None else Cell("—", -1),
                     Cell(paper.cpu_hardware or "—")])
    widths = ["19%", "27%", "7.5%", "7.5%", "8%", "6.5%", "7.5%", "17%"]
    return Table(columns, rows, widths=dict(zip(columns, widths)))


def headline_tier(paper: PaperReport) -> str:
    """The tier whose reproduction claims head a paper's section: the highest judged beyond smoke, else cpu."""
    return next((t for t in reversed(paper.tiers_run()) if t != "smoke"), "cpu")


def headline_table(paper: PaperReport) -> Table:
    """The paper's reproduction claims at its headline tier: the paper's number beside ours."""
    tier = headline_tier(paper)
    rows = []
    for v in paper.verdicts[tier]:
        if v.claim.kind != "reproduction":
            continue
        what = Markup('{}<code class="claim-id">{}</code>').format(v.claim.description, claim_name(v.claim))
        theirs = Markup('{}<span class="source">{}</span>').format(
            "—" if v.claim.paper_value is None else v.claim.paper_value, paper_source(v.claim))
        status = _status_with_seeds(v)
        if v.status == "not_reproduced" and v.claim.reason:
            status.content += Markup("<details><summary>why</summary>{}</details>").format(v.claim.reason)
        rows.append([Cell(what, v.claim.id), Cell(theirs), Cell(v.ours or "—"), status])
    columns = ["claim", "the paper", f"ours (tier {tier}, across seeds)", "status"]
    return Table(columns, rows, widths=dict(zip(columns, ["38%", "21%", "22%", "19%"])))


def claims_table(paper: PaperReport, tier: str) -> Table:
    """Every claim of a paper at one tier, with its check, each seed's value and why its status is what it is."""
    rows = [[Cell(claim_name(v.claim)), Cell(v.claim.kind), Cell(v.claim.rule), Cell(v.claim.description),
             Cell(paper_value(v.claim)), Cell(v.claim.checks[tier].text), Cell(ours_with_seeds(v)),
             _status_with_seeds(v, status_note(v))] for v in paper.verdicts[tier]]
    columns = ["claim", "kind", "rule", "what", "the paper", "check", "ours (across seeds)", "status"]
    return Table(columns, rows, widths=dict(zip(columns, ["13%", "9%", "7%", "18.5%", "13%", "11%", "13.5%", "15%"])))


def matrix_table(report: Report) -> Table:
    """One row per claim of every paper, with its status at each tier."""
    rows = []
    for paper in report.papers:
        if paper.state != "judged":
            rows.append([Cell(paper.name), Cell("—"), Cell("—"), Cell("—")]
                        + [Cell(badge(paper.state), paper.state)] * len(TIER_NAMES))
            continue
        per_tier = {t: {v.claim.id: v for v in paper.verdicts[t]} for t in TIER_NAMES}
        for claim in paper.expected.claims:
            verdicts = [per_tier[t].get(claim.id) for t in TIER_NAMES]
            rows.append([Cell(Markup('<a href="#{0}">{0}</a>').format(paper.name), paper.name),
                         Cell(claim_name(claim)), Cell(claim.kind), Cell(claim.rule)]
                        + [_status_with_seeds(v) if v else Cell("—") for v in verdicts])
    return Table(["paper", "claim", "kind", "rule", *(f"{t} tier" for t in TIER_NAMES)], rows)


def render_html(report: Report) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(markdown=markdown, markdown_inline=markdown_inline)
    env.globals.update(badge=badge, frame_table=frame_table, summary_table=summary_table,
                       headline_tier=headline_tier, headline_table=headline_table, claims_table=claims_table,
                       matrix_table=matrix_table)
    return env.get_template("index.html.j2").render(
        report=report, how_to_read=HOW_TO_READ, matrix_intro=MATRIX_INTRO, superseded_intro=SUPERSEDED_INTRO,
        unfinished_intro=UNFINISHED_INTRO, no_unfinished=NO_UNFINISHED, pilots_intro=PILOTS_INTRO,
        experiment_intro=EXPERIMENT_INTRO, no_runs=NO_RUNS)
