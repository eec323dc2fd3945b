"""BEAR (Kumar et al. 2019): the runner. A tier is an experiment over environment x dataset x algorithm.

Two kinds of point:

  stage=data,env=<env>            trains the behaviour policies with SAC and writes every dataset kind
                                  (behaviour.py) as a D4RL-layout HDF5 artifact, once (seed 0) for all
                                  algorithm seeds; its record holds the behaviour and reference returns.
  env=<env>,dataset=<kind>,algo=<a>  fits one algorithm to one dataset for `steps` gradient steps:
                                  bear (MMD, "auto" mode), bear_kl (the paper's KL comparison), bc
                                  (behaviour cloning) or sac (naive off-policy SAC: no constraint).

Every `eval_every` steps the policy plays `eval_episodes` episodes; every `log_every` steps the curves
get the critics' mean Q on the minibatch, the constraint and alpha. The metrics:

  return        D4RL-normalized score (100 (R - R_random) / (R_expert - R_random), with this dataset's
                reference returns) averaged over the last `final_evals` evaluations
  raw_return    the same in environment return
  q_peak_ratio  the largest logged mean Q over r_max / (1 - gamma), r_max the largest |reward| in the
                dataset: above 1, the critic believes in returns no trajectory can have
  mode_return   BEAR, a diagnostic: the normalized return at the last evaluation when acting with the
                actor's mode tanh(mean) instead of the official best-of-10-samples rule
  constraint_after_warmup   BEAR: the mean logged constraint value after the warm start
  <algo>_diverged           1 when the critic's values became NaN or inf (then training stopped there
                            and the metrics are those up to that step)

A real D4RL file or Minari dataset replaces the generated one with `--set dataset_path=<file or folder>`.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from common import control, offline_data
from common.config import check_names, check_range
from common.context import RunContext, fork_rng
from common.experiments import Needs, Point, grid
from common.papers import UsageError
from common.replay import TransitionReplay
from common.runs import git_state, versions
from common.sac import SAC, SACConfig
from reproductions.bear import behaviour
from reproductions.bear.bear import BEAR, BEARConfig, BehaviourCloning, mmd, q_bound

ALGOS = ("bear", "bear_kl", "bc", "sac")
DATA_KEYS = ("stage", "env", "envs", "data")  # what a data point reads: its config, hash and artifacts

# The paper tier: the official code's defaults (aviralkumar2907/BEAR main.py, algos.py; README, Choices).
CONFIG = {
    "stage": "train",                   # "data" (make the datasets) or "train" (fit one algorithm)
    "env": "hopper",
    "envs": {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5", "ant": "Ant-v5"},
    "data": {
        "behaviour_steps": 1_000_000,   # SAC environment steps for the behaviour policies
        "start_steps": 10_000,          # uniformly random steps before SAC's first update
        "sac_hidden": [256, 256],
        "sac_lr": 3e-4,
        "sac_batch": 256,
        "eval_every": 10_000,           # a snapshot and its evaluation every this many steps
        "eval_episodes": 5,
        "medium_fraction": 0.333,       # medium: the first snapshot at a third of the best return
        "size": 1_000_000,              # transitions per dataset kind (the paper: 1e6)
        "rollout_copies": 10,           # environments stepped together while recording
        "reference_episodes": 100,      # episodes for the random and expert reference returns
    },
    "dataset": "medium",
    "dataset_path": "",                 # a D4RL .hdf5 file or Minari folder to use instead of the generated data
    "algo": "bear",
    "steps": 1_000_000,                 # gradient steps (official max_timesteps)
    "batch_size": 100,                  # official train(batch_size=100)
    "eval_every": 5000,                 # official eval_freq
    "eval_episodes": 10,
    "final_evals": 3,                   # evaluations averaged into the final return
    "log_every": 1000,
    "bear": {
        "hidden": [400, 300], "vae_hidden": [750, 750], "critics": 2, "lr": 1e-3, "alpha_lr": 1e-3,
        "gamma": 0.99, "tau": 0.005, "target_mix": 0.75, "target_samples": 10, "epsilon": 0.05,
        "kl_epsilon": -2.0,             # the KL constraint's threshold (official: thresh = -2.0 with KL)
        "mode": "auto", "log_alpha_max": 10.0, "warmup_steps": 20_000, "eval_samples": 10,
        "kernel": "laplacian", "sigma": 10.0, "constraint_samples": 5,   # README: "generally work well"
    },
    "env_kernels": {"walker2d": {"kernel": "gaussian", "sigma": 20.0}},  # README's Walker command
    "sac": {"hidden": [400, 300], "lr": 3e-4, "gamma": 0.99, "tau": 0.005},  # naive RL: the same critic sizes
}

CPU_ENVS = ["hopper", "halfcheetah"]
CPU_DATASETS = ["random", "medium", "expert"]

TIERS = {
    # seconds, deterministic: a short random-data set and a few updates of every algorithm
    "smoke": {"env": "hopper", "data": {"behaviour_steps": 600, "start_steps": 200, "sac_hidden": [32, 32],
                                        "sac_batch": 32, "eval_every": 200, "eval_episodes": 2, "size": 400,
                                        "rollout_copies": 2, "reference_episodes": 2},
              "steps": 60, "batch_size": 32, "eval_every": 30, "eval_episodes": 2, "final_evals": 1, "log_every": 10,
              "bear": {"hidden": [32, 32], "vae_hidden": [32, 32], "warmup_steps": 20, "target_samples": 4},
              "sac": {"hidden": [32, 32]}},
    # see README, Tiers: 100k-transition datasets from 150k steps of a 128-128 SAC; 64-64 nets, 20k updates
    "cpu": {"data": {"behaviour_steps": 150_000, "start_steps": 5_000, "sac_hidden": [128, 128], "size": 100_000,
                     "eval_every": 5_000},
            "steps": 20_000, "eval_every": 2_000, "eval_episodes": 5, "final_evals": 3, "log_every": 250,
            "bear": {"hidden": [64, 64], "vae_hidden": [128, 128], "warmup_steps": 4_000},
            "sac": {"hidden": [64, 64]}},
}
FEW_STEPS = {"data": {"behaviour_steps": 40, "start_steps": 20, "eval_every": 20, "eval_episodes": 1, "size": 40,
                      "rollout_copies": 2, "reference_episodes": 2},
             "steps": 2, "eval_every": 1, "eval_episodes": 1, "final_evals": 1, "log_every": 1}


def _data_point(env: str) -> Point:
    return Point(f"stage=data,env={env}", {"stage": "data", "env": env}, {"stage": "data", "env": env},
                 scope=DATA_KEYS, seeds=(0,))


def _points(envs: list[str], datasets: list[str], algos: list[str]) -> list[Point]:
    points = []
    for env in envs:
        producer = _data_point(env)
        needs = {kind: Needs(producer.name, seed=0) for kind in datasets}
        points += [producer, *grid(requires=needs, env=[env], dataset=datasets, algo=algos)]
    return points


POINTS = {
    "smoke": _points(["hopper"], ["random"], list(ALGOS)),
    "cpu": _points(CPU_ENVS, CPU_DATASETS, ["bear", "bc", "sac"]) + grid(
        requires={"medium": Needs("stage=data,env=hopper", seed=0)}, env=["hopper"], dataset=["medium"],
        algo=["bear_kl"]),
    "paper": _points(["hopper", "halfcheetah", "walker2d", "ant"], list(behaviour.KINDS), list(ALGOS)),
}
LIBRARIES = ("gymnasium", "mujoco", "h5py")
DATASETS = ()


def validate(cfg: dict) -> None:
    check_names("stage", cfg["stage"], ("data", "train"))
    check_names("env", cfg["env"], list(cfg["envs"]))
    data = cfg["data"]
    for key in ("behaviour_steps", "eval_every", "eval_episodes", "size", "rollout_copies", "reference_episodes",
                "sac_batch"):
        check_range(f"data.{key}", data[key], 1)
    check_range("data.start_steps", data["start_steps"], 0, data["behaviour_steps"] - 1)
    check_range("data.medium_fraction", data["medium_fraction"], 0, 1)
    check_range("data.sac_lr", data["sac_lr"], 1e-12)
    if data["behaviour_steps"] < data["eval_every"]:
        raise UsageError(f"data.behaviour_steps ({data['behaviour_steps']}) must be >= data.eval_every "
                         f"({data['eval_every']}): the datasets come from evaluated snapshots")
    if cfg["stage"] == "data":
        return
    check_names("dataset", cfg["dataset"], behaviour.KINDS)
    check_names("algo", cfg["algo"], ALGOS)
    for key in ("steps", "batch_size", "eval_every", "eval_episodes", "final_evals", "log_every"):
        check_range(key, cfg[key], 1)
    bear = cfg["bear"]
    check_names("bear.mode", bear["mode"], ("auto", "hardcoded"))
    check_names("bear.kernel", bear["kernel"], ("laplacian", "gaussian"))
    for key in ("critics", "target_samples", "constraint_samples", "eval_samples"):
        check_range(f"bear.{key}", bear[key], 1)
    for key in ("sigma", "lr", "alpha_lr"):
        check_range(f"bear.{key}", bear[key], 0 if key.endswith("lr") else 1e-9)
    for key in ("target_mix", "gamma", "tau"):
        check_range(f"bear.{key}", bear[key], 0, 1)
    for key in ("epsilon", "kl_epsilon", "log_alpha_max"):
        check_range(f"bear.{key}", bear[key])
    check_range("bear.warmup_steps", bear["warmup_steps"], 0)
    check_range("sac.lr", cfg["sac"]["lr"], 0)
    for key in ("gamma", "tau"):
        check_range(f"sac.{key}", cfg["sac"][key], 0, 1)
    unknown = set(cfg["env_kernels"]) - set(cfg["envs"])
    if unknown:
        raise UsageError(f"env_kernels: unknown env {sorted(unknown)}; valid: {', '.join(cfg['envs'])}")
    for env, kernel in cfg["env_kernels"].items():
        check_names(f"env_kernels.{env}.kernel", kernel.get("kernel", "laplacian"), ("laplacian", "gaussian"))
        check_range(f"env_kernels.{env}.sigma", kernel.get("sigma", 1.0), 1e-9)


def run(cfg: dict, ctx: RunContext) -> dict:
    return make_data(cfg, ctx) if cfg["stage"] == "data" else train(cfg, ctx)


# -- the data point ------------------------------------------------------------------------------
def make_data(cfg: dict, ctx: RunContext) -> dict:
    env_id, data = cfg["envs"][cfg["env"]], cfg["data"]
    clock = time.perf_counter()
    trained = behaviour.train_behaviour(env_id, data, ctx.seed, ctx)
    sets, facts = behaviour.make_datasets(env_id, data, ctx.seed, ctx, trained)
    commit = git_state("bear")["commit"]
    library = versions(("gymnasium", "mujoco"))
    folder = ctx.checkpoint_dir / "datasets"
    folder.mkdir(parents=True, exist_ok=True)
    for kind, transitions in sets.items():
        path = folder / f"{cfg['env']}-{kind}-generated.hdf5"
        attrs = {"env_id": env_id, "gymnasium_version": library["gymnasium"], "mujoco_version": library["mujoco"],
                 "kind": kind, "policy": _policy_name(kind, facts), "seed": ctx.seed, "size": len(transitions["rewards"]),
                 "generator_commit": commit or "unknown", **facts}
        offline_data.write_d4rl(path, transitions, attrs)
        ctx.publish(kind, path)
    for kind in ("random", "medium", "expert"):
        if f"{kind}_behaviour_return" not in facts:
            ctx.mark_undefined(f"{kind}_behaviour_return", "no episode of the rollout finished within its steps")
    ctx.record_throughput("data_wall_s", time.perf_counter() - clock)
    return {**facts, **{f"{kind}_size": float(len(t["rewards"])) for kind, t in sets.items()}}


def _policy_name(kind: str, facts: dict) -> str:
    return {"random": "uniform random actions",
            "medium": f"SAC snapshot at step {facts['medium_snapshot_step']} (stochastic)",
            "expert": f"SAC snapshot at step {facts['expert_snapshot_step']} (stochastic)",
            "medium-replay": f"SAC replay buffer up to step {facts['medium_snapshot_step']}",
            "medium-expert": "medium and expert concatenated"}[kind]


# -- the algorithm points ------------------------------------------------------------------------
def load_dataset(cfg: dict, ctx: RunContext) -> tuple[dict, dict]:
    """(transitions, attrs): the file named by `dataset_path`, or the generated artifact."""
    path = cfg["dataset_path"] or ctx.require(cfg["dataset"])
    data, attrs = offline_data.read(path)
    if "reference_random_return" not in attrs or "reference_expert_return" not in attrs:
        raise UsageError(f"{path}: no reference returns in its attributes (reference_random_return, "
                         f"reference_expert_return); normalized scores need them")
    return data, attrs


def make_agent(cfg: dict, obs_dim: int, act_dim: int):
    algo = cfg["algo"]
    if algo == "sac":
        return SAC(obs_dim, act_dim, SACConfig(hidden=tuple(cfg["sac"]["hidden"]), lr=cfg["sac"]["lr"],
                                               gamma=cfg["sac"]["gamma"], tau=cfg["sac"]["tau"]))
    settings = {**cfg["bear"], **cfg["env_kernels"].get(cfg["env"], {})}
    if algo == "bc":
        return BehaviourCloning(obs_dim, act_dim, tuple(settings["vae_hidden"]), settings["lr"])
    kl = algo == "bear_kl"
    fields = {f.name for f in dataclasses.fields(BEARConfig)}
    chosen = {k: (tuple(v) if isinstance(v, list) else v) for k, v in settings.items() if k in fields}
    chosen.update(constraint="kl" if kl else "mmd", epsilon=settings["kl_epsilon"] if kl else settings["epsilon"])
    return BEAR(obs_dim, act_dim, BEARConfig(**chosen))


def _act(act, device):
    """An environment policy from a tensor policy `act` (observations -> actions) on `device`."""
    @torch.no_grad()
    def policy(obs):
        return act(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()
    return policy


def _acting_rule(agent):
    """How each algorithm acts at evaluation: naive SAC its mode, BEAR and BC their official rules."""
    return (lambda obs: agent.act(obs, deterministic=True)) if isinstance(agent, SAC) else agent.act


def train(cfg: dict, ctx: RunContext) -> dict:
    data, attrs = load_dataset(cfg, ctx)
    env_id = attrs.get("env_id", cfg["envs"][cfg["env"]])
    replay = TransitionReplay.from_arrays(data, ctx.device)
    agent = make_agent(cfg, data["observations"].shape[1], data["actions"].shape[1]).to(ctx.device)
    gamma = cfg["sac"]["gamma"] if cfg["algo"] == "sac" else cfg["bear"]["gamma"]
    bound = q_bound(replay.data["rewards"][:len(replay)], gamma)
    ref = (attrs["reference_random_return"], attrs["reference_expert_return"])
    generator = torch.Generator(ctx.device).manual_seed(ctx.seed)
    state = ctx.restore("train") or {"step": 0, "evals": [], "q_peak": -np.inf, "seconds": 0.0}
    if "agent" in state:
        agent.load_state_dict(state.pop("agent"))
        for opt, saved in zip(_optimizers(agent), state.pop("optimizers")):
            opt.load_state_dict(saved)
        generator.set_state(state.pop("generator"))
    algo, warmup = cfg["algo"], cfg["bear"]["warmup_steps"]
    start, clock = state["step"], time.perf_counter()
    if isinstance(agent, BEAR):
        agent.steps = start  # the warm start counts from the run's first step
    with ctx.may_diverge(algo) as outcome:
        for step in ctx.progress(range(start, cfg["steps"]), f"{cfg['env']}-{cfg['dataset']} {algo}",
                                 total=cfg["steps"] - start):
            stats = agent.update(replay.sample(cfg["batch_size"], generator))
            if (step + 1) % cfg["log_every"] == 0:
                values = {k: float(v) for k, v in stats.items()}
                ctx.log(step + 1, **values)
                if "q_mean" in values:
                    state["q_peak"] = max(state["q_peak"], values["q_mean"])
            if (step + 1) % cfg["eval_every"] == 0 or step + 1 == cfg["steps"]:
                state["seconds"] += time.perf_counter() - clock
                played = control.play(env_id, _act(_acting_rule(agent), ctx.device),
                                      seed=10_000 * (ctx.seed + 1) + step,
                                      copies=cfg["eval_episodes"], episodes=cfg["eval_episodes"])
                score = float(offline_data.normalized_score(played.returns.mean(), *ref))
                state["evals"].append([step + 1, float(played.returns.mean()), score])
                ctx.log(step + 1, eval_return=float(played.returns.mean()), eval_score=score)
                if isinstance(agent, BEAR) and step + 1 == cfg["steps"]:
                    # a diagnostic beside the official acting rule: the actor's mode, tanh(mean)
                    played = control.play(env_id, _act(agent.actor.mode, ctx.device),
                                          seed=10_000 * (ctx.seed + 1) + step, copies=cfg["eval_episodes"],
                                          episodes=cfg["eval_episodes"])
                    state["mode_return"] = float(offline_data.normalized_score(played.returns.mean(), *ref))
                state["step"] = step + 1
                ctx.checkpoint("train", {**state, "agent": agent.state_dict(), "generator": generator.get_state(),
                                         "optimizers": [o.state_dict() for o in _optimizers(agent)]})
                clock = time.perf_counter()
    steps_run = state["step"] - start
    if steps_run and state["seconds"] > 0:
        ctx.record_throughput(f"{algo}_updates_per_s", steps_run / state["seconds"])
    metrics = {**outcome.metrics(), "q_bound": bound}
    if np.isfinite(state["q_peak"]):
        metrics["q_peak_ratio"] = state["q_peak"] / bound
    last = state["evals"][-cfg["final_evals"]:]
    if last:
        metrics["raw_return"] = float(np.mean([e[1] for e in last]))
        metrics["return"] = float(np.mean([e[2] for e in last]))
    else:
        for name in ("return", "raw_return"):
            ctx.mark_undefined(name, f"no evaluation before the critic diverged at step {outcome.step}")
    if "mode_return" in state:
        metrics["mode_return"] = state["mode_return"]
    if algo.startswith("bear"):
        metrics.update(mmd_estimator_sanity(ctx.device))
        after = [row["constraint"] for row in ctx.curves if "constraint" in row and row["step"] > warmup]
        if after:
            metrics["constraint_after_warmup"] = float(np.mean(after))
            metrics["alpha_final"] = float([row["alpha"] for row in ctx.curves if "alpha" in row][-1])
    metrics["dataset_behaviour_return"] = float(np.mean(offline_data.episode_returns(data)))
    return metrics


def mmd_estimator_sanity(device) -> dict:
    """papers.md §10 check 4, on random sample sets (5 per state, 3-D, 64 states): the estimator of two
    identical sets (its floor, sqrt(1e-6)) and whether it grows with every step of a mean shift, for
    both kernels at the sigmas the paper's README uses."""
    with fork_rng(device):
        torch.manual_seed(0)
        x = torch.randn(64, 5, 3, device=device)
        identical, grows = 0.0, 1.0
        for kernel, sigma in (("laplacian", 10.0), ("gaussian", 20.0)):
            identical = max(identical, float(mmd(x, x, kernel, sigma).max()))
            values = [float(mmd(x, x + shift, kernel, sigma).mean()) for shift in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)]
            grows = min(grows, float(all(b > a for a, b in zip(values, values[1:]))))
    return {"mmd_identical_sets": identical, "mmd_grows_with_shift": grows}


def _optimizers(agent) -> list:
    if isinstance(agent, SAC):
        return [agent.actor_opt, agent.critic_opt, agent.temperature_opt]
    if isinstance(agent, BehaviourCloning):
        return [agent.opt]
    return [agent.actor_opt, agent.critic_opt, agent.vae_opt, agent.alpha_opt]
