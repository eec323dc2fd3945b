"""GAN (Goodfellow et al. 2014) on MNIST: the runner. One seed runs, in order:

  1. ablation  the saturating generator loss (minimize log(1 - D(G(z))), Eq. 1) for `ablation_steps`
               steps from the same initial networks and the same random streams as the main run (§3)
  2. train     Algorithm 1 with the non-saturating loss (maximize log D(G(z))): k D-steps per G-step,
               SGD + momentum as the official mnist.yaml, on MNIST train[:50000] (real-valued in [0, 1]);
               the early state at `ablation_steps` is scored like the ablation, and a Parzen LL on part
               of the test set is logged every epoch
  3. parzen    Table 1 protocol (parzen_ll.py): 10,000 samples, σ picked on valid[:1000] from
               logspace(-1, 0, 10), mean ± std/√N log-likelihood of the 10,000 MNIST test images;
               the same for real held-out images (ceiling) and uniform noise (floor)
  4. copies    nearest-neighbour L2 distances of samples to training vs test images (Figure 2)
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from common.config import check_range
from common.context import RunContext, fork_rng
from reproductions.gan.gan import (Discriminator, Generator, discriminator_loss, generator_loss,
                                   nearest_neighbour, parzen_log_likelihood, sample_noise, select_sigma)

# The paper tier: goodfeli/adversarial mnist.yaml. Only these keys are --set-able.
CONFIG = {
    "noise_dim": 100,              # nvis: 100
    "g_hidden": 1200,              # two RectifiedLinear layers of 1200
    "g_irange": 0.05,
    "d_units": 240,                # two Maxout layers, 240 units x 5 pieces
    "d_pieces": 5,
    "d_irange": 0.005,
    "d_input_keep": 0.8,           # discriminator_input_include_probs: {h0: .8}
    "d_hidden_keep": 0.5,          # discriminator_default_input_include_prob: .5
    "k": 1,                        # D-steps per G-step (Algorithm 1; the paper used k = 1)
    "batch_size": 100,
    "lr": 0.1,
    "lr_decay": 1.000004,          # ExponentialDecay: lr / 1.000004 per update, down to min_lr
    "min_lr": 1e-6,
    "momentum_start": 0.5,         # MomentumAdjustor: 0.5 at epoch 1 -> 0.7 at epoch 250
    "momentum_final": 0.7,
    "momentum_saturate": 250,
    "epochs": 250,                 # mnist.yaml has no stopping rule; momentum saturates at epoch 250
    "n_train": 50000,              # train[:50000]; train[50000:60000] is the validation split
    "parzen_samples": 10000,       # parzen_ll.py -n
    "parzen_valid": 1000,          # parzen_ll.py -l (limit_size)
    "parzen_test": 10000,          # the whole MNIST test set
    "sigma_log_min": -1.0,         # numpy.logspace(-1, 0, 10)
    "sigma_log_max": 0.0,
    "n_sigmas": 10,
    "curve_parzen_test": 1000,     # test images for the per-epoch Parzen curve (0: no curve)
    "ablation_steps": 500,         # early budget (G-steps) compared between the two generator losses
    "nn_samples": 1000,            # samples whose nearest training / test neighbours are measured
    "log_every": 50,               # G-steps between curve rows
}

TIERS = {
    # seconds, deterministic: narrow nets, 60 steps, small Parzen sets
    "smoke": {"g_hidden": 64, "d_units": 32, "epochs": 3, "n_train": 2000, "parzen_samples": 500,
              "parzen_valid": 200, "parzen_test": 500, "curve_parzen_test": 100, "ablation_steps": 20,
              "nn_samples": 200, "log_every": 5},
    # the paper's networks and protocol, fewer epochs: <= 12 min per seed on one CPU thread (README)
    "cpu": {"epochs": 18},
}
FEW_STEPS = {"epochs": 1, "n_train": 200, "ablation_steps": 2, "parzen_samples": 200, "parzen_valid": 100,
             "parzen_test": 200, "curve_parzen_test": 50, "nn_samples": 50, "log_every": 1}
LIBRARIES = ()
DATASETS = ("mnist",)

N_FIGURE_SAMPLES = 30


# -- data ---------------------------------------------------------------------------------------------
def load_data(cfg: dict) -> dict[str, torch.Tensor]:
    """MNIST real-valued in [0, 1] (not binarized): train[:n_train], valid = train[50000:60000], test."""
    from common.datasets import mnist
    train, _ = mnist("train")
    test, _ = mnist("test")
    as_float = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)  # noqa: E731
    return {"train": as_float(train[:cfg["n_train"]]), "valid": as_float(train[50000:60000]),
            "test": as_float(test[:cfg["parzen_test"]])}


def sigma_grid(cfg: dict) -> np.ndarray:
    return np.logspace(cfg["sigma_log_min"], cfg["sigma_log_max"], cfg["n_sigmas"])


# -- training (Algorithm 1) -------------------------------------------------------------------------
def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def make_models(cfg: dict, pixel_means: torch.Tensor) -> tuple[Generator, Discriminator]:
    G = Generator(cfg["noise_dim"], cfg["g_hidden"], cfg["g_irange"])
    G.init_output_bias(pixel_means)
    D = Discriminator(cfg["d_units"], cfg["d_pieces"], cfg["d_input_keep"], cfg["d_hidden_keep"], cfg["d_irange"])
    return G, D


def make_optimizers(G, D, cfg):
    return (torch.optim.SGD(G.parameters(), lr=cfg["lr"], momentum=cfg["momentum_start"]),
            torch.optim.SGD(D.parameters(), lr=cfg["lr"], momentum=cfg["momentum_start"]))


def set_schedule(opts, step: int, epoch: int, cfg: dict) -> tuple[float, float]:
    """ExponentialDecay per update and MomentumAdjustor per epoch (linear from epoch 1 to `momentum_saturate`)."""
    lr = max(cfg["lr"] / cfg["lr_decay"] ** step, cfg["min_lr"])
    alpha = min(max((epoch - 1) / max(cfg["momentum_saturate"] - 1, 1), 0.0), 1.0)
    momentum = cfg["momentum_start"] + alpha * (cfg["momentum_final"] - cfg["momentum_start"])
    for opt in opts:
        for group in opt.param_groups:
            group["lr"], group["momentum"] = lr, momentum
    return lr, momentum


class Batches:
    """Minibatches of the training set, reshuffled every epoch (global torch RNG, so --resume replays it)."""

    def __init__(self, data: torch.Tensor, batch_size: int):
        self.data, self.batch_size = data, batch_size
        self.per_epoch = len(data) // batch_size
        self.seen = 0  # batches drawn so far
        self.order = None

    @property
    def epoch(self) -> int:
        return self.seen // self.per_epoch

    def next(self) -> torch.Tensor:
        i = self.seen % self.per_epoch
        if i == 0 or self.order is None:
            self.order = torch.randperm(len(self.data))
        self.seen += 1
        return self.data[self.order[i * self.batch_size:(i + 1) * self.batch_size]]


def train_step(G, D, opt_g, opt_d, batches: Batches, cfg: dict, saturating: bool) -> dict[str, float]:
    """k discriminator updates and one generator update (Algorithm 1), as the official code makes them:
    one forward pass of D over a real and a generated minibatch gives both objectives (AdversaryCost2),
    both networks step from that same state, and G's step is masked out on k - 1 of every k (Cycler)."""
    G.train(), D.train()
    d_params, g_params = list(D.parameters()), list(G.parameters())
    for i in range(cfg["k"]):
        update_g = i == cfg["k"] - 1
        real = batches.next()
        with torch.set_grad_enabled(update_g):
            fake = G(sample_noise(len(real), cfg["noise_dim"], device=real.device))
        real_logits, fake_logits = D(torch.cat([real, fake])).split(len(real))
        d_loss = discriminator_loss(real_logits, fake_logits)
        g_loss = generator_loss(fake_logits, saturating)
        d_grads = torch.autograd.grad(d_loss, d_params, retain_graph=update_g)
        if update_g:  # grad of g_loss w.r.t. G only: D's weight gradients for it are never formed
            for p, grad in zip(g_params, torch.autograd.grad(g_loss, g_params)):
                p.grad = grad
        for p, grad in zip(d_params, d_grads):
            p.grad = grad
        opt_d.step()
        if update_g:
            opt_g.step()
    with torch.no_grad():
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "d_real": float(torch.sigmoid(real_logits).mean()),
                "d_fake": float(torch.sigmoid(fake_logits).mean())}


def generator_grad_norms(G, D, cfg: dict, n: int = 1000) -> tuple[float, float]:
    """‖∇_θG‖ of the non-saturating and of the saturating loss on the same noise (D without dropout)."""
    G.eval(), D.eval()
    z = sample_noise(n, cfg["noise_dim"], device=_device(G))
    norms = []
    for saturating in (False, True):
        G.zero_grad(set_to_none=True)
        generator_loss(D(G(z)), saturating).backward()
        norms.append(math.sqrt(sum(float((p.grad ** 2).sum()) for p in G.parameters())))
    G.zero_grad(set_to_none=True)
    D.zero_grad(set_to_none=True)
    return norms[0], norms[1]


@torch.no_grad()
def generate(G, n: int, cfg: dict, batch: int = 1000) -> torch.Tensor:
    G.eval()
    return torch.cat([G(sample_noise(min(batch, n - i), cfg["noise_dim"], device=_device(G)))
                      for i in range(0, n, batch)])


@torch.no_grad()
def mean_d_fake(G, D, cfg: dict, n: int = 1000) -> float:
    D.eval()
    return float(torch.sigmoid(D(generate(G, n, cfg))).mean())


# -- Parzen protocol (parzen_ll.py) ------------------------------------------------------------------
def parzen_score(samples: torch.Tensor, valid: torch.Tensor, test: torch.Tensor, cfg: dict) -> dict[str, float]:
    """σ = argmax of the mean validation LL over the grid; then mean and std/√N of the test LL."""
    sigma, index, _ = select_sigma(valid, samples, sigma_grid(cfg))
    ll = parzen_log_likelihood(test, samples, [sigma])[:, 0]
    return {"ll": float(ll.mean()), "se": float(ll.std(unbiased=False) / math.sqrt(len(ll))),
            "sigma": sigma, "sigma_index": float(index)}


def early_scores(G, D, data, cfg, prefix: str) -> dict[str, float]:
    """What the loss ablation compares after the same early budget (forked RNG: the run's streams go on)."""
    with fork_rng(_device(G)):
        d_fake = mean_d_fake(G, D, cfg)
        grad_ns, grad_sat = generator_grad_norms(G, D, cfg)
        score = parzen_score(generate(G, cfg["parzen_samples"], cfg), data["valid"][:cfg["parzen_valid"]],
                             data["test"], cfg)
    return {f"{prefix}_d_fake": d_fake, f"{prefix}_parzen_ll": score["ll"],
            f"{prefix}_grad_norm_nonsat": grad_ns, f"{prefix}_grad_norm_sat": grad_sat}


def saturating_ablation(G0, D0, data, cfg, ctx: RunContext) -> dict[str, float]:
    """§3: 'Early in learning ... log(1 - D(G(z))) saturates.' Same init and random streams as the main run."""
    G, D = copy.deepcopy(G0), copy.deepcopy(D0)
    opt_g, opt_d = make_optimizers(G, D, cfg)
    batches = Batches(data["train"], cfg["batch_size"])
    with fork_rng(_device(G)):
        for step in ctx.progress(range(cfg["ablation_steps"]), "saturating", total=cfg["ablation_steps"]):
            set_schedule((opt_g, opt_d), step, batches.epoch, cfg)
            stats = train_step(G, D, opt_g, opt_d, batches, cfg, saturating=True)
            if (step + 1) % cfg["log_every"] == 0:
                ctx.log(step + 1, loss="saturating", **stats)
        return early_scores(G, D, data, cfg, "early_sat")


def train(G, D, data, cfg, ctx: RunContext, state: dict | None) -> dict[str, float]:
    """The non-saturating run for `epochs` epochs; checkpointed every epoch."""
    opt_g, opt_d = make_optimizers(G, D, cfg)
    batches = Batches(data["train"], cfg["batch_size"])
    steps_per_epoch = batches.per_epoch // cfg["k"]
    total = cfg["epochs"] * steps_per_epoch
    step, metrics, train_seconds = 0, {}, 0.0
    if state is not None:
        G.load_state_dict(state["G"]), D.load_state_dict(state["D"])
        opt_g.load_state_dict(state["opt_g"]), opt_d.load_state_dict(state["opt_d"])
        step, metrics, train_seconds = state["step"], dict(state["metrics"]), state["train_seconds"]
        batches.seen = step * cfg["k"]
    if step == 0:
        with fork_rng(_device(G)):
            ctx.log(0, loss="non_saturating", d_fake=mean_d_fake(G, D, cfg))
    bar = ctx.progress(range(step, total), "train", total=total)
    tic = time.perf_counter()
    for step in bar:
        lr, momentum = set_schedule((opt_g, opt_d), step, batches.epoch, cfg)
        stats = train_step(G, D, opt_g, opt_d, batches, cfg, saturating=False)
        done = step + 1
        if done % cfg["log_every"] == 0:
            ctx.log(done, loss="non_saturating", lr=lr, momentum=momentum, **stats)
        if done == cfg["ablation_steps"]:
            train_seconds += time.perf_counter() - tic
            metrics.update(early_scores(G, D, data, cfg, "early_nonsat"))
            tic = time.perf_counter()
        if done % steps_per_epoch == 0:
            train_seconds += time.perf_counter() - tic
            if cfg["curve_parzen_test"] > 0:
                with fork_rng(_device(G)):
                    score = parzen_score(generate(G, cfg["parzen_samples"], cfg),
                                         data["valid"][:cfg["parzen_valid"]],
                                         data["test"][:cfg["curve_parzen_test"]], cfg)
                ctx.log(done, loss="non_saturating", epoch=done // steps_per_epoch, parzen_ll=score["ll"],
                        parzen_sigma=score["sigma"])
            ctx.checkpoint("train", {"G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(),
                                     "opt_d": opt_d.state_dict(), "step": done, "metrics": metrics,
                                     "train_seconds": train_seconds})
            tic = time.perf_counter()
    train_seconds += time.perf_counter() - tic
    if total:
        ctx.record_throughput("g_steps_per_s", total / train_seconds)
        ctx.record_throughput("real_images_per_s", total * cfg["k"] * cfg["batch_size"] / train_seconds)
    metrics["g_steps"] = float(total)
    return metrics


# -- the contract -------------------------------------------------------------------------------------
def validate(cfg: dict) -> None:
    """Everything --set can get wrong, before any data loads (harness contract)."""
    for key in ("k", "batch_size", "noise_dim", "g_hidden", "d_units", "d_pieces", "parzen_samples", "parzen_valid",
                "parzen_test", "nn_samples", "n_sigmas", "log_every", "ablation_steps", "n_train"):
        check_range(key, cfg[key], 1)
    check_range("epochs", cfg["epochs"], 0)
    check_range("n_train", cfg["n_train"], 1, 50_000, what=" (train[50000:] is the validation split)")
    check_range("parzen_valid", cfg["parzen_valid"], 1, 9_999,
                what=" (of the 10,000 validation images; the rest are the real-data ceiling's and the copy check's)")
    check_range("parzen_test", cfg["parzen_test"], 1, 10_000, what=" (MNIST's test images)")
    check_range("curve_parzen_test", cfg["curve_parzen_test"], 0, cfg["parzen_test"])
    for key in ("d_input_keep", "d_hidden_keep", "momentum_start", "momentum_final"):
        check_range(key, cfg[key], 0, 1)
    for key in ("lr", "min_lr", "g_irange", "d_irange"):
        check_range(key, cfg[key], 0)
    check_range("lr_decay", cfg["lr_decay"], 1, what=" (the step size is divided by it every update)")
    check_range("momentum_saturate", cfg["momentum_saturate"], 1, what=" (the epoch the momentum reaches its final value)")
    check_range("sigma_log_min", cfg["sigma_log_min"], -10, cfg["sigma_log_max"],
                what=" (log10 of the smallest Parzen bandwidth, at most sigma_log_max)")
    check_range("sigma_log_max", cfg["sigma_log_max"], cfg["sigma_log_min"], 10)
    steps = cfg["epochs"] * (cfg["n_train"] // cfg["batch_size"] // cfg["k"])
    check_range("ablation_steps", cfg["ablation_steps"], 1, steps, what=" (the main run's G-steps)")


def run(cfg: dict, ctx: RunContext) -> dict[str, float]:
    # MNIST loaded on the CPU, then kept on the device whole
    data = {k: v.to(ctx.device) for k, v in load_data(cfg).items()}
    valid_sigma, test = data["valid"][:cfg["parzen_valid"]], data["test"]

    def models() -> tuple[Generator, Discriminator]:
        G, D = make_models(cfg, data["train"].mean(0).cpu())  # initialized on the CPU: the same draws anywhere
        return G.to(ctx.device), D.to(ctx.device)

    # 1. saturating ablation, from the initial networks the main run also starts from
    def ablation_stage() -> dict:
        G0, D0 = models()
        tic = time.perf_counter()
        ablation = saturating_ablation(G0, D0, data, cfg, ctx)
        ctx.record_throughput("ablation_seconds", time.perf_counter() - tic)
        return {"G0": G0.state_dict(), "D0": D0.state_dict(), "metrics": ablation}

    saved = ctx.stage("ablation", ablation_stage)
    with torch.random.fork_rng(devices=[]):  # the streams go on from where the initialization left them
        G, D = models()
    G.load_state_dict(saved["G0"]), D.load_state_dict(saved["D0"])
    ablation = saved["metrics"]

    # 2. the non-saturating GAN (Algorithm 1)
    metrics = dict(ablation)
    metrics.update(train(G, D, data, cfg, ctx, ctx.restore("train")))

    # 3. Table 1: Parzen LL of the GAN, of real held-out images (ceiling), of uniform noise (floor)
    tic = time.perf_counter()
    samples = generate(G, cfg["parzen_samples"], cfg)
    gan = parzen_score(samples, valid_sigma, test, cfg)
    ctx.record_throughput("parzen_seconds", time.perf_counter() - tic)
    real = parzen_score(data["valid"][cfg["parzen_valid"]:][:cfg["parzen_samples"]], valid_sigma, test, cfg)
    noise = parzen_score(torch.rand_like(samples), valid_sigma, test, cfg)
    metrics.update({"parzen_ll": gan["ll"], "parzen_se": gan["se"], "parzen_sigma": gan["sigma"],
                    "parzen_sigma_index": gan["sigma_index"], "real_parzen_ll": real["ll"],
                    "real_parzen_sigma": real["sigma"], "noise_parzen_ll": noise["ll"],
                    "noise_parzen_sigma": noise["sigma"], "final_d_fake": mean_d_fake(G, D, cfg)})

    # 4. copies? nearest-neighbour distances to equally many training and test images
    n_ref = min(len(data["train"]), len(test))
    probe = samples[:cfg["nn_samples"]]
    nn_train, _ = nearest_neighbour(probe, data["train"][:n_ref])
    nn_test, _ = nearest_neighbour(probe, test[:n_ref])
    held_out = data["valid"][cfg["parzen_valid"]:][:cfg["nn_samples"]]
    real_train, _ = nearest_neighbour(held_out, data["train"][:n_ref])
    real_test, _ = nearest_neighbour(held_out, test[:n_ref])
    metrics.update({"nn_train_median": float(nn_train.median()), "nn_test_median": float(nn_test.median()),
                    "nn_ratio_train_test": float(nn_train.median() / nn_test.median()),
                    "real_nn_ratio_train_test": float(real_train.median() / real_test.median())})

    # Figure 2: samples next to their nearest training images
    shown = samples[:N_FIGURE_SAMPLES]
    nn_dist, nn_idx = nearest_neighbour(shown, data["train"])
    ctx.save_arrays("samples", samples=shown[:, 0].cpu().numpy().astype(np.float16),
                    neighbours=data["train"][nn_idx][:, 0].cpu().numpy().astype(np.float16),
                    distances=nn_dist.cpu().numpy())
    return metrics
