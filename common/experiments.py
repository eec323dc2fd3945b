"""Experiments: a tier as a set of named configurations (points), and the artifacts runs hand on.

A runner declares `POINTS = {"cpu": grid(...), ...}`. Each point is a name, the labels that identify
it in claims and tables, the config settings it applies on top of the tier, and the artifacts it
needs from other points' runs:

    POINTS = {"cpu": grid(dataset=["random", "medium"], algo=["bear", "bc"],
                          requires={"data": Needs("make_data", seed=0)})
                     + [Point("make_data", {"step": "generate"}, {"stage": "generate"})]}

A claim names a point's metric as `metric@key=value[,key=value]` (`return@algo=bear,dataset=random`);
the labels given must pick out exactly one point of the tier.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from common.papers import UsageError


@dataclass(frozen=True)
class Needs:
    """An artifact a point consumes: made by the run of `point` with the consumer's own seed, or
    with a fixed `seed` (an artifact made once for every seed, e.g. a generated dataset)."""
    point: str
    seed: int | None = None


@dataclass(frozen=True)
class Point:
    name: str
    labels: dict                                   # e.g. {"algo": "bear", "dataset": "random"}
    settings: dict                                 # config overrides (dotted keys allowed)
    requires: dict = field(default_factory=dict)   # artifact name -> Needs
    # the top-level config keys the point's run reads; None: all. A scoped point's config, its hash and
    # the address of what it publishes leave the other keys out, so changing them neither reruns it in a
    # sweep nor rebuilds its artifacts (a generated dataset does not depend on the learner's settings)
    scope: tuple[str, ...] | None = None
    # the seeds a sweep runs this point with; None: the tier's. A point made once for every seed (its
    # consumers' Needs give a fixed seed) names that seed, so a sweep does not make it again per seed
    seeds: tuple[int, ...] | None = None

    def matches(self, selector: dict) -> bool:
        return all(str(self.labels.get(k)) == str(v) for k, v in selector.items())


def point_name(labels: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def grid(requires: dict | None = None, scope: tuple[str, ...] | None = None, **axes) -> list[Point]:
    """Every combination of the axes. An axis is a list of values for the config key of the same
    name, or a mapping label -> settings (`pretrain_size={"2k": {"pretrain_size": 2000}}`)."""
    choices = []
    for key, values in axes.items():
        if isinstance(values, dict):
            choices.append([(key, label, dict(settings)) for label, settings in values.items()])
        else:
            choices.append([(key, value, {key: value}) for value in values])
    points = []
    for combo in itertools.product(*choices):
        labels = {key: label for key, label, _ in combo}
        settings = {k: v for _, _, s in combo for k, v in s.items()}
        points.append(Point(point_name(labels), labels, settings, dict(requires or {}), scope))
    return points


def tier_points(runner, tier: str) -> list[Point]:
    """The tier's points, producers before their consumers; [] when the tier has no experiment."""
    points = list(runner.POINTS.get(tier, []))
    by_name = {p.name: p for p in points}
    if len(by_name) != len(points):
        raise UsageError(f"tier {tier}: two points share a name")
    ordered, placed = [], set()

    def place(point, chain=()):
        if point.name in placed:
            return
        if point.name in chain:
            raise UsageError(f"tier {tier}: points require each other in a cycle: {' -> '.join(chain)}")
        for needs in point.requires.values():
            if needs.point not in by_name:
                raise UsageError(f"point {point.name!r} requires unknown point {needs.point!r}")
            place(by_name[needs.point], chain + (point.name,))
        placed.add(point.name)
        ordered.append(point)

    for point in points:
        place(point)
    return ordered


def get_point(runner, tier: str, name: str | None) -> Point | None:
    """The named point of a tier; None for a tier without points (and no name given)."""
    points = tier_points(runner, tier)
    if name is None:
        return None
    for point in points:
        if point.name == name:
            return point
    valid = ", ".join(p.name for p in points) or "none (this tier has no points)"
    raise UsageError(f"unknown point {name!r} at tier {tier}; valid points: {valid}")


def select_point(points: list[Point], selector: dict, where: str) -> Point:
    """The one point whose labels include `selector`."""
    found = [p for p in points if p.matches(selector)]
    if len(found) != 1:
        problem = "matches no point" if not found else f"matches {len(found)} points"
        raise UsageError(f"{where}: {point_name(selector)} {problem}; points: {', '.join(p.name for p in points)}")
    return found[0]


def depth(point: Point, points: list[Point]) -> int:
    """0 for a point that needs nothing; otherwise one more than its deepest producer."""
    by_name = {p.name: p for p in points}
    return max((1 + depth(by_name[n.point], points) for n in point.requires.values()), default=0)
