"""AEVB (Kingma & Welling 2013): the runner. One seed trains, for each dataset and latent size Nz,
one VAE (§5, Appendix C) and traces Figure 2:

  mnist   784-500-Nz-500-784, Bernoulli decoder, dynamically binarized training images
  frey    560-200-Nz-200-560, Gaussian decoder with sigmoid means, pixels in [0, 1]

For each model: the Adagrad step size is picked from the paper's grid by a short pilot on the
training set (§5), then training runs to `*_samples` training samples evaluated, the lower bound on
the test set and on an equally large training subset is logged at log-spaced sample counts
(Figure 2's axes), and for MNIST log p(x) is estimated by importance sampling on test images.
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from common.config import check_range
from common.context import RunContext, fork_rng
from common.papers import UsageError
from reproductions.vae.vae import VAE, log_px_importance

# The paper tier (§5, Appendix C). Only these keys are --set-able; each is typed by its value.
CONFIG = {
    "mnist_latents": [3, 5, 10, 20, 200],  # Fig. 2 panels
    "frey_latents": [2, 5, 10, 20],
    "mnist_hidden": 500,
    "frey_hidden": 200,                 # "to reduce overfitting" on the small Frey Face set
    "mnist_samples": 100_000_000,       # Fig. 2 x-axis ends at 1e8 training samples evaluated
    "frey_samples": 100_000_000,
    "batch_size": 100,                  # M = 100, L = 1
    "step_sizes": [0.01, 0.02, 0.1],    # Adagrad global step sizes the paper chose from
    "pilot_steps": 300,                 # "based on performance on the training set in the first few iterations"
    "weight_decay": 1.0,                # prior p(θ) = N(0, I), i.e. log p(θ)/N added to the per-datapoint bound
    "init_std": 0.01,                   # weights ~ N(0, 0.01)
    "frey_test": 200,                   # held-out Frey faces (seeded split, the same for every seed)
    "eval_from": 100_000,               # first evaluation point (Fig. 2 starts at 1e5)
    "evals_per_decade": 5,              # log-spaced evaluation points
    "eval_train": 10_000,               # training subset scored at each point (the test set's size)
    "is_images": 1000,                  # test images whose log p(x) is importance-sampled
    "is_samples": 1000,                 # K, proposals per image
    "checkpoint_every": 200_000,        # samples between resume checkpoints
}

TIERS = {
    # seconds, deterministic: small nets, few samples, two latent sizes per dataset
    "smoke": {"mnist_latents": [3, 20], "frey_latents": [2], "mnist_hidden": 32, "frey_hidden": 16,
              "mnist_samples": 6_000, "frey_samples": 4_000, "pilot_steps": 5, "eval_from": 1000,
              "evals_per_decade": 2, "eval_train": 500, "is_images": 50, "is_samples": 20,
              "checkpoint_every": 2000},
    # ~10 min of single-thread CPU time per seed (README, measured): four MNIST Nz and two Frey Nz to 1e6 samples each
    "cpu": {"mnist_latents": [3, 10, 20, 200], "frey_latents": [2, 10], "mnist_samples": 1_000_000,
            "frey_samples": 1_000_000},
}
FEW_STEPS = {"mnist_latents": [20], "frey_latents": [2], "mnist_samples": 200, "frey_samples": 200,
             "pilot_steps": 1, "eval_from": 100, "eval_train": 100, "is_images": 10, "is_samples": 5}
LIBRARIES = ("scipy",)
DATASETS = ("mnist", "frey-faces")

IMAGE_SHAPES = {"mnist": (28, 28), "frey": (28, 20)}
FREY_FACES = 1965  # images in the Frey Face set
BINARIZATION_SEED = 1234  # the fixed binarization of the evaluation images, shared by all seeds
FREY_SPLIT_SEED = 4321


# -- data -------------------------------------------------------------------------------------------
def load_mnist(cfg: dict) -> dict[str, torch.Tensor]:
    """Training images as grey levels in [0, 1] (binarized afresh by sampling at every step), and
    fixed, once-sampled binarizations of the test set and of a training subset for evaluation."""
    from common.datasets import mnist
    train = torch.from_numpy(mnist("train")[0].reshape(-1, 784).astype(np.float32) / 255)
    test = torch.from_numpy(mnist("test")[0].reshape(-1, 784).astype(np.float32) / 255)
    g = torch.Generator().manual_seed(BINARIZATION_SEED)
    subset = torch.randperm(len(train), generator=g)[:cfg["eval_train"]]
    return {"train": train, "binarize": True,
            "eval_train": torch.bernoulli(train[subset], generator=g),
            "test": torch.bernoulli(test, generator=g)}


def load_frey(cfg: dict) -> dict[str, torch.Tensor]:
    from common.datasets import frey_faces
    faces = torch.from_numpy(frey_faces().reshape(-1, 560).astype(np.float32) / 255)
    order = torch.randperm(len(faces), generator=torch.Generator().manual_seed(FREY_SPLIT_SEED))
    train, test = faces[order[cfg["frey_test"]:]], faces[order[:cfg["frey_test"]]]
    return {"train": train, "binarize": False, "eval_train": train[:len(test)], "test": test}


def validate(cfg: dict) -> None:
    """Everything --set can get wrong, before any data loads (harness contract)."""
    for key in ("mnist_latents", "frey_latents", "step_sizes"):
        if not cfg[key]:
            raise UsageError(f"{key} must list at least one value")
    check_range("mnist_latents", cfg["mnist_latents"], 1)
    check_range("frey_latents", cfg["frey_latents"], 1)
    check_range("step_sizes", cfg["step_sizes"], 1e-12, what=" (Adagrad step sizes are positive)")
    for key in ("mnist_hidden", "frey_hidden", "batch_size", "pilot_steps", "eval_from", "evals_per_decade",
                "eval_train", "is_images", "is_samples", "checkpoint_every", "mnist_samples", "frey_samples"):
        check_range(key, cfg[key], 1)
    check_range("weight_decay", cfg["weight_decay"], 0)
    check_range("init_std", cfg["init_std"], 0)
    check_range("frey_test", cfg["frey_test"], 1, FREY_FACES - 1)
    check_range("eval_train", cfg["eval_train"], 1, 60_000, what=" (MNIST's training images)")
    check_range("is_images", cfg["is_images"], 1, 10_000, what=" (MNIST's test images)")


def eval_points(cfg: dict, total: int) -> list[int]:
    """Log-spaced sample counts from `eval_from` to `total` (Figure 2's log x-axis), ending at total."""
    first = min(cfg["eval_from"], total)
    n = max(int(round(math.log10(total / first) * cfg["evals_per_decade"])), 0) + 1
    points = sorted({int(round(p)) for p in np.geomspace(first, total, n)})
    return points


# -- training -----------------------------------------------------------------------------------------
class Trainer:
    """Minibatch SGVB (Algorithm 1) with Adagrad, on a shuffled pass over the training set per epoch."""

    def __init__(self, model: VAE, data: dict, cfg: dict, step_size: float):
        self.model, self.data, self.cfg = model, data, cfg
        self.opt = torch.optim.Adagrad(model.parameters(), lr=step_size)
        self.prior_scale = cfg["weight_decay"] / len(data["train"])  # log p(θ) / N per datapoint
        self.samples, self.order, self.cursor = 0, None, 0  # the first epoch's order is drawn at the first batch

    def batch(self) -> torch.Tensor:
        m = self.cfg["batch_size"]
        if self.order is None or self.cursor + m > len(self.order):
            self.order, self.cursor = torch.randperm(len(self.data["train"])), 0
        x = self.data["train"][self.order[self.cursor:self.cursor + m]]
        self.cursor += m
        return torch.bernoulli(x) if self.data["binarize"] else x

    def step(self) -> float:
        bound = self.model.elbo(self.batch()).mean()
        prior = sum((p ** 2).sum() for p in self.model.parameters())
        loss = -bound + 0.5 * self.prior_scale * prior
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.samples += self.cfg["batch_size"]
        return bound.item()

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "samples": self.samples,
                "order": self.order, "cursor": self.cursor}

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.samples, self.order, self.cursor = state["samples"], state["order"], state["cursor"]


@torch.no_grad()
def mean_elbo(model: VAE, x: torch.Tensor, batch: int = 2000) -> float:
    return float(torch.cat([model.elbo(x[i:i + batch]) for i in range(0, len(x), batch)]).mean())


def pick_step_size(initial: VAE, data: dict, cfg: dict) -> tuple[float, dict[float, float]]:
    """§5: the Adagrad global step size from the grid that does best on the training set in the first
    `pilot_steps` iterations (mean bound over their second half), each pilot from the same `initial`
    network and the same random streams."""
    scores = {}
    for step_size in cfg["step_sizes"]:
        trainer = Trainer(copy.deepcopy(initial), data, cfg, step_size)
        with fork_rng(data["train"].device):  # the CPU's streams and the device's (the Bernoulli draws)
            bounds = [trainer.step() for _ in range(cfg["pilot_steps"])]
        score = float(np.mean(bounds[len(bounds) // 2:]))
        scores[step_size] = score if math.isfinite(score) else -math.inf
    return max(scores, key=scores.get), scores


def train_one(name: str, nz: int, data: dict, cfg: dict, ctx: RunContext) -> dict[str, float]:
    """Train one VAE to the sample budget, logging Figure 2's curves; returns its final metrics."""
    key = f"{name}_nz{nz}"
    hidden, total = cfg[f"{name}_hidden"], cfg[f"{name}_samples"]
    likelihood = "bernoulli" if name == "mnist" else "gaussian"

    model = VAE(data["train"].shape[1], hidden, nz, likelihood, cfg["init_std"]).to(ctx.device)
    saved = ctx.restore(key)
    if saved is None:
        step_size, _ = pick_step_size(model, data, cfg)
        trainer = Trainer(model, data, cfg, step_size)
    else:
        step_size = saved["step_size"]
        trainer = Trainer(model, data, cfg, step_size)
        trainer.load(saved["trainer"])
    points = [p for p in eval_points(cfg, total) if p > trainer.samples]
    last_checkpoint, clock, start_samples = trainer.samples, time.perf_counter(), trainer.samples
    bar = ctx.progress(range(trainer.samples, total, cfg["batch_size"]), desc=f"{key} (Adagrad {step_size})")
    for _ in bar:
        trainer.step()
        if points and trainer.samples >= points[0]:
            points.pop(0)
            ctx.log(trainer.samples, dataset=name, nz=nz, elbo_train=mean_elbo(trainer.model, data["eval_train"]),
                    elbo_test=mean_elbo(trainer.model, data["test"]))
        if trainer.samples - last_checkpoint >= cfg["checkpoint_every"]:
            last_checkpoint = trainer.samples
            ctx.checkpoint(key, {"step_size": step_size, "trainer": trainer.state()})
    seconds = time.perf_counter() - clock
    if trainer.samples > start_samples:
        ctx.record_throughput(f"{key}_samples_per_s", (trainer.samples - start_samples) / seconds)

    model = trainer.model
    metrics = {f"{key}_elbo_test": mean_elbo(model, data["test"]),
               f"{key}_elbo_train": mean_elbo(model, data["eval_train"]),
               f"{key}_step_size": step_size}
    if name == "mnist":  # log p(x) by importance sampling vs the bound, on the same test images
        x = data["test"][:cfg["is_images"]]
        metrics[f"{key}_logpx_is"] = float(log_px_importance(model, x, cfg["is_samples"]).mean())
        metrics[f"{key}_elbo_is_images"] = mean_elbo(model, x)
    ctx.save_arrays(key, samples=model.sample(64).reshape(64, *IMAGE_SHAPES[name]),
                    **({"manifold": manifold(model, name)} if nz == 2 else {}))
    return metrics


def manifold(model: VAE, name: str, side: int = 15) -> torch.Tensor:
    """Fig. 4: decoder means over a grid of the 2-D latent space, through the inverse CDF of N(0, 1)."""
    p = torch.linspace(0.05, 0.95, side, device=model.enc_hidden.weight.device)
    g = torch.distributions.Normal(0.0, 1.0).icdf(p)
    z = torch.stack(torch.meshgrid(g.flip(0), g, indexing="ij"), -1).reshape(-1, 2)
    return model.mean_image(z).reshape(side, side, *IMAGE_SHAPES[name])


def run(cfg: dict, ctx: RunContext) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for name, loader in (("mnist", load_mnist), ("frey", load_frey)):
        # loaded (and the evaluation images binarized) on the CPU, then kept on the device whole
        data = {k: v.to(ctx.device) if isinstance(v, torch.Tensor) else v for k, v in loader(cfg).items()}
        for nz in cfg[f"{name}_latents"]:  # each model is a stage: a resumed run skips the finished ones
            metrics.update(ctx.stage(f"{name}_nz{nz}", lambda: train_one(name, nz, data, cfg, ctx)))
    return metrics
