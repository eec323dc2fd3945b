"""`expected.yaml`: the claims of a paper, and judging them against run records.

A check is either a comparison string, ``"<expr> <op> <expr>"`` with ``op`` one of >=, <=, >, <
and expressions made of metric names, numbers, + - * / and parentheses (bounds and relations alike),
or a band ``{band: <expr>, value: <number>, tol: <number>}``. The expression is evaluated per seed;
every seed is also judged on its own, and the report shows how many pass ("2/3"). The claim's
``rule`` decides its status from those:

  - ``all_seeds``: every seed passes on its own (a model that "learns", "solves", "beats");
  - ``majority``: more than half of the seeds pass;
  - ``interval``: the whole interval of the across-seed mean passes (a difference whose interval
    must exclude 0);
  - ``mean``: the across-seed ``stat`` passes (mean by default, or max/min for "never" claims).

A claim's ``kind`` says what a pass means: ``reproduction`` (a paper's result), ``protocol`` (a
property of the method that could fail) or ``sanity`` (an implementation property, true by
construction or far from its boundary): only reproductions count as reproduced. ``registered``
says whether the claim and its threshold were written ``before_results`` or ``after_results``
(then ``registered_why`` says why). Expressions are parsed with `ast` and walked by hand: nothing is
evaluated as code.

In a tier with experiment points, a metric is named with its point: `probe_acc@labels=1000` or
`return@algo=bear,dataset=random` (the labels must pick out one point). A relation between points is
evaluated seed by seed on the seeds both points ran (they must have run the same seeds), so the
statistic is paired.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from common.experiments import Point, select_point, tier_points
from common.papers import TIER_NAMES, Paper, UsageError
from common.records import LoadedRun, judged_runs, scan
from common.stats import AGGREGATES, Summary, summarize

STATUSES = ("reproduced", "not_reproduced", "not_run")
CONFIDENCES = ("C", "M", "?")
KINDS = ("reproduction", "protocol", "sanity")
RULES = ("all_seeds", "majority", "interval", "mean")
REGISTERED = ("before_results", "after_results")
MIN_SEEDS = {"smoke": 1, "cpu": 3, "paper": 1}
_COMPARE = {ast.GtE: (">=", operator.ge), ast.LtE: ("<=", operator.le),
            ast.Gt: (">", operator.gt), ast.Lt: ("<", operator.lt)}
_OPERATORS = dict(_COMPARE.values())
def _divide(a: float, b: float) -> float:
    """a / b, NaN for a division by zero (the seed's value is then undefined, never a pass)."""
    return a / b if b != 0 else math.nan


_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: _divide}


class ExpectedError(ValueError):
    """A malformed expected.yaml; the message names the file, the claim and the field."""


# -- expressions --------------------------------------------------------------------------------
_POINT_REF = re.compile(r"\b([A-Za-z_]\w*)@([A-Za-z_][\w.-]*=[\w.+-]+(?:,[A-Za-z_][\w.-]*=[\w.+-]+)*)")


def _split_point_refs(text: str) -> tuple[str, dict[str, tuple[str, dict]]]:
    """`"a@x=1 - a@x=2 > 0"` -> `("a__at0 - a__at1 > 0", {"a__at0": ("a", {"x": "1"}), ...})`."""
    refs: dict[str, tuple[str, dict]] = {}

    def name(match):
        ident = f"{match.group(1)}__at{len(refs)}"
        refs[ident] = (match.group(1), dict(kv.split("=", 1) for kv in match.group(2).split(",")))
        return ident
    return _POINT_REF.sub(name, text), refs


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _validate_expr(node: ast.AST) -> None:
    for n in ast.walk(node):
        ok = isinstance(n, (ast.BinOp, ast.UnaryOp, ast.Name, ast.Load) + tuple(_ARITH) + (ast.USub, ast.UAdd)) \
            or (isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool))
        if not ok:
            raise ValueError(f"{ast.unparse(n) if isinstance(n, ast.expr) else type(n).__name__!s} is not allowed "
                             "(use metric names, numbers, + - * / and parentheses)")


def _evaluate(node: ast.AST, metrics: dict[str, float]) -> float:
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return float(metrics[node.id])
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, metrics)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        return _ARITH[type(node.op)](_evaluate(node.left, metrics), _evaluate(node.right, metrics))
    raise ValueError(f"cannot evaluate {ast.unparse(node)}")


@dataclass(frozen=True)
class Check:
    text: str
    lhs: ast.expr  # judged quantity, evaluated per seed
    op: str | None  # comparison operator, or None for a band
    threshold: float  # right-hand side of a comparison, or the band's centre
    tol: float = 0.0
    refs: dict = field(default_factory=dict)  # identifier -> (metric, point labels) for metric@point

    @property
    def names(self) -> set[str]:
        """The metric names the check reads (a point's metric counted by its metric name)."""
        return {self.refs[n][0] if n in self.refs else n for n in _names(self.lhs)}

    def passes(self, value: float) -> bool:
        if self.op is None:
            return abs(value - self.threshold) <= self.tol
        return _OPERATORS[self.op](value, self.threshold)

    def interval_passes(self, low: float, high: float) -> bool:
        """Every value in [low, high] passes: the end nearest the threshold decides."""
        if self.op is None:
            return self.passes(low) and self.passes(high)
        return self.passes(low if self.op in (">", ">=") else high)

    @property
    def quantity(self) -> str:
        return ast.unparse(self.lhs)


def parse_check(spec) -> Check:
    if isinstance(spec, dict):
        unknown = set(spec) - {"band", "value", "tol"}
        if unknown or not {"band", "value", "tol"} <= set(spec):
            raise ValueError("a band needs exactly the keys band, value and tol")
        text, refs = _split_point_refs(str(spec["band"]))
        try:
            lhs = ast.parse(text, mode="eval").body
        except SyntaxError:
            raise ValueError(f"{spec['band']!r} does not parse") from None
        _validate_expr(lhs)
        value, tol = spec["value"], spec["tol"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (value, tol)) or tol < 0:
            raise ValueError("a band's value and tol must be numbers, tol >= 0")
        return Check(f"{spec['band']} = {value} ± {tol}", lhs, None, float(value), float(tol), refs)
    if not isinstance(spec, str):
        raise ValueError("a check is a string like 'a - b >= 10' or a band {band, value, tol}")
    text, refs = _split_point_refs(spec)
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ValueError(f"{spec!r} does not parse") from None
    if not (isinstance(tree, ast.Compare) and len(tree.ops) == 1 and type(tree.ops[0]) in _COMPARE):
        raise ValueError(f"{spec!r} must hold exactly one comparison: >=, <=, > or <")
    left, right = tree.left, tree.comparators[0]
    _validate_expr(left)
    _validate_expr(right)
    op = _COMPARE[type(tree.ops[0])][0]
    if _names(right):  # a relation between metrics: judge (left - right) against 0
        return Check(spec, ast.BinOp(left, ast.Sub(), right), op, 0.0, refs=refs)
    threshold = _evaluate(right, {})
    if not math.isfinite(threshold):
        raise ValueError(f"{spec!r}: the bound {ast.unparse(right)} is not a finite number")
    return Check(spec, left, op, threshold, refs=refs)


# -- expected.yaml ------------------------------------------------------------------------------
@dataclass
class Claim:
    id: str
    description: str
    metrics: list[str]
    checks: dict[str, Check]
    expected: dict[str, str]
    stat: str = "mean"
    kind: str = "reproduction"
    rule: str = "all_seeds"
    registered: str = "before_results"
    registered_why: str | None = None
    paper_value: object = None
    source: str | None = None
    confidence: str | None = None
    reason: str | None = None


@dataclass
class Expected:
    paper: str
    citation: str
    claims: list[Claim] = field(default_factory=list)


def load_expected(path: Path) -> Expected:
    def fail(where: str, problem: str):
        raise ExpectedError(f"{path}: {where}: {problem}")

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ExpectedError(f"{path}: missing") from None
    except yaml.YAMLError as err:
        raise ExpectedError(f"{path}: is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        fail("top level", "needs a mapping with paper, citation and a list of claims")
    result = Expected(str(data.get("paper", "")), str(data.get("citation", "")))
    seen = set()
    for index, raw in enumerate(data["claims"]):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            fail(f"claim #{index + 1}", "field id: missing or not a string")
        cid = raw["id"]
        where = f"claim {cid!r}"
        if cid in seen:
            fail(where, "field id: duplicated")
        seen.add(cid)
        allowed = {"id", "description", "kind", "rule", "registered", "registered_why", "paper_value", "source",
                   "confidence", "metrics", "stat", "checks", "expected", "reason"}
        if set(raw) - allowed:
            fail(where, f"unknown field(s) {', '.join(sorted(set(raw) - allowed))}; valid: {', '.join(sorted(allowed))}")
        if not isinstance(raw.get("description"), str):
            fail(where, "field description: missing or not a string")
        metrics = raw.get("metrics")
        if not (isinstance(metrics, list) and metrics and all(isinstance(m, str) for m in metrics)):
            fail(where, "field metrics: must be a non-empty list of metric names")
        stat = raw.get("stat", "mean")
        if stat not in AGGREGATES:
            fail(where, f"field stat: {stat!r} is not one of {', '.join(AGGREGATES)}")
        for key, valid in (("kind", KINDS), ("rule", RULES), ("registered", REGISTERED)):
            if key not in raw:
                fail(where, f"field {key}: missing; one of {', '.join(valid)}")
            if raw[key] not in valid:
                fail(where, f"field {key}: {raw[key]!r} is not one of {', '.join(valid)}")
        kind, rule, registered = raw["kind"], raw["rule"], raw["registered"]
        if rule == "interval" and stat != "mean":
            fail(where, f"field rule: interval judges the mean's interval; stat is {stat!r}")
        if registered == "after_results" and not raw.get("registered_why"):
            fail(where, "field registered_why: required when a claim was registered after its results")
        confidence = raw.get("confidence")
        if confidence is not None and str(confidence) not in CONFIDENCES:
            fail(where, f"field confidence: {confidence!r} is not one of {', '.join(CONFIDENCES)}")
        checks_raw = raw.get("checks")
        if not isinstance(checks_raw, dict) or not checks_raw:
            fail(where, "field checks: must map tiers to checks")
        checks = {}
        for tier, spec in checks_raw.items():
            if tier not in TIER_NAMES:
                fail(where, f"field checks.{tier}: unknown tier; valid tiers: {', '.join(TIER_NAMES)}")
            try:
                checks[tier] = parse_check(spec)
            except ValueError as err:
                fail(where, f"field checks.{tier}: {err}")
            unknown = checks[tier].names - set(metrics)
            if unknown:
                fail(where, f"field checks.{tier}: uses {', '.join(sorted(unknown))}, not listed in metrics")
        expected = raw.get("expected") or {}
        if not isinstance(expected, dict):
            fail(where, "field expected: must map tiers to statuses")
        for tier, status in expected.items():
            if tier not in checks:
                fail(where, f"field expected.{tier}: there is no check for tier {tier}")
            if status not in STATUSES:
                fail(where, f"field expected.{tier}: {status!r} is not one of {', '.join(STATUSES)}")
        if "not_reproduced" in expected.values() and not raw.get("reason"):
            fail(where, "field reason: required when a claim is expected not to reproduce")
        result.claims.append(Claim(
            id=cid, description=raw["description"], metrics=metrics, checks=checks,
            expected={t: expected.get(t, "reproduced") for t in checks}, stat=stat, kind=kind, rule=rule,
            registered=registered, registered_why=raw.get("registered_why"), paper_value=raw.get("paper_value"),
            source=raw.get("source"),
            confidence=None if confidence is None else str(confidence), reason=raw.get("reason")))
    return result


# -- judging ------------------------------------------------------------------------------------
@dataclass
class Verdict:
    paper: str
    tier: str
    claim: Claim
    status: str
    summary: Summary | None = None
    note: str = ""
    seed_values: dict[int, float] = field(default_factory=dict)  # the judged quantity per seed
    seeds_passing: int = 0

    @property
    def seeds(self) -> str:
        """"2/3": how many seeds pass on their own; "" when no seed was judged."""
        return f"{self.seeds_passing}/{len(self.seed_values)}" if self.seed_values else ""

    @property
    def ours(self) -> str:
        """The across-seed statistic with its interval, or why there is none."""
        return self.summary.format() if self.summary else self.note

    @property
    def expected(self) -> str:
        return self.claim.expected[self.tier]

    @property
    def matches(self) -> bool:
        return self.status == self.expected


def _bind_points(check: Check, points: list[Point], where: str) -> dict[str, Point | None]:
    """Which point each identifier of the check reads: its @labels' point; a bare metric reads the
    tier's only point (or the tier itself when it has none)."""
    bound: dict[str, Point | None] = {}
    for ident in _names(check.lhs):
        if ident in check.refs:
            if not points:
                raise ExpectedError(f"{where}: {check.refs[ident][0]}@... names a point, but the tier has none")
            try:
                bound[ident] = select_point(points, check.refs[ident][1], where)
            except UsageError as err:
                raise ExpectedError(str(err)) from None
        elif len(points) > 1:
            raise ExpectedError(f"{where}: metric {ident!r} needs its point, e.g. {ident}@"
                                f"{points[0].name}; points: {', '.join(p.name for p in points)}")
        else:
            bound[ident] = points[0] if points else None
    return bound


def judge(claim: Claim, tier: str, runs: list[LoadedRun], paper: str, points: list[Point] | None = None,
          min_seeds: int | None = None) -> Verdict:
    """One claim at one tier, from the latest run per (point, seed) of the tier's own configurations.
    It needs `min_seeds` seeds (default `MIN_SEEDS[tier]`; at the cpu tier, the runner's seed count)."""
    min_seeds = MIN_SEEDS[tier] if min_seeds is None else min_seeds
    check = claim.checks[tier]
    bound = _bind_points(check, points or [], f"claim {claim.id!r} at tier {tier}")
    used = {p.name if p else None for p in bound.values()}
    by_point = {name: {r.seed: r for r in runs if r.point == name} for name in used}
    failed = [r for name in used for r in by_point[name].values() if r.record["status"] != "ok"]
    if failed:
        notes = "; ".join(f"{'' if r.point is None else r.point + ' '}seed {r.seed} {r.record['status']}: "
                          f"{r.record['reason']}" for r in failed)
        return Verdict(paper, tier, claim, "not_reproduced", note=notes)
    seed_sets = {name: sorted(seeds) for name, seeds in by_point.items()}
    if len({tuple(s) for s in seed_sets.values()}) > 1:
        detail = "; ".join(f"{name}: seeds {seeds}" for name, seeds in seed_sets.items())
        return Verdict(paper, tier, claim, "not_run", note=f"a relation between points needs the same seeds ({detail})")
    seeds = next(iter(seed_sets.values()))
    if len(seeds) < min_seeds:
        return Verdict(paper, tier, claim, "not_run", note=f"needs {min_seeds} seed(s) at tier {tier}, found {len(seeds)}")
    values, unmeasured = [], []
    for seed in seeds:
        env = {}
        for ident, point in bound.items():
            run = by_point[point.name if point else None][seed]
            metric = check.refs[ident][0] if ident in check.refs else ident
            if metric in (run.record.get("undefined") or {}):  # the run says it could not measure it
                unmeasured.append(f"{metric} undefined on seed {seed}: {run.record['undefined'][metric]}")
                env[ident] = math.nan
            elif metric not in run.record["metrics"]:
                raise ExpectedError(f"{run.path}: lacks metric(s) {metric} that claim {claim.id!r} needs")
            else:
                env[ident] = run.record["metrics"][metric]
        values.append(_evaluate(check.lhs, env))
    if unmeasured:
        return Verdict(paper, tier, claim, "not_reproduced", note="; ".join(unmeasured))
    undefined = [seed for seed, value in zip(seeds, values) if not math.isfinite(value)]
    if undefined:
        return Verdict(paper, tier, claim, "not_reproduced",
                       note=f"{check.quantity} is not a finite number on seed(s) {', '.join(map(str, undefined))} "
                            "(a division by zero or a non-finite metric)")
    summary = summarize(values, claim.stat)
    passing = sum(check.passes(v) for v in values)
    status = "reproduced" if _rule_holds(claim.rule, check, summary, passing, len(values)) else "not_reproduced"
    return Verdict(paper, tier, claim, status, summary, seed_values=dict(zip(seeds, values)), seeds_passing=passing)


def _rule_holds(rule: str, check: Check, summary: Summary, passing: int, n: int) -> bool:
    if rule == "all_seeds":
        return passing == n
    if rule == "majority":
        return 2 * passing > n
    if rule == "interval":
        return check.interval_passes(summary.ci_low, summary.ci_high)
    return check.passes(summary.value)


def required_seeds(runner, tier: str) -> int:
    """Seeds a claim needs: at the cpu tier the runner's own count (5 where a seed costs under 10
    minutes), at least `MIN_SEEDS`; elsewhere `MIN_SEEDS`."""
    return max(MIN_SEEDS[tier], runner.SEEDS[tier]) if tier == "cpu" else MIN_SEEDS[tier]


def expected_path(paper: Paper) -> Path:
    return paper.folder / "expected.yaml"


@dataclass
class PaperCheck:
    """Everything `repro check` and the report learn about one paper at one tier."""
    verdicts: list[Verdict]
    errors: list[str]            # malformed records or expected.yaml
    judged: list[LoadedRun]      # the runs the claims are judged on
    superseded: list[LoadedRun]  # an older config, or replaced by a later run of the seed: listed, never judged


def check_paper(paper: Paper, tier: str) -> PaperCheck:
    """Verdicts for every claim with a check at `tier`, the malformed files met on the way, and the
    superseded records left out."""
    runs, errors = scan(paper.name, tier)
    try:
        expected = load_expected(expected_path(paper))
    except ExpectedError as err:
        return PaperCheck([], errors + [str(err)], [], [])
    runner = paper.runner()
    runs, superseded = judged_runs(runs, runner, tier)
    points = tier_points(runner, tier)
    verdicts = []
    for claim in expected.claims:
        if tier not in claim.checks:
            continue
        try:
            verdict = judge(claim, tier, runs, paper.name, points, min_seeds=required_seeds(runner, tier))
        except ExpectedError as err:
            errors.append(str(err))
            continue
        verdicts.append(verdict)
    return PaperCheck(verdicts, errors, runs, superseded)


def mismatch(verdict: Verdict) -> str:
    """Why `repro check` fails on a verdict whose status differs from the recorded one."""
    detail = f" ({verdict.note})" if verdict.note else ""
    return (f"{verdict.paper}/{verdict.claim.id} at tier {verdict.tier}: status {verdict.status}, "
            f"expected.yaml records {verdict.expected}{detail}")
