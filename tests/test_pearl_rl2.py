"""RL² trained with PPO (reproductions/pearl/rl2.py): the hidden state's life across a trial, the lockstep
collector, GAE and the clipped objective by hand, learning to use episode 1's reward on a bandit whose
rewarding action is revealed only by it, determinism and resumption, and one trial of the real sparse
point robot. Fake task families keep it fast: the learner is tested, not MuJoCo."""
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from reproductions.pearl.rl2 import RL2, RL2Config, check_config, clipped_surrogate, gae

torch.set_num_threads(1)


# -- fake task families ----------------------------------------------------------------------------
class DriftEnv(gym.Env):
    """obs (obs_dim,) from a seeded reset, moved by the action; r = -|a - goal|^2 (info["sparse_reward"] =
    1 within 0.5 of the goal, else 0); terminated at step `fall_at` of an episode when given (a 'fall')."""

    def __init__(self, goal, obs_dim: int = 3, act_dim: int = 2, fall_at: int | None = None):
        self.goal = np.full(act_dim, goal, np.float32)
        self.fall_at, self.t = fall_at, 0
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (act_dim,), np.float32)
        self.steps = 0  # every step() this env took

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.state = self.np_random.normal(size=self.observation_space.shape).astype(np.float32)
        return self.state.copy(), {}

    def step(self, action):
        self.t += 1
        self.steps += 1
        self.state = (0.9 * self.state + 0.1 * np.resize(action, self.state.shape)).astype(np.float32)
        distance = float(np.sum((np.asarray(action) - self.goal) ** 2))
        info = {"sparse_reward": float(distance < 0.5)}
        return self.state.copy(), -distance, self.fall_at is not None and self.t == self.fall_at, False, info


class SignBandit(gym.Env):
    """One-step episodes, a constant observation; task g in {-1, +1}, r = g (1 + a) / 2 for a in [-1, 1]. The
    rewarding action is a = g, and any first action but -1 reveals g through the sign of its reward, which
    the policy reads as r_{t-1} in episode 2. A policy blind to g earns 0 on average over balanced tasks;
    one that acts on episode 1's reward earns 0.5 in episode 2."""

    observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    horizon = 1

    def __init__(self, g: float):
        self.g = g

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), self.g * (1.0 + float(action[0])) / 2.0, False, False, {}


def small(**overrides) -> RL2Config:
    return RL2Config(**{"hidden": 16, "tasks_per_iteration": 3, "episodes_per_trial": 2, **overrides})


# -- the hidden state across a trial --------------------------------------------------------------
def test_hidden_state_carries_across_episodes_and_restarts_from_zero_each_trial():
    horizon, n = 4, 3
    agent = RL2(3, 2, horizon, small(), seed=0)
    envs = [DriftEnv(g) for g in (-0.5, 0.0, 0.5)]
    first, second = agent.collect(envs, [0, 1, 2]), agent.collect(envs, [3, 4, 5])
    x = first["inputs"]
    # the collector's log-probs are the policy's when each whole trial is run from a zero state: its state
    # went on across the episode boundary at t = horizon and started again from zero for the second trial
    for batch in (first, second):
        with torch.no_grad():
            mean, _ = agent.policy(batch["inputs"])
        logp = -0.5 * ((batch["actions"] - mean) / agent.policy.log_std().exp()).pow(2).sum(-1) \
            - agent.policy.log_std().sum() - math.log(2 * math.pi)
        torch.testing.assert_close(batch["log_probs"], logp, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # and the carried state matters: a fresh state gives another action at episode 2's start
        carried, _ = agent.policy(x)
        fresh, _ = agent.policy.step(x[:, horizon], agent.policy.initial_state(n, "cpu"))
    assert (carried[:, horizon] - fresh).abs().min() > 1e-4
    # episode 2's first input: the reset observation, the previous step's clipped action and reward, d = 1
    obs_dim, act_dim = 3, 2
    reset_obs = np.stack([DriftEnv(0).reset(seed=s)[0] for s in (0, 1, 2)])
    np.testing.assert_allclose(x[:, 0, :obs_dim].numpy(), reset_obs)
    assert x[:, 0, obs_dim:].abs().sum() == 0  # a trial starts with a = 0, r = 0, d = 0
    torch.testing.assert_close(x[:, horizon, obs_dim:obs_dim + act_dim], first["actions"][:, horizon - 1].clamp(-1, 1))
    torch.testing.assert_close(x[:, horizon, -2], first["rewards"][:, horizon - 1])
    assert x[:, horizon, -1].tolist() == [1.0] * n and x[:, 1:horizon, -1].abs().sum() == 0
    assert not np.allclose(x[:, horizon, :obs_dim].numpy(), x[:, horizon - 1, :obs_dim].numpy())  # the env was reset


def test_a_fall_resets_the_env_and_the_trial_goes_on_with_done_flag():
    horizon = 4  # 2 episodes: 8 steps; env 0 falls at the 3rd step of each episode, env 1 never
    agent = RL2(3, 2, horizon, small(tasks_per_iteration=2), seed=0)
    envs = [DriftEnv(0.0, fall_at=3), DriftEnv(0.0)]
    batch = agent.collect(envs, [0, 1])
    assert batch["inputs"].shape[1] == 8 and [env.steps for env in envs] == [8, 8]
    done_in = batch["inputs"][:, :, -1]
    assert done_in[0].nonzero().flatten().tolist() == [3, 6]  # after each fall (3 + 3 steps), then 2 more
    assert done_in[1].nonzero().flatten().tolist() == [4]
    assert batch["episode"][0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2]  # a third, partial episode
    assert batch["episode"][1].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    rewards = batch["rewards"].numpy()
    np.testing.assert_allclose(batch["episode_returns"][0], [rewards[0, :3].sum(), rewards[0, 3:6].sum()], rtol=1e-6)
    np.testing.assert_allclose(batch["episode_returns"][1], [rewards[1, :4].sum(), rewards[1, 4:].sum()], rtol=1e-6)


# -- the lockstep collector -------------------------------------------------------------------------
def test_one_batched_policy_call_per_env_step_shapes_and_step_counts():
    horizon, n, obs_dim, act_dim = 5, 4, 3, 2
    agent = RL2(obs_dim, act_dim, horizon, small(tasks_per_iteration=n), seed=0)
    envs = [DriftEnv(g) for g in np.linspace(-1, 1, n)]
    calls = []
    step = agent.policy.step
    agent.policy.step = lambda x, state: calls.append(x.shape) or step(x, state)
    batch = agent.collect(envs, list(range(n)))
    steps = 2 * horizon
    assert calls == [(n, obs_dim + act_dim + 2)] * steps  # one call per step, all n tasks in it
    assert [env.steps for env in envs] == [steps] * n
    assert batch["inputs"].shape == (n, steps, obs_dim + act_dim + 2)
    assert batch["actions"].shape == (n, steps, act_dim)
    assert batch["log_probs"].shape == batch["rewards"].shape == batch["episode"].shape == (n, steps)
    assert batch["episode_returns"].shape == batch["env_episode_returns"].shape == (n, 2)
    np.testing.assert_allclose(batch["episode_returns"].sum(1), batch["rewards"].double().sum(1).numpy(), rtol=1e-6)
    assert agent.train_env_steps == n * steps and agent.eval_env_steps == 0

    calls.clear()
    generator_state = agent.generator.get_state()
    returns = agent.evaluate(envs, list(range(n)), episodes=3)
    assert returns.shape == (n, 3) and len(calls) == 3 * horizon
    assert agent.train_env_steps == n * steps and agent.eval_env_steps == n * 3 * horizon
    assert torch.equal(agent.generator.get_state(), generator_state)  # the mean action: no training randomness used
    np.testing.assert_array_equal(agent.evaluate(envs, list(range(n)), episodes=3), returns)


# -- the PPO pieces by hand ---------------------------------------------------------------------------
def test_gae_of_a_three_step_trial_by_hand():
    rewards = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 1.0, 1.5]], dtype=torch.float64)
    gamma, lam = 0.9, 0.8
    # deltas: 3 - 1.5 = 1.5; 2 + 0.9 * 1.5 - 1 = 2.35; 1 + 0.9 * 1 - 0.5 = 1.4; then A_t = delta_t + 0.72 A_{t+1}
    a2 = 1.5
    a1 = 2.35 + 0.72 * a2
    a0 = 1.4 + 0.72 * a1
    torch.testing.assert_close(gae(rewards, values, gamma, lam), torch.tensor([[a0, a1, a2]], dtype=torch.float64))
    # lambda = 1: the discounted return minus the value; lambda = 0: the one-step TD error
    returns = torch.tensor([[1 + 0.9 * 2 + 0.81 * 3, 2 + 0.9 * 3, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(gae(rewards, values, gamma, 1.0), returns - values)
    torch.testing.assert_close(gae(rewards, values, gamma, 0.0), torch.tensor([[1.4, 2.35, 1.5]], dtype=torch.float64))


def test_clipped_objective_ratio_one_and_no_gradient_beyond_the_clip():
    old = torch.tensor([-1.0, -2.0, 0.5, 0.3])
    advantages = torch.tensor([1.0, -2.0, 0.5, -1.5])
    new = old.clone().requires_grad_(True)
    loss = clipped_surrogate(new, old, advantages, 0.2)
    torch.testing.assert_close(loss, -advantages)  # ratio 1: the loss is -A
    loss.sum().backward()
    torch.testing.assert_close(new.grad, -advantages)  # d(ratio)/d(log pi) = ratio = 1

    # ratios 1.5, 0.5, 1.5, 0.5 against advantages +, -, -, +: the first two are beyond the clip in the
    # direction the advantage pushes (no gradient), the last two are not (gradient -A * ratio)
    ratios = torch.tensor([1.5, 0.5, 1.5, 0.5])
    advantages = torch.tensor([2.0, -2.0, -2.0, 2.0])
    new = (old + ratios.log()).requires_grad_(True)
    loss = clipped_surrogate(new, old, advantages, 0.2)
    torch.testing.assert_close(loss, torch.tensor([-1.2 * 2.0, 0.8 * 2.0, 1.5 * 2.0, -0.5 * 2.0]))
    loss.sum().backward()
    torch.testing.assert_close(new.grad, torch.tensor([0.0, 0.0, 2.0 * 1.5, -2.0 * 0.5]))


# -- learning ----------------------------------------------------------------------------------------
def test_learns_to_act_in_episode_two_on_the_reward_of_episode_one():
    tasks = [-1.0, 1.0] * 16
    cfg = RL2Config(hidden=16, tasks_per_iteration=len(tasks), episodes_per_trial=2, lr=1e-2, value_lr=1e-2,
                    epochs=4, minibatches=2, gae_lambda=0.95)
    agent = RL2(1, 1, SignBandit.horizon, cfg, seed=0)
    envs = [SignBandit(g) for g in tasks]
    seeds = list(range(len(tasks)))
    before = agent.evaluate(envs, seeds).mean(0)
    for _ in range(40):  # 10 to 20 updates suffice for each of seeds 0-11
        agent.update(agent.collect(envs, seeds))
    after = agent.evaluate(envs, seeds).mean(0)
    # episode 1 cannot know the task: its mean action is the same for all, and the balanced tasks cancel
    assert abs(before[0]) < 1e-6 and abs(after[0]) < 1e-6
    assert after[1] > 0.35 > before[1] + 0.2, (before, after)  # the optimum is 0.5


# -- determinism and resumption ---------------------------------------------------------------------
def test_same_seed_same_stats_and_a_resumed_run_continues_identically(tmp_path: Path):
    def run(agent: RL2, updates: int, first_seed: int):
        stats = []
        for k in range(updates):
            envs = [DriftEnv(g) for g in (-0.5, 0.2, 0.7)]
            stats.append(agent.update(agent.collect(envs, [first_seed + 3 * k + i for i in range(3)])))
        return stats

    a, b = run(RL2(3, 2, 4, small(epochs=2, minibatches=3), seed=7), 2, 0), \
        run(RL2(3, 2, 4, small(epochs=2, minibatches=3), seed=7), 2, 0)
    for sa, sb in zip(a, b):
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    other = run(RL2(3, 2, 4, small(epochs=2, minibatches=3), seed=8), 2, 0)
    assert not torch.equal(a[1]["policy_loss"], other[1]["policy_loss"])

    first = RL2(3, 2, 4, small(epochs=2, minibatches=3), seed=7)
    run(first, 1, 0)
    torch.save(first.state_dict(), tmp_path / "rl2.pt")
    resumed = RL2(3, 2, 4, small(epochs=2, minibatches=3), seed=123)  # everything comes from the checkpoint
    resumed.load_state_dict(torch.load(tmp_path / "rl2.pt"))
    stats = run(resumed, 1, 3)[0]
    assert all(torch.equal(stats[k], a[1][k]) for k in stats)
    assert resumed.train_env_steps == 2 * 3 * 2 * 4 and resumed.updates == 2


def test_bad_settings_say_what_is_valid():
    with pytest.raises(ValueError, match=r"rl2.minibatches \(5\) must be <= rl2.tasks_per_iteration \(4\)"):
        check_config(RL2Config(tasks_per_iteration=4, minibatches=5))
    with pytest.raises(ValueError, match=r"rl2.gae_lambda must be in \[0, 1\]"):
        check_config(RL2Config(gae_lambda=1.5))
    with pytest.raises(ValueError, match=r"rl2.clip must be > 0"):
        check_config(RL2Config(clip=0.0))
    agent = RL2(3, 2, 4, small(), seed=0)
    with pytest.raises(ValueError, match="one seed per env"):
        agent.collect([DriftEnv(0.0), DriftEnv(1.0)], [0])
    with pytest.raises(ValueError, match=r"observation shape \(5,\); this learner reads \(3,\)"):
        agent.collect([DriftEnv(0.0, obs_dim=5)], [0])
    with pytest.raises(ValueError, match="no 'sparse_reward'"):
        RL2(1, 1, 1, small(), sparse=True).collect([SignBandit(1.0)], [0])


# -- the real sparse point robot ----------------------------------------------------------------------
def test_a_trial_of_the_sparse_point_robot_learns_from_its_sparse_reward():
    from reproductions.pearl import tasks

    family = tasks.FAMILIES["point_sparse"]
    train, _ = tasks.split(family)
    envs = [family.make(goal) for goal in train[:3]]
    agent = RL2(2, 2, family.horizon, small(), sparse=family.sparse, seed=0)
    batch = agent.collect(envs, [0, 1, 2])
    steps = 2 * family.horizon
    assert batch["inputs"].shape == (3, steps, 2 + 2 + 2)
    assert (batch["rewards"] >= 0).all() and (batch["env_episode_returns"] < 0).all()  # sparse learned, dense not
    start = batch["inputs"][:, family.horizon]
    assert start[:, :2].abs().sum() == 0 and start[:, -1].tolist() == [1.0] * 3  # back at the origin, d = 1
    stats = agent.update(batch)
    assert all(torch.isfinite(v).all() for v in stats.values())
    assert agent.evaluate(envs, [0, 1, 2]).shape == (3, 2)
