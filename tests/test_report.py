import functools
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from common.checks import check_paper
from common.checks import expected_path as real_expected_path
from common.cli import main
from common.papers import PAPERS, ROOT, Paper
from common.report import build_report
from tests.conftest import write_record


@functools.cache
def committed_report_in(base: Path) -> Path:
    """The report built from the committed results/ under `base` (the session's temporary folder), once
    per test session: a build takes about a minute, and every test that only reads it shares it."""
    saved = os.environ.pop("REPRO_RESULTS_DIR", None)
    try:
        return build_report(base / "committed" / "report")
    finally:
        if saved is not None:
            os.environ["REPRO_RESULTS_DIR"] = saved


@pytest.fixture
def committed_report(tmp_path_factory):
    return committed_report_in(tmp_path_factory.getbasetemp())


def _contents(out):
    return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_report_builds_from_committed_results_and_shows_every_paper(committed_report):
    out = committed_report
    text = (out / "REPORT.md").read_text()
    html = (out / "index.html").read_text()
    for name, paper in PAPERS.items():
        assert f"| {name}" in text and name in html
        if not paper.implemented:
            assert re.search(rf"\| {name} +\| — +\| — +\| — +\| ⏳ not implemented yet", text)
        elif (ROOT / "results" / name / "cpu").exists():
            assert f"## {name}" in text  # its section
            judged = check_paper(paper, "cpu").judged
            if judged:  # and its pictures, drawn from the runs it judges, counted in seeds (not runs)
                assert f"figures/{name}/" in text
                seeds = len({r.seed for r in judged if r.record["status"] == "ok"})
                assert f"### Figures (tier cpu, {seeds} seed(s))" in text.split(f"## {name}", 1)[1]
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (out / image).exists()
    # the first screen: one row per paper, reproductions counted apart from protocol and sanity checks
    first_screen = text[:text.index("## Status matrix")]
    assert re.search(r"\*\*\d+ of \d+ reproduction claims reproduce\*\*", first_screen)
    for name, paper in PAPERS.items():
        assert (f"[{name}](#{name})" if paper.implemented else f"| {name} ") in first_screen
    assert "t-interval" in text and "seeds)" in text  # intervals name their method; statuses their seeds


def test_a_malformed_record_is_named_by_check_and_survived_by_report(tmp_path, results_dir, capsys):
    implemented = [p for p in PAPERS.values() if p.implemented]
    if not implemented:
        return
    name = implemented[0].name
    bad = results_dir / name / "cpu" / "broken.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"paper": "%s", "metrics": ' % name)
    assert main(["check", name, "--tier", "cpu"]) == 1
    assert f"{bad}: does not parse as JSON" in capsys.readouterr().err
    out = build_report(tmp_path / "report")
    assert f"{bad}: does not parse as JSON" in (out / "REPORT.md").read_text()


def test_a_build_that_crashes_leaves_the_previous_report_whole_and_no_staging(tmp_path, results_dir, monkeypatch):
    out = tmp_path / "report"
    out.mkdir()
    (out / "REPORT.md").write_text("the previous report")

    def crash(staging):
        (staging / "REPORT.md").write_text("half")
        raise ZeroDivisionError("a figure failed")
    monkeypatch.setattr("common.report._write_report", crash)
    with pytest.raises(ZeroDivisionError):
        build_report(out)
    assert (out / "REPORT.md").read_text() == "the previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


@pytest.mark.parametrize("field, value, message", [
    ("seed", "zero", "field seed must be an integer >= 0, got 'zero'"),
    ("started_at", None, "field started_at must be an ISO time string, got None"),
    ("metrics", {"a": float("nan")}, "metrics must map names to finite numbers"),
])
def test_a_record_with_a_wrong_field_is_one_line_in_check_and_report(tmp_path, results_dir, capsys, field, value,
                                                                     message):
    name = next(p.name for p in PAPERS.values() if p.implemented)
    bad = write_record(results_dir, name, "cpu", 0, {"a": 1.0})
    record = json.loads(bad.read_text())
    record[field] = value
    bad.write_text(json.dumps(record))
    assert main(["check", name, "--tier", "cpu"]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: {message}" in err and "Traceback" not in err
    out = build_report(tmp_path / "report")
    assert f"{bad}: {message}" in (out / "REPORT.md").read_text()


def test_report_replaces_stale_files(tmp_path, results_dir):
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "stale.png").write_bytes(b"old")
    build_report(out)
    assert not (out / "figures" / "stale.png").exists()


def test_rebuilding_from_the_same_results_gives_the_same_files(committed_report, tmp_path, monkeypatch):
    """The report is a function of results/: intervals and figures are seeded, so a rebuild without
    new results leaves no diff to commit."""
    monkeypatch.delenv("REPRO_RESULTS_DIR", raising=False)
    assert _contents(build_report(tmp_path / "again")) == _contents(committed_report)


def test_diverged_failed_and_pilot_runs_are_listed(tmp_path, results_dir):
    from tests.conftest import write_record
    name = next(p.name for p in PAPERS.values() if p.implemented)
    write_record(results_dir, name, "cpu", 0, {}, status="diverged", reason="loss = nan at step 7")
    write_record(results_dir, name, "cpu", 1, {}, status="failed", reason="RuntimeError: boom")
    write_record(results_dir, name, "cpu", 2, {"x": 1.0}, overrides={"lr": 0.1}, tags=["pilot"])
    text = (build_report(tmp_path / "report") / "REPORT.md").read_text()
    unfinished = text[text.index("## Runs that diverged or failed"):text.index("## Pilot runs")]
    assert "loss = nan at step 7" in unfinished and "RuntimeError: boom" in unfinished
    pilots = text[text.index("## Pilot runs"):]
    assert re.search(rf"\| {name} +\| cpu +\| — +\| +2 \| lr=0.1", pilots)


def test_export_gives_one_row_per_run_and_metric_and_show_prints_a_papers_claims(tmp_path, capsys):
    import pandas as pd
    from common.records import scan
    out = tmp_path / "runs.csv"
    assert main(["export", "--tier", "cpu", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    for paper in (p for p in PAPERS.values() if p.implemented):
        runs, _ = scan(paper.name, "cpu")
        rows = frame[frame["paper"] == paper.name]
        assert len(rows) == sum(max(1, len(r.record["metrics"])) for r in runs)
        assert rows.groupby("run_id")["judged"].first().sum() <= len(runs)
    first = next(p for p in PAPERS.values() if p.implemented)
    assert main(["show", first.name]) == 0
    printed = capsys.readouterr().out
    from common.checks import expected_path, load_expected
    cpu_claims = [c.id for c in load_expected(expected_path(first)).claims if "cpu" in c.checks]
    assert "seeds passing" in printed and all(c in printed for c in cpu_claims)
    assert main(["export", "--format", "parquet"]) == 2


def test_the_html_page_draws_statuses_as_words_and_renders_the_readmes_markdown(committed_report):
    html = (committed_report / "index.html").read_text()
    assert not re.search("[✅❌⚪⏳]", html)  # emoji are empty boxes where no emoji font is installed
    assert re.search(r'<span class="status reproduced">\d+ reproduced</span>', html)
    assert "<li><strong>" in html  # the Deviations sections' Markdown lists, as lists
    assert not re.search(r"<link|<script src|@import|@font-face|url\(", html)  # self-contained: CSS and script inline


TOY_EXPECTED = """\
paper: toy
citation: "Toy 2026"
claims:
  - id: small_loss
    description: "the loss ends below 10"
    paper_value: 1.5
    kind: reproduction
    rule: all_seeds
    registered: before_results
    metrics: [loss]
    checks: {cpu: "loss < 10"}
"""


@pytest.fixture
def toy_with_figures(results_dir, tmp_path, monkeypatch):
    """Paper 'toy' (the toy runner) with three judged cpu seeds and a figures() that `figures` stands in
    for: set `figures.make = lambda runs, out_dir: [...]`."""
    monkeypatch.setitem(PAPERS, "toy", Paper("toy", "Toy 2026", module="tests.toy_runner"))
    expected = tmp_path / "expected.yaml"
    expected.write_text(TOY_EXPECTED)
    for module in ("common.report", "common.checks"):
        monkeypatch.setattr(f"{module}.expected_path",
                            lambda paper: expected if paper.name == "toy" else real_expected_path(paper))
    for seed in range(3):
        write_record(results_dir, "toy", "cpu", seed, {"loss": 1.0 + seed, "norm": 1.0})
    figures = SimpleNamespace(make=None)
    real_figures_module = Paper.figures_module
    monkeypatch.setattr(Paper, "figures_module", lambda paper: SimpleNamespace(figures=figures.make)
                        if paper.name == "toy" else real_figures_module(paper))
    return figures


def test_a_figure_may_be_a_table_shown_as_html_and_markdown(toy_with_figures, tmp_path):
    def make(runs, out_dir):
        out_dir.mkdir(parents=True)
        (out_dir / "curve.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
        table = pd.DataFrame({"method": ["Random", "Ours"], "score <b>": [157, 202.9]})
        return [("A curve", out_dir / "curve.svg"), ("Table 1 with our row", table)]
    toy_with_figures.make = make
    out = build_report(tmp_path / "report")
    text = (out / "REPORT.md").read_text()
    assert "![A curve](figures/toy/curve.svg)" in text
    assert re.search(r"\*Table 1 with our row\*\n\n\| method +\| +score <b> +\|\n.*\n\| Random +\| +157 ", text)
    html = (out / "index.html").read_text()
    assert '<img src="figures/toy/curve.svg" alt="A curve">' in html
    table = html[html.index("<caption>Table 1 with our row</caption>"):]
    table = table[:table.index("</table>")]
    assert "<th scope=\"col\">score &lt;b&gt;</th>" in table and "<td>202.9</td>" in table


@pytest.mark.parametrize("made, message", [
    ([("A caption", 3)], ("TypeError: toy's figures() returned 3 for 'A caption'; each item must be a (caption, "
                          "image path) or a (caption, pandas.DataFrame) pair")),
    (["just a path.png"], "TypeError: toy's figures() returned 'just a path.png'; each item must be"),
    ([("Gone", Path("/nonexistent/figure.png"))],
     "ValueError: toy's figures() names /nonexistent/figure.png for 'Gone', which is not a file it wrote under"),
])
def test_a_figure_of_the_wrong_kind_is_one_line_saying_what_is_valid(toy_with_figures, tmp_path, made, message):
    toy_with_figures.make = lambda runs, out_dir: made
    out = build_report(tmp_path / "report")
    assert f"Figures could not be drawn: `{message}" in (out / "REPORT.md").read_text()
    html = (out / "index.html").read_text()
    assert "Figures could not be drawn" in html and message.replace("'", "&#39;") in html


def test_time_per_seed_sums_a_seeds_points_and_hardware_names_every_machine():
    from common.records import LoadedRun
    from common.report import PaperReport

    def run(seed, seconds, cpu):
        return LoadedRun(Path("x.json"), {"seed": seed, "wall_time_s": seconds,
                                          "hardware": {"cpu": cpu, "torch_threads": 1}})
    runs = [run(0, 600, "AMD"), run(0, 1200, "AMD"), run(1, 900, "Intel"), run(1, 1500, "AMD")]
    paper = PaperReport(PAPERS["nmf"], "judged", cpu_runs=runs)
    assert paper.cpu_minutes_per_seed == pytest.approx((30 + 40) / 2)  # points add up within a seed
    assert paper.cpu_hardware == "AMD, 1 thread(s) + Intel, 1 thread(s)"
    assert PaperReport(PAPERS["nmf"], "judged").cpu_hardware is None
