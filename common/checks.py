"""`expected.yaml`: the claims of a paper, and judging them against run records.

A check is either a comparison string, ``"<expr> <op> <expr>"`` with ``op`` one of >=, <=, >, <
and expressions made of metric names, numbers, + - * / and parentheses (bounds and relations alike),
or a band ``{band: <expr>, value: <number>, tol: <number>}``. The expression is evaluated per seed and
aggregated across seeds by the claim's ``stat`` (mean by default, or max/min for "never" claims);
the aggregate is what is judged. Expressions are parsed with `ast` and walked by hand: nothing is
evaluated as code.
"""
from __future__ import annotations

import ast
import operator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from common.papers import TIER_NAMES, Paper
from common.records import LoadedRun, judged_runs, scan
from common.stats import AGGREGATES, Summary, summarize

STATUSES = ("reproduced", "not_reproduced", "not_run")
CONFIDENCES = ("C", "M", "?")
MIN_SEEDS = {"smoke": 1, "cpu": 3, "paper": 1}
_COMPARE = {ast.GtE: (">=", operator.ge), ast.LtE: ("<=", operator.le),
            ast.Gt: (">", operator.gt), ast.Lt: ("<", operator.lt)}
_OPERATORS = dict(_COMPARE.values())
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


class ExpectedError(ValueError):
    """A malformed expected.yaml; the message names the file, the claim and the field."""


# -- expressions --------------------------------------------------------------------------------
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

    @property
    def names(self) -> set[str]:
        return _names(self.lhs)

    def passes(self, value: float) -> bool:
        if self.op is None:
            return abs(value - self.threshold) <= self.tol
        return _OPERATORS[self.op](value, self.threshold)

    @property
    def quantity(self) -> str:
        return ast.unparse(self.lhs)


def parse_check(spec) -> Check:
    if isinstance(spec, dict):
        unknown = set(spec) - {"band", "value", "tol"}
        if unknown or not {"band", "value", "tol"} <= set(spec):
            raise ValueError("a band needs exactly the keys band, value and tol")
        lhs = ast.parse(str(spec["band"]), mode="eval").body
        _validate_expr(lhs)
        value, tol = spec["value"], spec["tol"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (value, tol)) or tol < 0:
            raise ValueError("a band's value and tol must be numbers, tol >= 0")
        return Check(f"{ast.unparse(lhs)} = {value} ± {tol}", lhs, None, float(value), float(tol))
    if not isinstance(spec, str):
        raise ValueError("a check is a string like 'a - b >= 10' or a band {band, value, tol}")
    try:
        tree = ast.parse(spec, mode="eval").body
    except SyntaxError:
        raise ValueError(f"{spec!r} does not parse") from None
    if not (isinstance(tree, ast.Compare) and len(tree.ops) == 1 and type(tree.ops[0]) in _COMPARE):
        raise ValueError(f"{spec!r} must hold exactly one comparison: >=, <=, > or <")
    left, right = tree.left, tree.comparators[0]
    _validate_expr(left)
    _validate_expr(right)
    op = _COMPARE[type(tree.ops[0])][0]
    if _names(right):  # a relation between metrics: judge (left - right) against 0
        return Check(spec, ast.BinOp(left, ast.Sub(), right), op, 0.0)
    return Check(spec, left, op, _evaluate(right, {}))


# -- expected.yaml ------------------------------------------------------------------------------
@dataclass
class Claim:
    id: str
    description: str
    metrics: list[str]
    checks: dict[str, Check]
    expected: dict[str, str]
    stat: str = "mean"
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
        allowed = {"id", "description", "paper_value", "source", "confidence", "metrics", "stat", "checks",
                   "expected", "reason"}
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
            expected={t: expected.get(t, "reproduced") for t in checks}, stat=stat,
            paper_value=raw.get("paper_value"), source=raw.get("source"),
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

    @property
    def expected(self) -> str:
        return self.claim.expected[self.tier]

    @property
    def matches(self) -> bool:
        return self.status == self.expected


def judge(claim: Claim, tier: str, runs: list[LoadedRun], paper: str) -> Verdict:
    """One claim at one tier, from the latest run per seed of the tier's own preset."""
    check = claim.checks[tier]
    failed = [r for r in runs if r.record["status"] != "ok"]
    if failed:
        notes = "; ".join(f"seed {r.seed} {r.record['status']}: {r.record['reason']}" for r in failed)
        return Verdict(paper, tier, claim, "not_reproduced", note=notes)
    if len(runs) < MIN_SEEDS[tier]:
        return Verdict(paper, tier, claim, "not_run",
                       note=f"needs {MIN_SEEDS[tier]} seed(s) at tier {tier}, found {len(runs)}")
    values = []
    for run in runs:
        missing = check.names - set(run.record["metrics"])
        if missing:
            raise ExpectedError(f"{run.path}: lacks metric(s) {', '.join(sorted(missing))} "
                                f"that claim {claim.id!r} needs")
        values.append(_evaluate(check.lhs, run.record["metrics"]))
    summary = summarize(values, claim.stat)
    status = "reproduced" if check.passes(summary.value) else "not_reproduced"
    return Verdict(paper, tier, claim, status, summary)


def expected_path(paper: Paper) -> Path:
    return paper.folder / "expected.yaml"


def check_paper(paper: Paper, tier: str) -> tuple[list[Verdict], list[str]]:
    """Verdicts for every claim with a check at `tier`, and the malformed files met on the way."""
    runs, errors = scan(paper.name, tier)
    try:
        expected = load_expected(expected_path(paper))
    except ExpectedError as err:
        return [], errors + [str(err)]
    runs, _ = judged_runs(runs, paper.runner(), tier)
    verdicts = []
    for claim in expected.claims:
        if tier not in claim.checks:
            continue
        try:
            verdict = judge(claim, tier, runs, paper.name)
        except ExpectedError as err:
            errors.append(str(err))
            continue
        verdicts.append(verdict)
    return verdicts, errors


def mismatch(verdict: Verdict) -> str:
    """Why `repro check` fails on a verdict whose status differs from the recorded one."""
    detail = f" ({verdict.note})" if verdict.note else ""
    return (f"{verdict.paper}/{verdict.claim.id} at tier {verdict.tier}: status {verdict.status}, "
            f"expected.yaml records {verdict.expected}{detail}")
