"""The 13 papers the suite knows, and how a paper's folder plugs into the harness.

A paper is *implemented* when `reproductions/<name>/runner.py` exists. That module defines:

    CONFIG: dict         every hyper-parameter, at the paper's own values (the `paper` tier);
                         the only keys `--set` accepts, each typed by its value here. Lists and
                         nested sections are real values (`--set widths=64,32`, `--set sac.lr=1e-3`)
    TIERS: dict          {"smoke": {...}, "cpu": {...}}: overrides of CONFIG per tier ("paper"
                         defaults to {}: the paper's own values)
    FEW_STEPS: dict      overrides that cut any tier to a couple of steps (used by the tests)
    LIBRARIES: tuple     distributions whose versions go into the run record, beyond python/torch/numpy
    DATASETS: tuple      data-layer names the runner reads (tests skip with a reason if missing)
    run(cfg, ctx) -> dict[str, float]   one seed; returns the final metrics

and may define

    SEEDS: dict          seeds per tier (default `DEFAULT_SEEDS`: 1 at smoke, 3 at cpu and paper)
    POINTS: dict         {tier: [Point, ...]}: the named configurations of a tier's experiment
                         (`common.experiments.grid`); each (point, seed) is its own run and record
    validate(cfg)        raises `UsageError` for a value out of range or of the wrong kind; called on
                         the resolved config before anything loads, trains or is written

and optionally `figures.py` with `figures(runs, out_dir)` for the report: (caption, PNG path) and
(caption, pandas.DataFrame) pairs (the contract is in `common/report.py`).
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
REPRODUCTIONS = ROOT / "reproductions"
TIER_NAMES = ("smoke", "cpu", "paper")
DEFAULT_SEEDS = {"smoke": 1, "cpu": 3, "paper": 3}


def _no_checks(cfg: dict) -> None:
    return None


def _fill_defaults(module: ModuleType) -> ModuleType:
    """The contract's optional parts, filled in once per module so the harness reads them plainly."""
    tiers = dict(module.TIERS)
    tiers.setdefault("paper", {})
    module.TIERS = tiers
    module.SEEDS = {**DEFAULT_SEEDS, **getattr(module, "SEEDS", {})}
    module.POINTS = dict(getattr(module, "POINTS", {}))
    if not hasattr(module, "validate"):
        module.validate = _no_checks
    return module


@dataclass(frozen=True)
class Paper:
    name: str
    citation: str
    module: str | None = None  # import path of the runner; default reproductions.<name>.runner

    @property
    def folder(self) -> Path:
        return REPRODUCTIONS / self.name

    @property
    def implemented(self) -> bool:
        return self.module is not None or (self.folder / "runner.py").exists()

    def runner(self) -> ModuleType:
        return _fill_defaults(importlib.import_module(self.module or f"reproductions.{self.name}.runner"))

    def figures_module(self) -> ModuleType | None:
        if not (self.folder / "figures.py").exists():
            return None
        return importlib.import_module(f"reproductions.{self.name}.figures")


PAPERS = {p.name: p for p in [
    Paper("dqn_atari", "Mnih et al. 2013, Playing Atari with Deep Reinforcement Learning"),
    Paper("vae", "Kingma & Welling 2013, Auto-Encoding Variational Bayes"),
    Paper("gan", "Goodfellow et al. 2014, Generative Adversarial Nets"),
    Paper("gran", "Im et al. 2016, Generating Images with Recurrent Adversarial Networks"),
    Paper("urnn", "Arjovsky, Shah & Bengio 2016, Unitary Evolution Recurrent Neural Networks"),
    Paper("elu", "Clevert, Unterthiner & Hochreiter 2015, Fast and Accurate Deep Network Learning by ELUs"),
    Paper("irnn", "Le, Jaitly & Hinton 2015, A Simple Way to Initialize Recurrent Networks of ReLUs"),
    Paper("binaryconnect", "Lin, Courbariaux, Memisevic & Bengio 2015, Neural Networks with Few Multiplications"),
    Paper("pearl", "Rakelly et al. 2019, Efficient Off-Policy Meta-RL via Probabilistic Context Variables"),
    Paper("bear", "Kumar et al. 2019, Stabilizing Off-Policy Q-Learning via Bootstrapping Error Reduction"),
    Paper("siren", "Sitzmann et al. 2020, Implicit Neural Representations with Periodic Activation Functions"),
    Paper("nmf", "Lee & Seung 2001, Algorithms for Non-negative Matrix Factorization"),
    Paper("simclr_data", "Cole et al. 2022, When Does Contrastive Visual Representation Learning Work?"),
]}


class UsageError(ValueError):
    """Bad input from the user: printed as one line, exit code 2."""


def _extra_papers() -> dict[str, Paper]:
    """Papers outside reproductions/, from `REPRO_EXTRA_PAPERS="name=package.module,..."` (a runner
    module importable from the working directory; the test suite's toy papers use it, so that the
    processes a sweep starts know them too)."""
    extra = {}
    for item in filter(None, os.environ.get("REPRO_EXTRA_PAPERS", "").split(",")):
        name, sep, module = item.partition("=")
        if not sep or not module:
            raise UsageError(f"REPRO_EXTRA_PAPERS: {item!r} is not name=package.module")
        extra[name] = Paper(name, f"{name} (extra paper from {module})", module=module)
    return extra


def get_paper(name: str) -> Paper:
    papers = {**PAPERS, **_extra_papers()}
    if name not in papers:
        raise UsageError(f"unknown paper {name!r}; valid papers: {', '.join(papers)}")
    return papers[name]


def implemented_papers() -> list[Paper]:
    return [p for p in PAPERS.values() if p.implemented]
