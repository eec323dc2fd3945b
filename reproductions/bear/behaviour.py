"""The offline datasets, made the way the paper made its own (§6): behaviour policies trained with SAC,
then rolled out. One generation run per environment writes every kind, in D4RL's HDF5 layout:

    random         a uniformly random policy
    medium         the paper's "mediocre" data: the first SAC snapshot whose evaluation return reaches
                   `medium_fraction` of the best snapshot's, acting with its stochastic policy
    expert         the paper's "optimal" data: the best snapshot's stochastic policy
    medium-replay  D4RL's: SAC's replay buffer up to the medium snapshot
    medium-expert  D4RL's: the medium and expert data concatenated

Reference returns for normalized scores (D4RL's convention, 100 (R - R_random) / (R_expert - R_random))
are measured here, on these environments: the random policy and the expert snapshot, each over
`reference_episodes` finished episodes. They are written into every file's attributes.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from common import control
from common.context import RunContext
from common.replay import TransitionReplay
from common.sac import SAC, SACConfig

KINDS = ("random", "medium", "expert", "medium-replay", "medium-expert")


def _policy(actor, device, deterministic: bool = False):
    """A numpy policy for `control.play`; None is the uniformly random policy."""
    def act(obs):
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32, device=device)
            return (actor.mode(x) if deterministic else actor.sample(x)[0]).cpu().numpy()
    return act


def train_behaviour(env_id: str, data: dict, seed: int, ctx: RunContext) -> dict:
    """SAC on `env_id` for `data["behaviour_steps"]` environment steps, one gradient step per environment
    step after `start_steps` uniformly random ones. Every `eval_every` steps the actor is evaluated
    (`eval_episodes` deterministic episodes) and kept as a snapshot with the replay size at that moment.

    Episode i starts from `env.reset(seed=episode_seed(seed, i))`, and the run is checkpointed at the
    first episode end after each evaluation, so a resumed run continues exactly where the killed one
    would have (the same episodes, the same random streams)."""
    env = control.make(env_id)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    agent = SAC(obs_dim, act_dim, SACConfig(hidden=tuple(data["sac_hidden"]), lr=data["sac_lr"])).to(ctx.device)
    optimizers = (agent.actor_opt, agent.critic_opt, agent.temperature_opt)
    replay = TransitionReplay(data["behaviour_steps"], obs_dim, act_dim, ctx.device)
    generator = torch.Generator(ctx.device).manual_seed(seed)
    saved = ctx.restore("behaviour")
    state = {"step": 0, "episodes": 0, "snapshots": [], "returns": [], "replay_sizes": [], "update_seconds": 0.0,
             "updates": 0}
    if saved is not None:
        agent.load_state_dict(saved["agent"])
        for opt, opt_state in zip(optimizers, saved["optimizers"]):
            opt.load_state_dict(opt_state)
        replay.load_state_dict(saved["replay"])
        generator.set_state(saved["generator"])
        state = saved["state"]

    def reset():
        env.action_space.seed(episode_seed(seed, state["episodes"]))
        return env.reset(seed=episode_seed(seed, state["episodes"]))[0]

    obs, episode_return, pending = reset(), 0.0, False
    for step in ctx.progress(range(state["step"], data["behaviour_steps"]), f"SAC {env_id}",
                             total=data["behaviour_steps"] - state["step"]):
        if step < data["start_steps"]:
            action = env.action_space.sample()
        else:
            action = agent.act(torch.as_tensor(obs, dtype=torch.float32, device=ctx.device)[None])[0].cpu().numpy()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        replay.add({"observations": obs[None], "actions": action[None], "rewards": [reward],
                    "next_observations": next_obs[None], "terminals": [float(terminated)]})
        episode_return += float(reward)
        obs = next_obs
        if step >= data["start_steps"]:
            clock = time.perf_counter()
            agent.update(replay.sample(data["sac_batch"], generator))
            state["update_seconds"] += time.perf_counter() - clock
            state["updates"] += 1
        if (step + 1) % data["eval_every"] == 0:
            played = control.play(env_id, _policy(agent.actor, ctx.device, deterministic=True), seed=seed + step,
                                  copies=data["eval_episodes"], episodes=data["eval_episodes"])
            state["returns"].append(float(played.returns.mean()))
            state["snapshots"].append({k: v.detach().cpu().clone() for k, v in agent.actor.state_dict().items()})
            state["replay_sizes"].append(len(replay))
            ctx.log(step + 1, behaviour_eval_return=state["returns"][-1])
            pending = True
        if terminated or truncated:
            ctx.log(step, behaviour_episode_return=episode_return)
            state["episodes"] += 1
            episode_return = 0.0
            if pending:  # at an episode's end: a resumed run starts the next episode, as this one will
                state["step"], pending = step + 1, False
                ctx.checkpoint("behaviour", {"agent": agent.state_dict(), "replay": replay.state_dict(),
                                             "optimizers": [o.state_dict() for o in optimizers],
                                             "generator": generator.get_state(), "state": state})
            obs = reset()
    env.close()
    if state["updates"]:
        ctx.record_throughput("behaviour_sac_updates_per_s", state["updates"] / max(state["update_seconds"], 1e-9))
    return {"agent": agent, "replay": replay.arrays(), "state": state, "obs_dim": obs_dim, "act_dim": act_dim}


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of the behaviour run's `episode`-th episode."""
    return 1_000_000 * (seed + 1) + episode


def pick_snapshots(returns: list[float], medium_fraction: float) -> tuple[int, int]:
    """(medium, expert) snapshot indices: expert is the best evaluation; medium the first whose return
    reaches `medium_fraction` of it (measured from the worst evaluation, so negative returns work)."""
    returns = np.asarray(returns)
    expert = int(returns.argmax())
    floor = min(returns.min(), 0.0)
    medium = int(np.flatnonzero(returns - floor >= medium_fraction * (returns[expert] - floor))[0])
    return medium, expert


def make_datasets(env_id: str, data: dict, seed: int, ctx: RunContext, trained: dict) -> tuple[dict, dict]:
    """Every dataset kind's transitions, and the facts recorded beside them."""
    state, actor = trained["state"], trained["agent"].actor
    medium, expert = pick_snapshots(state["returns"], data["medium_fraction"])

    def rollout(snapshot, offset):
        if snapshot is None:
            low, high = -1.0, 1.0  # every Gymnasium MuJoCo locomotion task's action box

            def policy(obs):
                return rng.uniform(low, high, size=(len(obs), trained["act_dim"]))
        else:
            actor.load_state_dict(snapshot)
            policy = _policy(actor, ctx.device)
        return control.play(env_id, policy, seed=seed + offset, copies=data["rollout_copies"],
                            steps=data["size"], record=True)

    rng = np.random.default_rng(seed)
    played = {"random": rollout(None, 10_000), "medium": rollout(state["snapshots"][medium], 20_000),
              "expert": rollout(state["snapshots"][expert], 30_000)}
    sets = {kind: p.transitions for kind, p in played.items()}
    upto = state["replay_sizes"][medium]
    replay = {k: v[:upto] for k, v in trained["replay"].items()}
    replay["timeouts"] = _replay_timeouts(replay)
    sets["medium-replay"] = replay
    sets["medium-expert"] = {k: np.concatenate([sets["medium"][k], sets["expert"][k]]) for k in sets["medium"]}

    reference_random = control.play(env_id, lambda obs: rng.uniform(-1, 1, size=(len(obs), trained["act_dim"])),
                                     seed=seed + 40_000, copies=data["rollout_copies"],
                                     episodes=data["reference_episodes"])
    actor.load_state_dict(state["snapshots"][expert])
    reference_expert = control.play(env_id, _policy(actor, ctx.device), seed=seed + 50_000,
                                    copies=data["rollout_copies"], episodes=data["reference_episodes"])
    facts = {"medium_snapshot_step": (medium + 1) * data["eval_every"],
             "expert_snapshot_step": (expert + 1) * data["eval_every"],
             "medium_snapshot_eval_return": state["returns"][medium],
             "expert_snapshot_eval_return": state["returns"][expert],
             "reference_random_return": float(reference_random.returns.mean()),
             "reference_expert_return": float(reference_expert.returns.mean()),
             "reference_episodes": int(min(len(reference_random.returns), len(reference_expert.returns)))}
    for kind, p in played.items():  # over the finished episodes; none finished: left out
        if len(p.returns):
            facts[f"{kind}_behaviour_return"] = float(p.returns.mean())
    return sets, facts


def _replay_timeouts(replay: dict) -> np.ndarray:
    """Where the online run's episodes were cut by the time limit: s' of row i is not s of row i + 1
    while row i is not terminal (the environment was reset), and the replay's last row."""
    cut = np.any(replay["next_observations"][:-1] != replay["observations"][1:], axis=1) & (replay["terminals"][:-1] == 0)
    return np.append(cut, replay["terminals"][-1] == 0).astype(np.float32)
