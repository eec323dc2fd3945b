"""Gymnasium MuJoCo continuous control: making an environment by id, and playing a policy on a few
copies of it at once (one batched policy call per step for all copies), for evaluation or to record
transitions as an offline dataset.

Episode ends follow Gymnasium: `terminated` (the task ended: no bootstrap) and `truncated` (the time
limit: bootstrap). A recorded stream keeps each copy's transitions contiguous, so episodes stay whole,
and the last transition of a copy's stream is marked a timeout when the step budget cut its episode.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from common.papers import UsageError


def make(env_id: str):
    """gymnasium.make(env_id), with one clear error for an id gymnasium does not know."""
    import gymnasium as gym
    if env_id not in gym.registry:
        mujoco = sorted(k for k, spec in gym.registry.items() if "mujoco" in str(spec.entry_point))
        raise UsageError(f"unknown environment {env_id!r}; valid MuJoCo ids: {', '.join(mujoco)}")
    return gym.make(env_id)


@dataclass
class Played:
    returns: np.ndarray   # the undiscounted return of every finished episode
    lengths: np.ndarray
    transitions: dict | None  # when recorded: observations, actions, rewards, next_observations, terminals, timeouts


def play(env_id: str, policy: Callable[[np.ndarray], np.ndarray], seed: int, copies: int = 10,
         episodes: int | None = None, steps: int | None = None, record: bool = False) -> Played:
    """Play `policy` (observations (n, obs) -> actions (n, act)) on `copies` environments, copy i reset
    with seed `seed + i`, until each copy finished its share of `episodes`, or took its share of `steps`.
    """
    if (episodes is None) == (steps is None):
        raise ValueError("give episodes or steps, not both")
    envs = [make(env_id) for _ in range(copies)]
    quota = [-(-episodes // copies)] * copies if episodes else [steps // copies + (i < steps % copies)
                                                                 for i in range(copies)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    streams = [{k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminals",
                                "timeouts")} for _ in envs]
    done, taken, running, length = np.zeros(copies, int), np.zeros(copies, int), np.zeros(copies), np.zeros(copies, int)
    returns, lengths = [], []
    low, high = envs[0].action_space.low, envs[0].action_space.high
    while True:
        active = np.flatnonzero(done < quota) if episodes else np.flatnonzero(taken < quota)
        if len(active) == 0:
            break
        actions = np.clip(np.asarray(policy(obs[active]), dtype=np.float32), low, high)
        for action, i in zip(actions, active):
            next_obs, reward, terminated, truncated, _ = envs[i].step(action)
            taken[i] += 1
            running[i] += reward
            length[i] += 1
            if record:
                s = streams[i]
                for key, value in (("observations", obs[i].copy()), ("actions", action), ("rewards", reward),
                                   ("next_observations", next_obs), ("terminals", terminated),
                                   ("timeouts", truncated and not terminated)):
                    s[key].append(value)
            if terminated or truncated:
                returns.append(running[i])
                lengths.append(length[i])
                running[i], length[i] = 0.0, 0
                done[i] += 1
                next_obs = envs[i].reset()[0]
            obs[i] = next_obs
    for env in envs:
        env.close()
    transitions = None
    if record:
        for s in streams:  # the step budget cut this copy's last episode: a timeout, not a terminal
            if s["rewards"] and not (s["terminals"][-1] or s["timeouts"][-1]):
                s["timeouts"][-1] = True
        transitions = {k: np.concatenate([np.asarray(s[k], dtype=np.float32).reshape(len(s[k]), -1)
                                          for s in streams if s[k]]) for k in streams[0]}
        for key in ("rewards", "terminals", "timeouts"):
            transitions[key] = transitions[key].reshape(-1)
    return Played(np.asarray(returns), np.asarray(lengths), transitions)
