"""Atari environments for the RL papers: ale-py's vectorized AtariVectorEnv, which steps, skips,
greyscales, resizes and stacks frames in C++, set up to the deterministic 2013 DQN protocol, and
seeded so that a seed gives the same episodes on every run.

What the environment does, per sub-environment (ale-py 0.12, `ale_py.vector_env.AtariVectorEnv`):
repeat the action `frame_skip` times and sum the rewards; greyscale and resize the last screen to
84x84 (area interpolation, no 110x84 crop); stack the last `stack` frames, zeros before an episode's
first frame; no sticky actions (repeat_action_probability 0); reset on the step after an episode
ends. What it does not do here: no reward clipping (the learner clips, so scores stay raw), no
no-op starts, no FIRE on reset, no life-loss terminals, no max over the last two screens, unless a
caller asks for them (the 2013 paper used none of them).
"""
from __future__ import annotations

import numpy as np

from common.papers import UsageError


def atari_games() -> list[str]:
    from ale_py import roms
    return sorted(roms.get_all_rom_ids())


def check_game(game: str) -> str:
    games = atari_games()
    if game not in games:
        raise UsageError(f"unknown Atari game {game!r}; valid games (ale-py ROM ids): {', '.join(games)}")
    return game


def make_atari(game: str, num_envs: int, frame_skip: int = 4, stack: int = 4, noop_max: int = 0,
               fire_reset: bool = False, episodic_life: bool = False, max_pool: bool = False,
               max_episode_frames: int = 108_000):
    """A vector of `num_envs` copies of `game`, preprocessed in C++ on one thread."""
    from ale_py import AtariVectorEnv
    check_game(game)
    return AtariVectorEnv(game, num_envs, num_threads=1, repeat_action_probability=0.0, frameskip=frame_skip,
                          stack_num=stack, img_height=84, img_width=84, grayscale=True, maxpool=max_pool,
                          noop_max=noop_max, use_fire_reset=fire_reset, episodic_life=episodic_life,
                          reward_clipping=False, max_num_frames_per_episode=max_episode_frames)


def reset(env, seed: int) -> np.ndarray:
    """Reset every sub-environment, sub-environment i with seed `seed + i`; returns the stacked frames."""
    obs, info = env.reset(seed=int(seed))
    _check_order(info)
    return obs


def step(env, actions: np.ndarray):
    """One vector step: (obs, rewards, terminated, truncated), in sub-environment order."""
    obs, rewards, terminated, truncated, info = env.step(np.asarray(actions, dtype=np.int64))
    _check_order(info)
    return obs, rewards.astype(np.float32), terminated, truncated


def _check_order(info: dict) -> None:
    ids = info["env_id"]
    if not np.array_equal(ids, np.arange(len(ids))):  # batch_size == num_envs keeps them in order
        raise RuntimeError(f"the vector env returned sub-environments out of order: {ids}")
