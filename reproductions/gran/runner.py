"""GRAN (Im et al. 2016): the runner. One seed:

  1. train GRANs with T = 1, 3, 5 canvas steps and a DCGAN-style one-step baseline, each with its own
     discriminator (§3, §5), and keep a snapshot of the GRAN with T = `compare_steps` after only
     `early_steps` updates (papers.md §4 check 2)
  2. battle them with the GAM (§4): every pair, each model against itself with independent samples,
     the trained GRAN against its early snapshot, and one battle swapped to check r -> 1/r
  3. save sample grids, the step-by-step canvases (Fig. 3 style) and the battle table

Follows the official jiwoongim/GRAN code (gran.py, recGenI28.py, recGenI32.py, battle.py,
main_granI_cifar10.py) for the recurrence, the losses and the paper-tier optimizer settings; see README.md.
"""
from __future__ import annotations

import copy
import itertools
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from common.config import check_names, check_range
from common.context import RunContext
from common.papers import UsageError
from reproductions.gran.gam import Battle, as_model, gam_battle
from reproductions.gran.gran import GRAN, DCGANGenerator, Discriminator, sample_noise

# Paper tier = CIFAR-10 with the official main_granI_cifar10.py settings.
CONFIG = {
    "dataset": "cifar10",          # "mnist" (28x28x1) or "cifar10" (32x32x3)
    "train_size": 50000,           # first N training images (MNIST: train[:50000], the rest is validation)
    "test_size": 0,                # test images the battles use; 0 = the whole test split
    "noise_dim": 100,              # num_z = 100
    "gen_width": 1024,             # decoder's first feature map: nkerns[0] * ckern = 8 * 128
    "dis_width": 256,              # discriminator's first conv width (doubles per layer)
    "gran_steps": [1, 3, 5],       # the GRANs trained and battled (T values)
    "compare_steps": 3,            # the GRAN used against DCGAN-vs-early checks (official num_steps = 3)
    "batch_size": 100,
    "lr_gen": 1e-4,                # epsilon_gen
    "lr_dis": 4e-5,                # epsilon_dis
    "beta1": 0.9,                  # official ADAM(beta1=0.1) in its convention = momentum 0.9
    "train_steps": 10000,          # 20 epochs of 50,000 images at batch 100 (num_epoch = 20)
    "early_steps": 500,            # the short-budget snapshot: one epoch (papers.md check 2)
    "n_samples": 1000,             # samples per generator per battle (battle.py num_sam = 1000)
    "r_test_tol": 0.1,             # |r_test - 1| <= tol counts as r_test ≈ 1 (README, "Claims")
    "log_every": 100,
    "checkpoint_every": 1000,
}

TIERS = {
    # seconds, deterministic: tiny nets, a few steps
    "smoke": {"dataset": "mnist", "train_size": 1000, "test_size": 500, "noise_dim": 16, "gen_width": 16,
              "dis_width": 8, "batch_size": 50, "lr_gen": 2e-4, "lr_dis": 2e-4, "beta1": 0.5, "train_steps": 30,
              "early_steps": 5, "n_samples": 500, "log_every": 10, "checkpoint_every": 10},
    # MNIST, small DCGAN-style nets, Adam 2e-4 / β1 0.5 (DCGAN), 2 epochs; ~12 min per seed on one idle thread
    "cpu": {"dataset": "mnist", "noise_dim": 100, "gen_width": 64, "dis_width": 32, "lr_gen": 2e-4,
            "lr_dis": 2e-4, "beta1": 0.5, "train_steps": 1000, "early_steps": 100, "n_samples": 10000,
            "log_every": 50, "checkpoint_every": 250},
}
FEW_STEPS = {"dataset": "mnist", "train_size": 500, "test_size": 200, "gen_width": 64, "dis_width": 32,
             "train_steps": 2, "early_steps": 1, "n_samples": 200, "log_every": 1}
LIBRARIES = ()
DATASETS = ("mnist",)
RATIO_CAP = 1e6  # run records hold finite numbers: a ratio x/0 = inf is recorded as this (README)


# -- data ---------------------------------------------------------------------------------------------
def load_data(cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test images as float tensors (N, C, H, W) in [0, 1]."""
    from common.datasets import cifar10, mnist
    if cfg["dataset"] == "mnist":
        train, test = mnist("train")[0][:, None], mnist("test")[0][:, None]
    else:
        train, test = (x.transpose(0, 3, 1, 2) for x in (cifar10("train")[0], cifar10("test")[0]))
    if cfg["test_size"] > 0:
        test = test[:cfg["test_size"]]
    as_float = (lambda a: torch.tensor(a, dtype=torch.float32) / 255.0)
    return as_float(train[:cfg["train_size"]]), as_float(test)


TRAIN_IMAGES = {"mnist": 60_000, "cifar10": 50_000}
HALVINGS = {"mnist": 1, "cifar10": 2}  # the decoder halves its width per deconvolution but the last (gran.py)


def validate(cfg: dict) -> None:
    """Everything --set can get wrong, before any data loads (harness contract)."""
    check_names("dataset", cfg["dataset"], tuple(TRAIN_IMAGES))
    for key in ("noise_dim", "dis_width", "batch_size", "train_steps", "n_samples", "log_every",
                "checkpoint_every", "compare_steps"):
        check_range(key, cfg[key], 1)
    halvings = HALVINGS[cfg["dataset"]]
    check_range("gen_width", cfg["gen_width"], 2 ** halvings,
                what=f" (the decoder halves it {halvings} time(s) on {cfg['dataset']})")
    check_range("train_size", cfg["train_size"], cfg["batch_size"], TRAIN_IMAGES[cfg["dataset"]],
                what=" (at least one batch, at most the training split)")
    check_range("test_size", cfg["test_size"], 0, what=" (0: the whole test split)")
    check_range("early_steps", cfg["early_steps"], 1, cfg["train_steps"] - 1, what=" (inside train_steps)")
    for key in ("lr_gen", "lr_dis", "r_test_tol"):
        check_range(key, cfg[key], 0)
    check_range("beta1", cfg["beta1"], 0, 1)
    if cfg["beta1"] == 1:  # Adam's first-moment decay: at 1 the moment never moves from 0
        raise UsageError("beta1 must be in [0, 1), got 1")
    steps = cfg["gran_steps"]
    check_range("gran_steps", steps, 1)
    if (not isinstance(steps, list) or not steps or any(not isinstance(t, int) for t in steps)
            or len(set(steps)) != len(steps) or cfg["compare_steps"] not in steps):
        raise UsageError(f"gran_steps must list distinct whole T >= 1 including compare_steps="
                         f"{cfg['compare_steps']}, got {steps}")


def build(name: str, cfg: dict, channels: int, size: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    if name == "dcgan":
        gen = DCGANGenerator(cfg["noise_dim"], cfg["gen_width"], channels, size)
    else:
        gen = GRAN(cfg["noise_dim"], int(name.removeprefix("gran")), cfg["gen_width"], channels, size)
    return gen, Discriminator(cfg["dis_width"], channels, size)


# -- adversarial training (Goodfellow et al. 2014; official gran.py cost_dis / cost_gen) -------------------
def train(name: str, gen, dis, data: torch.Tensor, cfg: dict, ctx: RunContext, snapshot_at: int = 0) -> dict:
    """One D update then one G update per step (K = 1, official lets_train). D minimises the binary
    cross-entropy on a real and a generated batch; G the non-saturating -log D(G(z)) (cost_gen, target 1).

    Returns {"gen", "dis", "early" (state dicts at step `snapshot_at`, or None), "images_per_s"};
    checkpoints every `checkpoint_every` steps, so --resume continues inside a model (run() makes it a stage).
    """
    betas = (cfg["beta1"], 0.999)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg["lr_gen"], betas=betas)
    opt_d = torch.optim.Adam(dis.parameters(), lr=cfg["lr_dis"], betas=betas)
    state = ctx.restore(name)
    start, early = 0, None
    if state is not None:
        gen.load_state_dict(state["gen"])
        dis.load_state_dict(state["dis"])
        early = state["early"]
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        start = state["step"]
    batch, n, dev = cfg["batch_size"], len(data), ctx.device
    ones, zeros = torch.ones(batch, device=dev), torch.zeros(batch, device=dev)
    gen.train()
    dis.train()
    timed, timed_steps = 0.0, 0
    for step in ctx.progress(range(start, cfg["train_steps"]), desc=name, total=cfg["train_steps"] - start):
        tic = time.perf_counter()
        x = data[torch.randint(0, n, (batch,)).to(dev)]  # indices from the CPU stream: the same anywhere
        fake = gen(sample_noise(batch, cfg["noise_dim"], device=dev))
        logit_real, logit_fake = dis(x), dis(fake.detach())
        loss_d = (F.binary_cross_entropy_with_logits(logit_real, ones)
                  + F.binary_cross_entropy_with_logits(logit_fake, zeros))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = F.binary_cross_entropy_with_logits(dis(fake), ones)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        timed, timed_steps = timed + time.perf_counter() - tic, timed_steps + 1
        if step % cfg["log_every"] == 0:
            ctx.log(step, model=name, loss_d=loss_d.item(), loss_g=loss_g.item(),
                    d_real=torch.sigmoid(logit_real).mean().item(), d_fake=torch.sigmoid(logit_fake).mean().item())
        if step + 1 == snapshot_at:
            early = {"gen": copy.deepcopy(gen.state_dict()), "dis": copy.deepcopy(dis.state_dict())}
        if (step + 1) % cfg["checkpoint_every"] == 0 and step + 1 < cfg["train_steps"]:
            ctx.checkpoint(name, {"step": step + 1, "gen": gen.state_dict(), "dis": dis.state_dict(),
                                  "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "early": early})
    return {"gen": gen.state_dict(), "dis": dis.state_dict(), "early": early,
            "images_per_s": batch * timed_steps / timed if timed > 0 else 0.0}


# -- battles (§4) ----------------------------------------------------------------------------------------
def record(metrics: dict, table: list, m1: str, m2: str, battle: Battle) -> None:
    cap = (lambda r: min(r, RATIO_CAP))
    key = f"gam_{m1}_vs_{m2}"
    metrics.update({f"{key}_r_test": cap(battle.r_test), f"{key}_r_sample": cap(battle.r_sample),
                    f"{key}_winner": float(battle.winner), f"{key}_err_d1_test": battle.err_d1_test,
                    f"{key}_err_d2_test": battle.err_d2_test, f"{key}_err_d1_on_g2": battle.err_d1_on_g2,
                    f"{key}_err_d2_on_g1": battle.err_d2_on_g1})
    table.append((m1, m2, battle))


def inversion_error(r: float, r_swapped: float) -> float:
    """|r · r' - 1| for finite ratios; 0 for the exact pairs (0, inf) and (inf, 0); 1 otherwise."""
    if math.isfinite(r) and math.isfinite(r_swapped):
        return abs(r * r_swapped - 1.0)
    return 0.0 if {r, r_swapped} == {0.0, math.inf} else 1.0


def battles(models: dict, x_test: torch.Tensor, cfg: dict, ctx: RunContext, compare: str) -> tuple[dict, list]:
    """`models`: name -> (gen, dis). Each model's sample set i is drawn from its own seeded noise stream,
    so the same set can be drawn again (swap check) and two sets of one model are independent."""
    names = list(models)
    dev, tol, n = ctx.device, cfg["r_test_tol"], cfg["n_samples"]

    cache = {}

    def model(name: str, sample_set: int):
        gen, dis = models[name]
        if (name, sample_set) not in cache:  # draw each sample set once
            stream = torch.Generator(device=dev).manual_seed(ctx.seed * 1_000_003 + 7919 * names.index(name)
                                                             + sample_set)
            sample, _ = as_model(gen, dis, lambda k: sample_noise(k, cfg["noise_dim"], generator=stream, device=dev),
                                 generator_batch_stats=True)
            cache[name, sample_set] = sample(n)
        _, discriminate = as_model(gen, dis, lambda k: None)
        return (lambda k: cache[name, sample_set][:k]), discriminate

    metrics, table = {}, []
    x_test = x_test.to(dev)
    trained = [k for k in names if k != f"{compare}_early"]
    for m1, m2 in itertools.combinations(trained, 2):
        record(metrics, table, m1, m2, gam_battle(model(m1, 0), model(m2, 0), x_test, n, tol))
    for name in trained:  # self-battles: a second, independent sample set of the same model
        record(metrics, table, name, f"{name}_self", gam_battle(model(name, 0), model(name, 1), x_test, n, tol))
    record(metrics, table, compare, f"{compare}_early",
           gam_battle(model(compare, 0), model(f"{compare}_early", 0), x_test, n, tol))
    # swap: the same battle with the models exchanged, re-evaluated on the same sample sets
    forward = gam_battle(model(compare, 0), model("dcgan", 0), x_test, n, tol)
    backward = gam_battle(model("dcgan", 0), model(compare, 0), x_test, n, tol)
    metrics["gam_swap_exact"] = float(backward == forward.swapped(tol))
    metrics["gam_swap_inversion_error"] = max(inversion_error(forward.r_test, backward.r_test),
                                              inversion_error(forward.r_sample, backward.r_sample))
    return metrics, table


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().byte().cpu().numpy()


# -- the contract ------------------------------------------------------------------------------------------
def run(cfg: dict, ctx: RunContext) -> dict[str, float]:
    steps = cfg["gran_steps"]
    compare = f"gran{cfg['compare_steps']}"
    train_x, test_x = load_data(cfg)
    train_x = train_x.to(ctx.device)  # moved once; each step indexes it there
    channels, size = train_x.shape[1], train_x.shape[2]
    names = [f"gran{t}" for t in steps] + ["dcgan"]
    models, metrics = {}, {}
    for name in names:
        gen, dis = build(name, cfg, channels, size)
        gen, dis = gen.to(ctx.device), dis.to(ctx.device)
        snapshot_at = cfg["early_steps"] if name == compare else 0  # each model is a stage: resumes skip it
        state = ctx.stage(name, lambda: train(name, gen, dis, train_x, cfg, ctx, snapshot_at=snapshot_at))
        gen.load_state_dict(state["gen"])
        dis.load_state_dict(state["dis"])
        models[name] = (gen, dis)
        ctx.record_throughput(f"{name}_train_images_per_s", state["images_per_s"])
        if name == compare:
            early_gen, early_dis = build(name, cfg, channels, size)
            early_gen.load_state_dict(state["early"]["gen"])
            early_dis.load_state_dict(state["early"]["dis"])
            models[f"{compare}_early"] = (early_gen.to(ctx.device), early_dis.to(ctx.device))

    tic = time.perf_counter()
    battle_metrics, table = battles(models, test_x, cfg, ctx, compare)
    ctx.record_throughput("battles_s", time.perf_counter() - tic)
    metrics.update(battle_metrics)

    # pictures: 64 z per model, generators with batch statistics as in the battles
    show = torch.Generator(device=ctx.device).manual_seed(12345)
    z = sample_noise(64, cfg["noise_dim"], generator=show, device=ctx.device)
    grids, drawings = {}, {}
    for name, (gen, _) in models.items():
        gen.train()
        with torch.no_grad():
            grids[name] = to_uint8(gen(z))
            if name in names and name.startswith("gran"):
                drawings[name] = to_uint8(gen.drawing(z)[:, :10])
    ctx.save_arrays("samples", **grids)
    ctx.save_arrays("drawing", **drawings)
    ctx.save_arrays("battles", m1=np.array([t[0] for t in table]), m2=np.array([t[1] for t in table]),
                    r_test=np.array([min(t[2].r_test, RATIO_CAP) for t in table]),
                    r_sample=np.array([min(t[2].r_sample, RATIO_CAP) for t in table]),
                    winner=np.array([t[2].winner for t in table]), valid=np.array([t[2].valid for t in table]),
                    err_d1_test=np.array([t[2].err_d1_test for t in table]),
                    err_d2_test=np.array([t[2].err_d2_test for t in table]),
                    err_d1_on_g2=np.array([t[2].err_d1_on_g2 for t in table]),
                    err_d2_on_g1=np.array([t[2].err_d2_on_g1 for t in table]))
    return metrics
