"""The 13 papers the suite knows, and how a paper's folder plugs into the harness.

A paper is *implemented* when `reproductions/<name>/runner.py` exists. That module defines:

    CONFIG: dict         every hyper-parameter, at the paper's own values (the `paper` tier);
                         the only keys `--set` accepts, each typed by its value here
    TIERS: dict          {"smoke": {...}, "cpu": {...}, "paper": {...}}: overrides of CONFIG
    SEEDS: dict          default number of seeds per tier, e.g. {"smoke": 1, "cpu": 3, "paper": 3}
    FEW_STEPS: dict      overrides that cut any tier to a couple of steps (used by the tests)
    LIBRARIES: tuple     distributions whose versions go into the run record, beyond python/torch/numpy
    DATASETS: tuple      data-layer names the runner reads (tests skip with a reason if missing)
    run(cfg, ctx) -> dict[str, float]   one seed; returns the final metrics

and optionally `figures.py` with `figures(runs, out_dir) -> list[(caption, png_path)]` for the report.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
REPRODUCTIONS = ROOT / "reproductions"
TIER_NAMES = ("smoke", "cpu", "paper")


@dataclass(frozen=True)
class Paper:
    name: str
    citation: str

    @property
    def folder(self) -> Path:
        return REPRODUCTIONS / self.name

    @property
    def implemented(self) -> bool:
        return (self.folder / "runner.py").exists()

    def runner(self) -> ModuleType:
        return importlib.import_module(f"reproductions.{self.name}.runner")

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


def get_paper(name: str) -> Paper:
    if name not in PAPERS:
        raise UsageError(f"unknown paper {name!r}; valid papers: {', '.join(PAPERS)}")
    return PAPERS[name]


def implemented_papers() -> list[Paper]:
    return [p for p in PAPERS.values() if p.implemented]
