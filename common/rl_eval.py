"""Evaluating a policy on a vector of environments: ε-greedy over the policy's greedy actions, the
average total (unclipped) reward per completed episode, over a fixed number of episodes or steps.

Each sub-environment plays the same share of the episodes, so short episodes are not
over-represented (a vector env that stopped at the first N finished episodes would favour them).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from common import rl_env


@dataclass(frozen=True)
class Evaluation:
    mean_return: float  # over completed episodes; NaN when none completed (a partial game is not a score)
    episodes: int  # completed episodes
    steps: int  # agent steps taken (resets excluded)
    returns: tuple[float, ...]


def evaluate(env, greedy: Callable[[np.ndarray], np.ndarray], num_actions: int, seed: int, epsilon: float,
             episodes: int, max_steps: int) -> Evaluation:
    """Play until every sub-environment finished `ceil(episodes / num_envs)` episodes, or until
    `max_steps` agent steps were taken in all (the last vector step may pass it by fewer than
    num_envs); `greedy(obs)` maps stacked observations to one action per sub-environment."""
    n = env.num_envs
    quota = -(-episodes // n)
    rng = np.random.default_rng(seed)
    obs = rl_env.reset(env, seed)
    running, done = np.zeros(n), np.zeros(n, dtype=int)
    returns: list[float] = []
    resetting = np.zeros(n, dtype=bool)  # the next step resets this sub-environment
    steps = 0
    while (done < quota).any() and steps < max_steps:
        actions = greedy(obs)
        explore = rng.random(n) < epsilon
        actions = np.where(explore, rng.integers(0, num_actions, size=n), actions)
        obs, rewards, terminated, truncated = rl_env.step(env, actions)
        playing = ~resetting & (done < quota)
        steps += int(playing.sum())
        running += np.where(playing, rewards, 0.0)
        ended = (terminated | truncated) & playing
        for i in np.flatnonzero(ended):
            returns.append(float(running[i]))
            done[i] += 1
        running[terminated | truncated] = 0.0
        resetting = terminated | truncated
    mean = float(np.mean(returns)) if returns else float("nan")
    return Evaluation(mean, len(returns), steps, tuple(returns))
