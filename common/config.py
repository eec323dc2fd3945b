"""Resolving a run's configuration: CONFIG (paper values) <- tier preset <- `--set key=value`.

Values given on the command line are parsed as data, typed by the value CONFIG holds for that key;
nothing is ever evaluated.
"""
from __future__ import annotations

import hashlib
import json
from types import ModuleType

from common.papers import TIER_NAMES, UsageError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse_scalar(key: str, text: str, like):
    kind = type(like).__name__
    try:
        if isinstance(like, bool):
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
    except ValueError:
        valid = "true or false" if isinstance(like, bool) else f"a {kind}"
        raise UsageError(f"--set {key}={text}: {key} takes {valid}") from None
    return text


def parse_value(key: str, text: str, like):
    if isinstance(like, (list, tuple)):
        items = [t for t in text.split(",") if t]
        element = like[0] if like else ""
        return type(like)(_parse_scalar(key, t, element) for t in items)
    return _parse_scalar(key, text, like)


def parse_sets(runner: ModuleType, sets: list[str]) -> dict:
    """`["lr=0.1", "steps=5"]` -> `{"lr": 0.1, "steps": 5}`, checked against the runner's CONFIG."""
    overrides = {}
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"--set {item!r}: expected key=value")
        if key not in runner.CONFIG:
            raise UsageError(f"--set {key}: unknown key; valid keys: {', '.join(sorted(runner.CONFIG))}")
        overrides[key] = parse_value(key, text, runner.CONFIG[key])
    return overrides


def check_tier(tier: str) -> str:
    if tier not in TIER_NAMES:
        raise UsageError(f"unknown tier {tier!r}; valid tiers: {', '.join(TIER_NAMES)}")
    return tier


def resolve(runner: ModuleType, tier: str, overrides: dict) -> dict:
    check_tier(tier)
    return {**runner.CONFIG, **runner.TIERS[tier], **overrides}


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]


def parse_names(text: str, key: str, valid: tuple[str, ...]) -> list[str]:
    """A comma-separated list-valued key, e.g. "elu,relu", checked against the names it may hold."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in valid]
    if bad:
        raise UsageError(f"{key}: unknown {', '.join(map(repr, bad))}; valid: {', '.join(valid)}")
    return names


def parse_numbers(text: str, key: str, kind=float, positive: bool = False) -> list:
    """A comma-separated list of numbers, e.g. "0.01,0.001", each parsed as `kind` (never evaluated)."""
    try:
        values = [kind(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"{key} must be comma-separated {kind.__name__}s, got {text!r}") from None
    if positive and any(v <= 0 for v in values):
        raise UsageError(f"{key} must list positive numbers, got {text!r}")
    return values
