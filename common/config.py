"""Resolving a run's configuration: CONFIG (paper values) <- tier preset <- experiment point <- `--set`.

Values given on the command line are parsed as data, typed by the value CONFIG holds for that key;
nothing is ever evaluated. A list is written comma-separated (`--set widths=64,32`) and each item is
typed like the default's first item; a nested section is reached with dots (`--set sac.lr=3e-4`).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
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
            value = float(text)
            if not math.isfinite(value):  # no key takes NaN or infinity
                raise ValueError(text)
            return value
    except ValueError:
        valid = "true or false" if isinstance(like, bool) else "a finite float" if kind == "float" else f"a {kind}"
        raise UsageError(f"--set {key}={text}: {key} takes {valid}") from None
    return text


def parse_value(key: str, text: str, like):
    """`text` read as the type of `like`; a list is comma-separated, each item typed like like[0]."""
    if isinstance(like, dict):
        raise UsageError(f"--set {key}: is a section; set one of its keys: "
                         f"{', '.join(f'{key}.{k}' for k in sorted(like))}")
    if isinstance(like, (list, tuple)):
        items = [t.strip() for t in text.split(",") if t.strip()]
        element = like[0] if like else ""
        return [_parse_scalar(key, t, element) for t in items]
    return _parse_scalar(key, text, like)


def flat_keys(config: dict, prefix: str = "") -> list[str]:
    """Every settable key, sections spelled with dots: ["lr", "sac.lr", "sac.tau", ...]."""
    keys = []
    for key, value in config.items():
        if isinstance(value, dict):
            keys += flat_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def lookup(config: dict, dotted: str):
    """The value at `"sac.lr"`; KeyError when there is none."""
    value = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def parse_sets(runner: ModuleType, sets: list[str]) -> dict:
    """`["lr=0.1", "sac.tau=0.01"]` -> `{"lr": 0.1, "sac.tau": 0.01}`, checked against CONFIG."""
    overrides = {}
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"--set {item!r}: expected key=value")
        try:
            like = lookup(runner.CONFIG, key)
        except KeyError:
            raise UsageError(f"--set {key}: unknown key; valid keys: {', '.join(sorted(flat_keys(runner.CONFIG)))}") \
                from None
        overrides[key] = parse_value(key, text, like)
    return overrides


def check_tier(tier: str) -> str:
    if tier not in TIER_NAMES:
        raise UsageError(f"unknown tier {tier!r}; valid tiers: {', '.join(TIER_NAMES)}")
    return tier


def merge(base: dict, changes: dict) -> dict:
    """`base` with `changes` applied: nested sections merge key by key, a dotted key sets one leaf."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        *path, leaf = key.split(".")
        target = out
        for part in path:
            target = target.setdefault(part, {})
        if isinstance(value, dict) and isinstance(target.get(leaf), dict):
            target[leaf] = merge(target[leaf], value)
        else:
            target[leaf] = copy.deepcopy(value)
    return out


def resolve(runner: ModuleType, tier: str, overrides: dict, point=None) -> dict:
    """CONFIG <- TIERS[tier] <- the point's settings <- `--set` overrides (`point` is an
    `experiments.Point` or None), restricted to the point's scope when it has one."""
    check_tier(tier)
    cfg = merge(runner.CONFIG, runner.TIERS.get(tier, {}))
    if point is not None:
        cfg = merge(cfg, point.settings)
    cfg = merge(cfg, overrides)
    if point is not None and point.scope is not None:
        cfg = {key: value for key, value in cfg.items() if key in point.scope}
    return cfg


def validate(runner: ModuleType, cfg: dict) -> None:
    """The runner's own checks of a resolved config; they raise UsageError (one line, exit 2)."""
    runner.validate(cfg)


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _as_json(value):
    return json.loads(json.dumps(value, default=str))


def _read_as(stored, like):
    """A stored config value read under the current CONFIG's type: records written while list keys
    were comma-separated strings ("3,10,20") hold the same list as [3, 10, 20] does now, and those
    written while sections were "name=value" strings ("urnn=128,lstm=40") the same section."""
    if isinstance(like, dict) and isinstance(stored, dict):
        return {k: _read_as(v, like.get(k)) for k, v in stored.items()}
    if isinstance(like, dict) and isinstance(stored, str) and "=" in stored:
        pairs = dict(item.split("=", 1) for item in stored.split(",") if "=" in item)
        return {k: _read_as(v, like.get(k)) if not isinstance(like.get(k), (int, float)) else
                _parse_or_keep(k, v, like[k]) for k, v in pairs.items()}
    if isinstance(like, (list, tuple)) and isinstance(stored, str):
        try:
            return parse_value("", stored, like)
        except UsageError:
            return stored
    if isinstance(like, float) and isinstance(stored, int) and not isinstance(stored, bool):
        return float(stored)
    return stored


def _parse_or_keep(key: str, text: str, like):
    try:
        return _parse_scalar(key, text, like)
    except UsageError:
        return text


def read_config(runner: ModuleType, stored: dict) -> dict:
    """A record's stored config with each value read as the runner's CONFIG types it today."""
    return _read_as(stored, runner.CONFIG)


def same_config(runner: ModuleType, stored: dict, current: dict) -> bool:
    """Whether a record's config is the config `current` (the tier's or point's, resolved now)."""
    return _as_json(read_config(runner, stored)) == _as_json(current)


# -- checks a runner's validate() uses ---------------------------------------------------------------
def check_names(key: str, names, valid) -> list[str]:
    """A list-valued key whose items must come from `valid`."""
    names = [names] if isinstance(names, str) else list(names)
    bad = [n for n in names if n not in valid]
    if bad:
        raise UsageError(f"{key}: unknown {', '.join(map(repr, bad))}; valid: {', '.join(map(str, valid))}")
    return names


def check_range(key: str, value, low=None, high=None, what: str = "") -> None:
    """`low <= value <= high` for a number or for every item of a list (None: unbounded)."""
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise UsageError(f"{key}: {item!r} is not a number")
        if not math.isfinite(item):  # NaN compares false with every bound
            raise UsageError(f"{key} must be a finite number, got {value}")
        if (low is not None and item < low) or (high is not None and item > high):
            bounds = f">= {low}" if high is None else f"<= {high}" if low is None else f"in [{low}, {high}]"
            raise UsageError(f"{key} must be {bounds}{what}, got {value}")
