"""PEARL (Rakelly et al. 2019): the runner. A tier is an experiment over task family x algorithm:

  algo=pearl       PEARL meta-training (Algorithm 1) with meta-tests by posterior sampling (Algorithm 2)
  algo=pearl_det   the ablation of §6.3 / Fig. 7: a deterministic z (no information bottleneck, so no KL:
                   kl_lambda = 0 in effect)
  algo=rl2         the on-policy meta-RL baseline RL² (Duan et al. 2016), trained with PPO (rl2.py)

Every `eval_every` iterations the policy is meta-tested on every held-out task (`family.n_test`), and the
curve gets the return against the environment steps of meta-training so far. The metrics:

  test_return          the official AverageReturn_all_test_tasks: the mean over test tasks of the return of
                       the last trajectory of a meta-test (the sparse return on a sparse family), averaged
                       over the last `final_evals` meta-tests
  first_return         the same for the first trajectory (z from the prior: no context yet)
  posterior_return     the mean return of the trajectories after the `eval_exploration` exploration ones
  prior_success, posterior_success   sparse families: the fraction of exploration (prior-z) trajectories,
                       and of later (posterior-z) trajectories, that came within the goal radius
  steps_to_threshold   the training environment steps at the first meta-test whose return reached
                       `return_threshold` (undefined when none did)
  steps_lower_bound    the same, or the run's whole budget when the threshold was never reached: a lower
                       bound on the steps the method needs, for "needs at least k times more steps" claims
  env_steps            environment steps of meta-training (meta-tests not counted, as in the paper's plots)
"""
from __future__ import annotations

import copy
import dataclasses
import time

import numpy as np
import torch

from common.config import check_names, check_range
from common.context import RunContext
from common.experiments import grid
from common.papers import UsageError
from reproductions.pearl import meta, tasks as task_families
from reproductions.pearl.pearl import PEARL, PEARLConfig
from reproductions.pearl.rl2 import RL2, RL2Config, check_config as check_rl2

ALGOS = ("pearl", "rl2")

# The paper tier: the official defaults (katerakelly/oyster configs/default.py); each family's own
# settings (configs/<family>.json) come with its point, below.
CONFIG = {
    "family": "cheetah_vel",
    "algo": "pearl",
    "pearl": {"latent": 5, "hidden": [300, 300, 300], "encoder_hidden": [200, 200, 200], "lr": 3e-4,
              "gamma": 0.99, "tau": 0.005, "reward_scale": 5.0, "kl_lambda": 0.1,
              "information_bottleneck": True},
    "iterations": 500,          # num_iterations
    "train_steps": 2000,        # num_train_steps_per_itr (gradient steps per iteration)
    "meta_batch": 16,           # tasks per gradient step
    "batch_size": 256,          # RL transitions per task
    "context_batch": 64,        # embedding_batch_size: context transitions per task
    "initial_steps": 2000,      # num_initial_steps per training task, z from the prior, before any update
    "tasks_per_iteration": 5,   # num_tasks_sample
    "prior_steps": 400,         # num_steps_prior
    "posterior_steps": 0,       # num_steps_posterior
    "extra_rl_steps": 400,      # num_extra_rl_steps_posterior (RL buffer only)
    "replay_capacity": 1_000_000,  # per task
    "eval_every": 1,            # iterations between meta-tests
    "eval_trajectories": 3,     # num_steps_per_eval / max_path_length
    "eval_exploration": 1,      # num_exp_traj_eval
    "eval_repeats": 2,          # num_evals
    "final_evals": 3,           # meta-tests averaged into the final metrics
    "return_threshold": None,   # for steps_to_threshold (per family, with its point; None: not measured)
    "checkpoint_every": 10,     # iterations between checkpoints
    # RL² (rl2.py: ProMP's settings, the code PEARL compared with), and its budget
    "rl2": {f.name: f.default for f in dataclasses.fields(RL2Config)},
    "rl2_env_steps": 100_000_000,   # the x-range of the on-policy curves in Fig. 3 (M)
    "rl2_eval_every": 10,           # RL² iterations between meta-tests
}

# The official per-family settings (configs/*.json). max_path_length and the task counts live with the
# family (tasks.py).
OFFICIAL = {
    "point_sparse": {"family": "point_sparse", "train_steps": 1000, "initial_steps": 200, "tasks_per_iteration": 10,
                     "prior_steps": 100, "posterior_steps": 900, "extra_rl_steps": 0, "eval_trajectories": 20,
                     "eval_exploration": 5, "context_batch": 1024, "pearl.gamma": 0.9, "pearl.reward_scale": 100.0,
                     "pearl.kl_lambda": 1.0},
    "cheetah_vel": {"family": "cheetah_vel", "initial_steps": 2000, "prior_steps": 400, "posterior_steps": 0,
                    "extra_rl_steps": 600, "eval_repeats": 1, "eval_trajectories": 3, "eval_exploration": 2,
                    "context_batch": 100,
                    "return_threshold": -150.0},  # not official: the best task-agnostic return (README, Claims)
}
ALGO_SETTINGS = {"pearl": {"algo": "pearl"}, "pearl_det": {"algo": "pearl", "pearl.information_bottleneck": False},
                 "rl2": {"algo": "rl2"}}

# See README, Tiers.
CPU = {
    "point_sparse": {**OFFICIAL["point_sparse"], "iterations": 160, "train_steps": 250, "meta_batch": 8,
                     "batch_size": 128, "context_batch": 256, "posterior_steps": 200, "replay_capacity": 20_000,
                     "eval_every": 10, "rl2_env_steps": 2_500_000, "rl2.tasks_per_iteration": 80},
    "cheetah_vel": {**OFFICIAL["cheetah_vel"], "iterations": 30, "meta_batch": 8,
                    "batch_size": 128, "initial_steps": 400, "replay_capacity": 20_000, "eval_every": 5,
                    "rl2_env_steps": 4_000_000},
}
TIERS = {
    "smoke": {"pearl": {"hidden": [16, 16], "encoder_hidden": [16, 16]}, "iterations": 2, "train_steps": 3,
              "meta_batch": 2, "batch_size": 8, "context_batch": 8, "initial_steps": 20, "tasks_per_iteration": 2,
              "prior_steps": 20, "posterior_steps": 20, "extra_rl_steps": 20, "eval_trajectories": 2,
              "eval_exploration": 1, "eval_repeats": 1, "final_evals": 1, "replay_capacity": 200,
              "checkpoint_every": 1, "rl2": {"hidden": 8, "tasks_per_iteration": 3, "epochs": 2}, "rl2_env_steps": 240,
              "rl2_eval_every": 1},
    "cpu": {"pearl": {"hidden": [128, 128, 128]}},
}
POINTS = {
    "smoke": grid(family={"point_sparse": {"family": "point_sparse"}}, algo=ALGO_SETTINGS),
    "cpu": grid(family={"point_sparse": CPU["point_sparse"]}, algo=ALGO_SETTINGS)
    + grid(family={"cheetah_vel": CPU["cheetah_vel"]}, algo={k: ALGO_SETTINGS[k] for k in ("pearl", "rl2")}),
    "paper": grid(family={k: {**v, "rl2.tasks_per_iteration": min(100, task_families.FAMILIES[k].n_train)}
                           for k, v in OFFICIAL.items()}, algo=ALGO_SETTINGS),
}
FEW_STEPS = {"iterations": 1, "train_steps": 2, "initial_steps": 1, "prior_steps": 1, "posterior_steps": 1,
             "extra_rl_steps": 1, "eval_trajectories": 2, "eval_exploration": 1, "eval_repeats": 1, "final_evals": 1,
             "rl2_env_steps": 1}
LIBRARIES = ("gymnasium", "mujoco")
DATASETS = ()


def validate(cfg: dict) -> None:
    check_names("family", cfg["family"], list(task_families.FAMILIES))
    check_names("algo", cfg["algo"], ALGOS)
    for key in ("iterations", "train_steps", "meta_batch", "batch_size", "context_batch", "tasks_per_iteration",
                "replay_capacity", "eval_every", "eval_trajectories", "eval_repeats", "final_evals", "checkpoint_every"):
        check_range(key, cfg[key], 1)
    for key in ("initial_steps", "prior_steps", "posterior_steps", "extra_rl_steps", "rl2_env_steps"):
        check_range(key, cfg[key], 0)
    check_range("eval_exploration", cfg["eval_exploration"], 1, cfg["eval_trajectories"] - 1,
                what=" (a meta-test needs at least one trajectory after exploring)")
    if cfg["return_threshold"] is not None:
        check_range("return_threshold", cfg["return_threshold"])
    p = cfg["pearl"]
    fields = {f.name for f in dataclasses.fields(PEARLConfig)}
    unknown = set(p) - fields
    if unknown:
        raise UsageError(f"pearl: unknown setting {sorted(unknown)}; valid: {', '.join(sorted(fields))}")
    for key in ("latent",):
        check_range(f"pearl.{key}", p[key], 1)
    check_range("pearl.hidden", p["hidden"], 1)
    check_range("pearl.encoder_hidden", p["encoder_hidden"], 1)
    for key in ("lr", "reward_scale", "kl_lambda"):
        check_range(f"pearl.{key}", p[key], 0)
    for key in ("gamma", "tau"):
        check_range(f"pearl.{key}", p[key], 0, 1)
    family = task_families.FAMILIES[cfg["family"]]
    check_range("rl2_eval_every", cfg["rl2_eval_every"], 1)
    rl2_fields = {f.name for f in dataclasses.fields(RL2Config)}
    if set(cfg["rl2"]) - rl2_fields:
        raise UsageError(f"rl2: unknown setting {sorted(set(cfg['rl2']) - rl2_fields)}; "
                         f"valid: {', '.join(sorted(rl2_fields))}")
    check_rl2(RL2Config(**cfg["rl2"]))
    if cfg["rl2"]["tasks_per_iteration"] > family.n_train:
        raise UsageError(f"rl2.tasks_per_iteration ({cfg['rl2']['tasks_per_iteration']}) must be <= the family's "
                         f"{family.n_train} training tasks")
    if cfg["tasks_per_iteration"] > family.n_train:
        raise UsageError(f"tasks_per_iteration ({cfg['tasks_per_iteration']}) must be <= the family's "
                         f"{family.n_train} training tasks")


def run(cfg: dict, ctx: RunContext) -> dict:
    return train_rl2(cfg, ctx) if cfg["algo"] == "rl2" else train_pearl(cfg, ctx)


# -- PEARL ----------------------------------------------------------------------------------------
def make_agent(cfg: dict, family, obs_dim: int, act_dim: int) -> PEARL:
    settings = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg["pearl"].items()}
    return PEARL(obs_dim, act_dim, PEARLConfig(**settings, use_next_obs=family.use_next_obs))


def train_pearl(cfg: dict, ctx: RunContext) -> dict:
    family = task_families.FAMILIES[cfg["family"]]
    train_tasks, test_tasks = task_families.split(family)
    train_envs = [family.make(task) for task in train_tasks]
    test_envs = [family.make(task) for task in test_tasks]
    obs_dim, act_dim = train_envs[0].observation_space.shape[0], train_envs[0].action_space.shape[0]
    agent = make_agent(cfg, family, obs_dim, act_dim).to(ctx.device)
    rl_buffer = meta.TaskReplay(len(train_tasks), cfg["replay_capacity"], obs_dim, act_dim, ctx.device)
    encoder_buffer = meta.TaskReplay(len(train_tasks), cfg["replay_capacity"], obs_dim, act_dim, ctx.device)
    generator = torch.Generator(ctx.device).manual_seed(ctx.seed)
    state = ctx.restore("train") or {"iteration": 0, "env_steps": 0, "updates": 0, "tests": [],
                                     "update_seconds": 0.0, "env_seconds": 0.0}
    if "agent" in state:
        agent.load_state_dict(state.pop("agent"))
        for name, saved in state.pop("optimizers").items():
            agent.optimizers[name].load_state_dict(saved)
        rl_buffer.load_state_dict(state.pop("rl_buffer"))
        encoder_buffer.load_state_dict(state.pop("encoder_buffer"))
        generator.set_state(state.pop("generator"))
    horizon, sparse = family.horizon, family.sparse

    def gather(task_ids: np.ndarray, steps: int, posterior: bool, to_encoder: bool, seed: int) -> None:
        envs = [train_envs[i] for i in task_ids]
        seeds = [seed + 1000 * j for j in range(len(task_ids))]
        clock = time.perf_counter()
        for path in meta.collect(agent, envs, task_ids, steps, horizon, posterior, encoder_buffer,
                                 cfg["context_batch"], sparse, generator, seeds, ctx.device):
            rl_buffer.add(task_ids, path)
            if to_encoder:
                encoder_buffer.add(task_ids, path)
            state["env_steps"] += int(path["valid"].sum())
        state["env_seconds"] += time.perf_counter() - clock

    def test(iteration: int) -> None:
        results = [meta.meta_test(agent, test_envs, cfg["eval_trajectories"], cfg["eval_exploration"], horizon,
                                  sparse, [10**6 * (ctx.seed + 1) + 10_000 * repeat + 100 * iteration + j
                                           for j in range(len(test_envs))], ctx.device)
                   for repeat in range(cfg["eval_repeats"])]
        returns = np.concatenate([r["returns"] for r in results], axis=1)  # (trajectories, tasks x repeats)
        success = np.concatenate([r["success"] for r in results], axis=1)
        row = {"iteration": iteration, "env_steps": state["env_steps"], "returns": returns.mean(1).tolist()}
        logged = {"test_return": row["returns"][-1],
                  **{f"trajectory_{k + 1}_return": value for k, value in enumerate(row["returns"])}}
        if sparse:  # a goal radius exists only on the sparse families
            row["success"] = success.mean(1).tolist()
            logged["posterior_success"] = float(np.mean(row["success"][cfg["eval_exploration"]:]))
        state["tests"].append(row)
        ctx.log(state["env_steps"], **logged)

    algo = cfg["algo"]
    progress = ctx.progress(range(state["iteration"], cfg["iterations"]), f"{cfg['family']} {algo}",
                            total=cfg["iterations"] - state["iteration"])
    with ctx.may_diverge(algo) as outcome:
        for iteration in progress:
            base = 7919 * (ctx.seed + 1) + 100_003 * iteration
            if iteration == 0 and cfg["initial_steps"]:  # Algorithm 1's first collection, z ~ prior
                gather(np.arange(len(train_tasks)), cfg["initial_steps"], False, True, base)
            chosen = torch.randperm(len(train_tasks), generator=generator, device=generator.device)
            chosen = chosen[:cfg["tasks_per_iteration"]].cpu().numpy()
            encoder_buffer.clear(chosen)
            for phase, (steps, posterior, to_encoder) in enumerate(
                    ((cfg["prior_steps"], False, True), (cfg["posterior_steps"], True, True),
                     (cfg["extra_rl_steps"], True, False))):
                if steps:
                    gather(chosen, steps, posterior, to_encoder, base + 10_007 * (phase + 1))
            clock = time.perf_counter()
            for _ in range(cfg["train_steps"]):
                ids = torch.randint(len(train_tasks), (cfg["meta_batch"],), generator=generator,
                                    device=generator.device).cpu().numpy()
                context = meta.context(agent, encoder_buffer.sample(ids, cfg["context_batch"], generator), sparse)
                stats = agent.update(rl_buffer.sample(ids, cfg["batch_size"], generator), context)
            state["update_seconds"] += time.perf_counter() - clock
            state["updates"] += cfg["train_steps"]
            ctx.log(state["env_steps"], **{k: float(v) for k, v in stats.items()})
            done = iteration + 1
            if done % cfg["eval_every"] == 0 or done == cfg["iterations"]:
                test(done)
            state["iteration"] = done
            if done % cfg["checkpoint_every"] == 0 or done == cfg["iterations"]:
                ctx.checkpoint("train", {**state, "agent": agent.state_dict(), "generator": generator.get_state(),
                                         "optimizers": {k: o.state_dict() for k, o in agent.optimizers.items()},
                                         "rl_buffer": rl_buffer.state_dict(),
                                         "encoder_buffer": encoder_buffer.state_dict()})
    for env in train_envs + test_envs:
        env.close()
    if state["update_seconds"] > 0:
        ctx.record_throughput("updates_per_s", state["updates"] / state["update_seconds"])
    if state["env_seconds"] > 0:
        ctx.record_throughput("env_steps_per_s", state["env_steps"] / state["env_seconds"])
    metrics = {**outcome.metrics(), "env_steps": float(state["env_steps"]),
               "posterior_order_gap": posterior_order_gap(agent, encoder_buffer, cfg, sparse, generator)}
    metrics.update(_test_metrics(state["tests"], cfg, cfg["eval_exploration"], state["env_steps"], ctx))
    return metrics


@torch.no_grad()
def posterior_order_gap(agent: PEARL, encoder_buffer: meta.TaskReplay, cfg: dict, sparse: bool,
                        generator: torch.Generator) -> float:
    """papers.md §9 check 4: the largest change of q(z|c)'s mean or variance, relative to its size, when a
    real context batch of every training task is shuffled (a product of factors has no order). In float64,
    so that the rounding of a reordered sum stays far below any real dependence on the order."""
    ids = np.flatnonzero(encoder_buffer.size.numpy() > 0)
    context = meta.context(agent, encoder_buffer.sample(ids, cfg["context_batch"], generator), sparse).double()
    encoder = copy.deepcopy(agent.encoder).double()
    order = torch.randperm(context.shape[1], generator=generator, device=generator.device).to(context.device)
    gaps = [((a - b).abs() / b.abs().clamp_min(1e-12)).max() for a, b in
            zip(encoder.posterior(context[:, order]), encoder.posterior(context))]
    return float(max(gaps))


def _test_metrics(tests: list[dict], cfg: dict, explore: int, budget: int, ctx: RunContext) -> dict:
    """The final metrics from the meta-tests (module docstring); `explore`: how many of a meta-test's first
    trajectories explore."""
    metrics: dict = {}
    last = tests[-cfg["final_evals"]:]
    if not last:
        for name in ("test_return", "first_return", "posterior_return"):
            ctx.mark_undefined(name, "no meta-test ran")
        return metrics
    returns = np.array([t["returns"] for t in last])  # (tests, trajectories)
    metrics.update(test_return=float(returns[:, -1].mean()), first_return=float(returns[:, 0].mean()),
                   posterior_return=float(returns[:, explore:].mean()))
    if "success" in last[0]:
        success = np.array([t["success"] for t in last])
        metrics.update(prior_success=float(success[:, :explore].mean()),
                       posterior_success=float(success[:, explore:].mean()))
    if cfg["return_threshold"] is None:
        return metrics
    reached = [t["env_steps"] for t in tests if t["returns"][-1] >= cfg["return_threshold"]]
    if reached:
        metrics["steps_to_threshold"] = float(reached[0])
    else:
        ctx.mark_undefined("steps_to_threshold", f"no meta-test reached the return {cfg['return_threshold']}")
    metrics["steps_lower_bound"] = float(reached[0] if reached else budget)
    return metrics



# -- RL² ------------------------------------------------------------------------------------------
def train_rl2(cfg: dict, ctx: RunContext) -> dict:
    """RL² until `rl2_env_steps` training steps: each iteration one trial on each of
    `rl2.tasks_per_iteration` training tasks (drawn without replacement), then PPO; a meta-test every
    `rl2_eval_every` iterations is one deterministic trial on every test task: its last episode's return is
    `test_return`, its first's `first_return` (the same names as PEARL's: a trial's first episode has no
    experience of the task yet)."""
    family = task_families.FAMILIES[cfg["family"]]
    train_tasks, test_tasks = task_families.split(family)
    train_envs = [family.make(task) for task in train_tasks]
    test_envs = [family.make(task) for task in test_tasks]
    obs_dim, act_dim = train_envs[0].observation_space.shape[0], train_envs[0].action_space.shape[0]
    settings = RL2Config(**cfg["rl2"])
    agent = RL2(obs_dim, act_dim, family.horizon, settings, sparse=family.sparse, device=ctx.device, seed=ctx.seed)
    generator = torch.Generator().manual_seed(ctx.seed)
    state = ctx.restore("train") or {"iteration": 0, "tests": [], "seconds": 0.0}
    if "agent" in state:
        agent.load_state_dict(state.pop("agent"))
        generator.set_state(state.pop("generator"))
    per_iteration = settings.tasks_per_iteration * settings.episodes_per_trial * family.horizon
    iterations = -(-cfg["rl2_env_steps"] // per_iteration)
    progress = ctx.progress(range(state["iteration"], iterations), f"{cfg['family']} rl2",
                            total=iterations - state["iteration"])
    with ctx.may_diverge("rl2") as outcome:
        for iteration in progress:
            clock = time.perf_counter()
            chosen = torch.randperm(len(train_envs), generator=generator)[:settings.tasks_per_iteration].tolist()
            base = 7919 * (ctx.seed + 1) + 100_003 * iteration
            batch = agent.collect([train_envs[i] for i in chosen], [base + 1000 * j for j in range(len(chosen))])
            stats = agent.update(batch)
            state["seconds"] += time.perf_counter() - clock
            ctx.log(agent.train_env_steps, train_return=float(batch["episode_returns"][:, -1].mean()),
                    **{k: float(v) for k, v in stats.items()})
            done = iteration + 1
            if done % cfg["rl2_eval_every"] == 0 or done == iterations:
                returns = np.concatenate([agent.evaluate(test_envs, [10**6 * (ctx.seed + 1) + 10_000 * repeat
                                                                     + 100 * done + j for j in range(len(test_envs))])
                                          for repeat in range(cfg["eval_repeats"])])  # (tasks x repeats, episodes)
                row = {"iteration": done, "env_steps": agent.train_env_steps, "returns": returns.mean(0).tolist()}
                state["tests"].append(row)
                ctx.log(agent.train_env_steps, test_return=row["returns"][-1], first_return=row["returns"][0])
            state["iteration"] = done
            if done % cfg["checkpoint_every"] == 0 or done == iterations:
                ctx.checkpoint("train", {**state, "agent": agent.state_dict(), "generator": generator.get_state()})
    for env in train_envs + test_envs:
        env.close()
    if state["seconds"] > 0:
        ctx.record_throughput("env_steps_per_s", agent.train_env_steps / state["seconds"])
    metrics = {**outcome.metrics(), "env_steps": float(agent.train_env_steps)}
    metrics.update(_test_metrics(state["tests"], cfg, 1, agent.train_env_steps, ctx))
    return metrics
