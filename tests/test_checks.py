import json
import textwrap

import pytest

from common.checks import ExpectedError, judge, load_expected, parse_check
from common.records import judged_runs, scan, superseded_why
from common.papers import _fill_defaults
from tests import toy_runner
from tests.conftest import write_record


def test_bounds_relations_and_bands():
    bound = parse_check("psnr >= 30")
    assert bound.passes(30.0) and not bound.passes(29.9)
    relation = parse_check("psnr_siren - psnr_relu >= 10")
    assert relation.names == {"psnr_siren", "psnr_relu"} and relation.threshold == 10
    across = parse_check("a >= b + 1")  # metrics on both sides: judged as a - (b + 1) >= 0
    assert across.threshold == 0 and across.names == {"a", "b"}
    band = parse_check({"band": "acc", "value": 0.9, "tol": 0.05})
    assert band.passes(0.94) and not band.passes(0.96)
    assert parse_check("x < -1e-3").passes(-0.01)


@pytest.mark.parametrize("text", [
    "__import__('os').system('true') >= 0",  # a call
    "a.b >= 1",  # attribute access
    "a >= 1 >= 0",  # two comparisons
    "a == 1",  # not a bound
    "a",  # no comparison
    "a >= 'x'",  # a string
    "a >= (",  # does not parse
])
def test_anything_but_arithmetic_on_metrics_is_rejected(text):
    with pytest.raises(ValueError):
        parse_check(text)


GOOD = """
paper: toy
citation: "A. Author (2020)"
claims:
  - id: gap
    description: "a beats b by 10"
    paper_value: 12.0
    source: "Table 1"
    confidence: C
    kind: reproduction
    rule: mean
    registered: before_results
    metrics: [a, b]
    checks:
      cpu: "a - b >= 10"
      paper: "a - b >= 10"
    expected: {paper: not_run}
"""


def _write(tmp_path, text):
    path = tmp_path / "expected.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_valid_file_loads_with_default_expectations(tmp_path):
    expected = load_expected(_write(tmp_path, GOOD))
    claim = expected.claims[0]
    assert claim.expected == {"cpu": "reproduced", "paper": "not_run"}
    assert claim.stat == "mean" and claim.confidence == "C"


@pytest.mark.parametrize("old, new, message", [
    ("metrics: [a, b]", "metrics: [a]", "claim 'gap': field checks.cpu: uses b"),
    ("cpu: \"a - b >= 10\"", "gpu: \"a - b >= 10\"", "claim 'gap': field checks.gpu: unknown tier"),
    ("confidence: C", "confidence: X", "claim 'gap': field confidence"),
    ("expected: {paper: not_run}", "expected: {paper: fine}", "claim 'gap': field expected.paper"),
    ("expected: {paper: not_run}", "expected: {cpu: not_reproduced}", "claim 'gap': field reason"),
    ("cpu: \"a - b >= 10\"", "cpu: \"open('x') >= 10\"", "claim 'gap': field checks.cpu"),
    ("    source: \"Table 1\"", "    sauce: \"Table 1\"", "claim 'gap': unknown field(s) sauce"),
    ("  - id: gap", "  - id: [gap]", "claim #1: field id"),
    ("    kind: reproduction", "    kind: theorem", "claim 'gap': field kind: 'theorem' is not one of"),
    ("    kind: reproduction\n", "", "claim 'gap': field kind: missing; one of reproduction"),
    ("    rule: mean", "    rule: best_seed", "claim 'gap': field rule: 'best_seed' is not one of"),
    ("    rule: mean\n", "", "claim 'gap': field rule: missing; one of all_seeds"),
    ("    rule: mean", "    rule: interval\n    stat: max", "claim 'gap': field rule: interval"),
    ("    registered: before_results", "    registered: later", "claim 'gap': field registered: 'later'"),
    ("    registered: before_results\n", "", "claim 'gap': field registered: missing; one of before_results"),
    ("    registered: before_results", "    registered: after_results", "claim 'gap': field registered_why"),
])
def test_malformed_files_name_the_file_claim_and_field(tmp_path, old, new, message):
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ExpectedError) as err:
        load_expected(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_invalid_yaml_names_the_file(tmp_path):
    path = _write(tmp_path, "claims: [\n")
    with pytest.raises(ExpectedError, match="expected.yaml: is not valid YAML"):
        load_expected(path)


def _claim(tmp_path, text=GOOD):
    return load_expected(_write(tmp_path, text)).claims[0]


def _runs(results_dir, paper="toy", tier="cpu"):
    runs, errors = scan(paper, tier)
    assert not errors
    return judged_runs(runs, _fill_defaults(toy_runner), tier)[0]


def _with_rule(rule: str) -> str:
    return GOOD.replace("    rule: mean", f"    rule: {rule}")


@pytest.mark.parametrize("rule, status", [
    ("mean", "reproduced"),           # the mean 10.67 passes although one seed misses
    ("majority", "reproduced"),       # 2 of 3 seeds pass
    ("all_seeds", "not_reproduced"),  # seed 1 misses
    ("interval", "not_reproduced"),   # the t-interval of the mean reaches below 10
])
def test_the_rule_decides_from_the_seeds_and_every_seed_is_counted(tmp_path, results_dir, rule, status):
    for seed, gap in enumerate([12.0, 9.0, 11.0]):
        write_record(results_dir, "toy", "cpu", seed, {"a": 20.0 + gap, "b": 20.0})
    verdict = judge(_claim(tmp_path, _with_rule(rule)), "cpu", _runs(results_dir), "toy")
    assert verdict.status == status
    assert verdict.seeds == "2/3" and verdict.seed_values == {0: 12.0, 1: 9.0, 2: 11.0}
    assert verdict.summary.value == pytest.approx(32 / 3) and verdict.summary.n == 3
    assert verdict.summary.method == "t"


def test_an_interval_rule_passes_when_the_whole_interval_does(tmp_path, results_dir):
    for seed, gap in enumerate([12.0, 12.5, 13.0]):  # 12.5 ± 4.30 · 0.5 / √3 = [11.26, 13.74]
        write_record(results_dir, "toy", "cpu", seed, {"a": 20.0 + gap, "b": 20.0})
    verdict = judge(_claim(tmp_path, _with_rule("interval")), "cpu", _runs(results_dir), "toy")
    assert verdict.status == "reproduced" and verdict.summary.ci_low > 10


def test_majority_needs_more_than_half(tmp_path, results_dir):
    for seed, gap in enumerate([12.0, 9.0, 11.0, 8.0]):  # 2 of 4: not a majority
        write_record(results_dir, "toy", "cpu", seed, {"a": 20.0 + gap, "b": 20.0})
    verdict = judge(_claim(tmp_path, _with_rule("majority")), "cpu", _runs(results_dir), "toy")
    assert verdict.status == "not_reproduced" and verdict.seeds == "2/4"


def test_a_missed_check_is_not_reproduced(tmp_path, results_dir):
    for seed in range(3):
        write_record(results_dir, "toy", "cpu", seed, {"a": 25.0, "b": 20.0})
    verdict = judge(_claim(tmp_path), "cpu", _runs(results_dir), "toy")
    assert verdict.status == "not_reproduced" and not verdict.matches


def test_too_few_seeds_is_not_run(tmp_path, results_dir):
    write_record(results_dir, "toy", "cpu", 0, {"a": 40.0, "b": 20.0})
    verdict = judge(_claim(tmp_path), "cpu", _runs(results_dir), "toy")
    assert verdict.status == "not_run" and "needs 3 seed(s)" in verdict.note


def test_a_diverged_seed_makes_the_claim_not_reproduced(tmp_path, results_dir):
    for seed in range(2):
        write_record(results_dir, "toy", "cpu", seed, {"a": 40.0, "b": 20.0})
    write_record(results_dir, "toy", "cpu", 2, {}, status="diverged", reason="loss = nan at step 7")
    verdict = judge(_claim(tmp_path), "cpu", _runs(results_dir), "toy")
    assert verdict.status == "not_reproduced" and "seed 2 diverged: loss = nan at step 7" in verdict.note


def test_a_division_by_a_zero_metric_is_an_undefined_seed_never_a_pass(tmp_path, results_dir):
    text = GOOD.replace('cpu: "a - b >= 10"', 'cpu: "a / b >= 1"')
    for seed, b in enumerate([1.0, 0.0, 2.0]):
        write_record(results_dir, "toy", "cpu", seed, {"a": 5.0, "b": b})
    verdict = judge(_claim(tmp_path, text), "cpu", _runs(results_dir), "toy")
    assert verdict.status == "not_reproduced" and "a / b is not a finite number on seed(s) 1" in verdict.note


def test_a_bound_that_is_not_a_finite_number_is_rejected(tmp_path):
    path = _write(tmp_path, GOOD.replace('cpu: "a - b >= 10"', 'cpu: "a >= 1 / 0"'))
    with pytest.raises(ExpectedError, match="field checks.cpu: .* is not a finite number"):
        load_expected(path)


def test_a_metric_the_run_could_not_measure_makes_that_seed_fail_saying_why(tmp_path, results_dir):
    for seed in range(2):
        write_record(results_dir, "toy", "cpu", seed, {"a": 40.0, "b": 20.0})
    path = write_record(results_dir, "toy", "cpu", 2, {"b": 20.0})
    record = json.loads(path.read_text())
    record["undefined"] = {"a": "no evaluation episode finished"}
    path.write_text(json.dumps(record))
    verdict = judge(_claim(tmp_path), "cpu", _runs(results_dir), "toy")
    assert verdict.status == "not_reproduced" and verdict.note == "a undefined on seed 2: no evaluation episode finished"


def test_a_missing_metric_is_an_error(tmp_path, results_dir):
    for seed in range(3):
        write_record(results_dir, "toy", "cpu", seed, {"a": 40.0})
    with pytest.raises(ExpectedError, match="lacks metric"):
        judge(_claim(tmp_path), "cpu", _runs(results_dir), "toy")


def test_max_over_seeds_for_never_claims(tmp_path, results_dir):
    text = GOOD.replace("metrics: [a, b]", "metrics: [a, b]\n    stat: max").replace("a - b >= 10", "a <= 0")
    for seed, a in enumerate([-1.0, -2.0, 0.5]):
        write_record(results_dir, "toy", "cpu", seed, {"a": a, "b": 0.0})
    verdict = judge(_claim(tmp_path, text), "cpu", _runs(results_dir), "toy")
    assert verdict.status == "not_reproduced" and verdict.summary.value == 0.5


def test_judged_runs_take_the_latest_preset_run_per_seed(results_dir):
    write_record(results_dir, "toy", "cpu", 0, {"a": 1.0}, started_at="2026-01-01T00:00:00+00:00")
    write_record(results_dir, "toy", "cpu", 0, {"a": 2.0}, started_at="2026-01-02T00:00:00+00:00")
    write_record(results_dir, "toy", "cpu", 0, {"a": 3.0}, started_at="2026-01-03T00:00:00+00:00",
                 overrides={"lr": 0.1})
    runs = _runs(results_dir)
    assert [r.record["metrics"]["a"] for r in runs] == [2.0]
    scanned, _ = scan("toy", "cpu")
    judged, superseded = judged_runs(scanned, _fill_defaults(toy_runner), "cpu")
    assert [r.record["metrics"]["a"] for r in superseded] == [1.0]  # replaced, but listed: never silent
    assert superseded_why(superseded[0], judged, _fill_defaults(toy_runner)).startswith(f"replaced by {judged[0].path.name}")


def test_a_withdrawn_run_is_listed_with_why_and_never_judged(results_dir):
    """results/withdrawn.yaml takes a committed record out of judging (a defect found in the code that made
    it) without editing it: the earlier run of the seed is not judged in its place either way."""
    first = write_record(results_dir, "toy", "cpu", 0, {"a": 1.0}, started_at="2026-01-01T00:00:00+00:00")
    bad = write_record(results_dir, "toy", "cpu", 0, {"a": 9.0}, started_at="2026-01-02T00:00:00+00:00")
    (results_dir / "withdrawn.yaml").write_text(
        f"- {{paper: toy, tier: cpu, reason: corrupted data, runs: [{bad.name}]}}\n")
    scanned, _ = scan("toy", "cpu")
    judged, superseded = judged_runs(scanned, _fill_defaults(toy_runner), "cpu")
    assert [r.path.name for r in judged] == [first.name]
    assert [r.path.name for r in superseded] == [bad.name]
    assert superseded_why(superseded[0], judged, _fill_defaults(toy_runner)) == "withdrawn: corrupted data"


def test_a_pilot_run_is_never_judged(tmp_path, results_dir):
    for seed in range(3):
        write_record(results_dir, "toy", "cpu", seed, {"a": 40.0, "b": 20.0})
    write_record(results_dir, "toy", "cpu", 0, {"a": 0.0, "b": 20.0}, started_at="2026-02-01T00:00:00+00:00",
                 tags=["pilot"])  # later than seed 0's record, and failing: still not the judged one
    verdict = judge(_claim(tmp_path), "cpu", _runs(results_dir), "toy")
    assert verdict.status == "reproduced" and verdict.seed_values[0] == 20.0
