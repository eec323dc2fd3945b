"""The RL pieces in common/: the frame-once replay memory against the frames a real ALE vector env
showed, the Atari env's protocol settings, the ε-greedy evaluation loop, and IQM with rliable's
stratified bootstrap."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common import rl_env
from common.papers import UsageError
from common.replay import FrameReplay
from common.rl_eval import evaluate
from common.stats import iqm, stratified_bootstrap_ci

pytest.importorskip("ale_py")


def _play(capacity: int, steps: int, num_envs: int = 2, max_episode_frames: int = 400, seed: int = 0):
    """Random play in Breakout (short truncated episodes and real game overs), every transition kept
    in full, stacked obs and next obs, as the truth the replay memory must reproduce."""
    env = rl_env.make_atari("breakout", num_envs, max_episode_frames=max_episode_frames)
    rng = np.random.default_rng(seed)
    replay = FrameReplay(capacity, num_envs, seed=seed)
    obs = rl_env.reset(env, seed)
    replay.start(obs[:, -1])
    truth, resetting, ends = {}, np.zeros(num_envs, dtype=bool), 0
    for t in range(steps):
        actions = rng.integers(0, 4, size=num_envs)
        next_obs, rewards, terminated, truncated = rl_env.step(env, actions)
        replay.add(actions, np.sign(rewards), terminated, truncated, next_obs[:, -1])
        for e in range(num_envs):
            if not resetting[e]:
                truth[(e, t)] = (obs[e].copy(), int(actions[e]), float(np.sign(rewards[e])),
                                 bool(terminated[e]), next_obs[e].copy())
        resetting = terminated | truncated
        ends += int(resetting.sum())
        obs = next_obs
    env.close()
    return replay, truth, ends


def _check(replay, truth, env, time):
    states, next_states, actions, rewards, terminal = replay.gather(np.asarray(env), np.asarray(time))
    for i, (e, t) in enumerate(zip(env, time)):
        s, a, r, d, s2 = truth[(int(e), int(t))]
        np.testing.assert_array_equal(states[i].numpy(), s)
        np.testing.assert_array_equal(next_states[i].numpy(), s2)
        assert (int(actions[i]), float(rewards[i]), bool(terminal[i])) == (a, r, d)


def test_rebuilt_stacks_equal_the_frames_seen_across_episode_ends_and_wrap_around():
    replay, truth, ends = _play(capacity=300, steps=700)
    assert ends >= 6  # truncations every 100 steps, and some game overs: many boundaries inside memory
    lo, hi = replay._candidates()
    assert replay.t > replay.slots  # the memory wrapped around more than once
    pairs = [(e, t) for e in range(replay.num_envs) for t in range(lo, hi) if replay.valid[e, t % replay.slots]]
    assert len(pairs) == len(replay) and len(pairs) >= 2 * (hi - lo) - ends
    # every transition still in memory comes back exactly, and the steps that were resets are not in it
    assert all(pair in truth for pair in pairs)
    _check(replay, truth, *zip(*pairs))
    assert {(e, t) for (e, t) in truth if t >= lo} == set(pairs)


def test_sampled_minibatches_are_real_transitions():
    replay, truth, _ = _play(capacity=200, steps=400)
    known = {(s.tobytes(), a, r, d, s2.tobytes()) for s, a, r, d, s2 in truth.values()}
    states, next_states, actions, rewards, terminal = replay.sample(64)
    assert states.shape == (64, 4, 84, 84) and not states.dtype.is_floating_point
    for i in range(64):
        item = (states[i].numpy().tobytes(), int(actions[i]), float(rewards[i]), bool(terminal[i]),
                next_states[i].numpy().tobytes())
        assert item in known


def test_a_minibatch_goes_to_the_requested_device_in_one_frame_copy():
    replay, _, _ = _play(capacity=100, steps=60)
    host = replay.sample(16)
    replay.rng = np.random.default_rng(0)
    again = replay.sample(16, device="cpu")  # the same draws whatever the device
    replay.rng = np.random.default_rng(0)
    moved = replay.sample(16, device="meta")  # a device that is not the host's, without a GPU
    assert all(t.device.type == "meta" for t in moved)
    states, next_states = moved[:2]
    assert states.untyped_storage().nbytes() == next_states.untyped_storage().nbytes() == 16 * 5 * 84 * 84
    replay.rng = np.random.default_rng(0)
    first = replay.sample(16)
    for a, b, c in zip(first, again, moved):
        assert torch.equal(a, b) and a.shape == c.shape and a.dtype == c.dtype
    assert all(t.device.type == "cpu" for t in host)


def test_a_memory_of_one_transition_holds_each_envs_newest_transition():
    replay, truth, _ = _play(capacity=1, steps=50, num_envs=3)
    states, next_states, *_ = replay.sample(32)
    newest = [truth[(e, 49)] for e in range(3) if (e, 49) in truth]
    assert len(states) == len(newest) == len(replay)
    for i, (s, _, _, _, s2) in enumerate(newest):
        np.testing.assert_array_equal(states[i].numpy(), s)
        np.testing.assert_array_equal(next_states[i].numpy(), s2)


def test_the_memory_costs_about_one_byte_per_frame_pixel():
    replay = FrameReplay(100_000, 4)
    per_transition = replay.nbytes / 100_000
    assert 84 * 84 <= per_transition < 84 * 84 * 1.01  # not the 8 x 84 x 84 of stored (obs, next_obs) stacks


def test_a_restored_memory_samples_the_same_minibatch():
    replay, _, _ = _play(capacity=100, steps=80)
    copy = FrameReplay(100, 2)
    copy.load_state_dict(replay.state_dict())
    for a, b in zip(replay.sample(32), copy.sample(32)):
        assert np.array_equal(a.numpy(), b.numpy())


def test_the_atari_env_is_deterministic_and_zero_pads_the_first_stack():
    envs = [rl_env.make_atari("pong", 1) for _ in range(2)]
    firsts = [rl_env.reset(e, seed) for e, seed in zip(envs, (0, 7))]
    assert (firsts[0][0, :3] == 0).all() and firsts[0][0, 3].any()
    actions = np.random.default_rng(0).integers(0, 6, size=200)
    trajectories = [[rl_env.step(e, a[None])[0] for a in actions] for e in envs]
    # no sticky actions, no no-op starts: the seed does not matter, the actions decide everything
    assert all(np.array_equal(a, b) for a, b in zip(*trajectories))


def test_an_unknown_game_names_the_valid_ones():
    with pytest.raises(UsageError, match="valid games.*breakout"):
        rl_env.make_atari("brekout", 1)


class FakeVectorEnv:
    """Env 0's episodes last 2 steps, env 1's last 5, reward 1 a step; autoreset on the next step."""
    num_envs = 2

    def __init__(self):
        self.lengths, self.t, self.resetting = np.array([2, 5]), np.zeros(2, dtype=int), np.zeros(2, dtype=bool)

    def reset(self, seed=None):
        self.t[:] = 0
        self.resetting[:] = False
        return np.zeros((2, 4, 84, 84), np.uint8), {"env_id": np.arange(2)}

    def step(self, actions):
        rewards = np.where(self.resetting, 0, 1)
        self.t = np.where(self.resetting, 0, self.t + 1)
        terminated = ~self.resetting & (self.t == self.lengths)
        self.resetting = terminated
        return (np.zeros((2, 4, 84, 84), np.uint8), rewards, terminated, np.zeros(2, dtype=bool),
                {"env_id": np.arange(2)})


def test_evaluation_gives_each_env_the_same_share_of_episodes():
    result = evaluate(FakeVectorEnv(), lambda obs: np.zeros(2, dtype=int), 3, seed=0, epsilon=0.05,
                      episodes=4, max_steps=1000)
    assert sorted(result.returns) == [2, 2, 5, 5] and result.mean_return == 3.5
    assert result.steps == 2 + 2 + 5 + 5  # the resets are not agent steps; env 0 idles once done


def test_evaluation_stops_at_the_step_budget():
    result = evaluate(FakeVectorEnv(), lambda obs: np.zeros(2, dtype=int), 3, seed=0, epsilon=0.0,
                      episodes=100, max_steps=8)
    # 7 steps after four vector steps, so a fifth: both envs end an episode on it
    assert result.steps == 9 and result.returns == (2.0, 2.0, 5.0)


def test_an_evaluation_that_finishes_no_episode_has_no_return():
    result = evaluate(FakeVectorEnv(), lambda obs: np.zeros(2, dtype=int), 3, seed=0, epsilon=0.0,
                      episodes=2, max_steps=1)  # one vector step: both games still running
    assert result.episodes == 0 and result.returns == () and np.isnan(result.mean_return)  # not a partial 1


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm([0, 1, 2, 3, 4, 5, 6, 100]) == pytest.approx(3.5)
    assert iqm([[1, 1], [1, 1]]) == 1


def test_the_bootstrap_is_stratified_by_task():
    rng = np.random.default_rng(0)
    scores = np.stack([np.zeros(6), np.ones(6)], axis=1) + 1e-9 * rng.random((6, 2))
    low, high = stratified_bootstrap_ci(scores)
    # resampling runs within each task keeps half the scores at 0 and half at 1: the IQM stays 0.5
    assert low == pytest.approx(0.5, abs=1e-6) and high == pytest.approx(0.5, abs=1e-6)
    noisy = rng.normal(size=(10, 3))
    low, high = stratified_bootstrap_ci(noisy)
    assert low < iqm(noisy) < high
