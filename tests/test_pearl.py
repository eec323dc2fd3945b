"""PEARL: the context encoder, the update's gradient routing, the task buffers, and the runner."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reproductions.pearl import meta
from reproductions.pearl.pearl import PEARL, ContextEncoder, PEARLConfig, kl_to_unit_gaussian

SMALL = PEARLConfig(hidden=(16, 16), encoder_hidden=(16, 16))


def _batch(tasks=3, size=5, obs=4, act=2):
    return {"observations": torch.randn(tasks, size, obs), "actions": torch.rand(tasks, size, act) * 2 - 1,
            "rewards": torch.randn(tasks, size), "next_observations": torch.randn(tasks, size, obs),
            "terminals": torch.zeros(tasks, size)}


def test_the_posterior_does_not_depend_on_the_order_of_the_context():
    """papers.md §9 check 4, exact: a product of factors is the same product in any order (up to the
    float rounding of a sum, which a permutation may change in the last bit)."""
    torch.manual_seed(0)
    encoder = ContextEncoder(7, 5, (32, 32), information_bottleneck=True)
    context = torch.randn(4, 50, 7)
    shuffled = context[:, torch.randperm(50)]
    for a, b in zip(encoder.posterior(context), encoder.posterior(shuffled)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    deterministic = ContextEncoder(7, 5, (32, 32), information_bottleneck=False)
    torch.testing.assert_close(deterministic.posterior(context)[0], deterministic.posterior(shuffled)[0])


def test_the_product_of_gaussians_by_hand():
    """One factor is itself; n identical factors give (mu, sigma²/n); masked factors do not count."""
    torch.manual_seed(1)
    encoder = ContextEncoder(3, 2, (8,), information_bottleneck=True)
    row = torch.randn(1, 1, 3)
    out = encoder.net(row)
    mu, var = out[..., :2].reshape(1, 2), torch.nn.functional.softplus(out[..., 2:]).reshape(1, 2)
    mean1, var1 = encoder.posterior(row)
    torch.testing.assert_close(mean1, mu)
    torch.testing.assert_close(var1, var)
    mean4, var4 = encoder.posterior(row.expand(1, 4, 3))
    torch.testing.assert_close(mean4, mu)
    torch.testing.assert_close(var4, var / 4)
    padded = torch.cat([row, torch.randn(1, 3, 3)], 1)
    mean_m, var_m = encoder.posterior(padded, torch.tensor([[True, False, False, False]]))
    torch.testing.assert_close(mean_m, mu)
    torch.testing.assert_close(var_m, var)


def test_the_kl_matches_torch_distributions():
    mean, var = torch.randn(6, 5), torch.rand(6, 5) + 0.1
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mean, var.sqrt()),
                                                 torch.distributions.Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_to_unit_gaussian(mean, var), expected)


def test_the_encoder_learns_through_the_critic_and_kl_only():
    """sac.py: z enters the critics with its gradient; the value and policy losses see it detached. So
    with the critic loss and KL switched off (reward scale and kl_lambda 0, targets constant) the encoder
    does not move, while the actor does."""
    torch.manual_seed(2)
    agent = PEARL(4, 2, PEARLConfig(hidden=(16, 16), encoder_hidden=(16, 16), kl_lambda=0.0, reward_scale=0.0,
                                    gamma=0.0))
    for p in agent.critic.parameters():  # a critic that outputs 0 everywhere: zero critic loss gradient
        torch.nn.init.zeros_(p)
    encoder_before = [p.clone() for p in agent.encoder.parameters()]
    actor_before = [p.clone() for p in agent.actor.parameters()]
    batch = _batch()
    agent.update(batch, agent.context_rows(batch["observations"], batch["actions"], batch["rewards"],
                                           batch["next_observations"]))
    assert all(torch.equal(a, b) for a, b in zip(encoder_before, agent.encoder.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters()))
    # and with the KL on, the encoder moves
    agent.cfg = PEARLConfig(hidden=(16, 16), encoder_hidden=(16, 16), kl_lambda=1.0, reward_scale=0.0, gamma=0.0)
    agent.update(batch, agent.context_rows(batch["observations"], batch["actions"], batch["rewards"],
                                           batch["next_observations"]))
    assert not all(torch.equal(a, b) for a, b in zip(encoder_before, agent.encoder.parameters()))


def test_a_deterministic_z_has_no_kl_and_no_noise():
    torch.manual_seed(3)
    agent = PEARL(4, 2, PEARLConfig(hidden=(16, 16), encoder_hidden=(16, 16), information_bottleneck=False))
    batch = _batch()
    context = agent.context_rows(batch["observations"], batch["actions"], batch["rewards"], batch["next_observations"])
    stats = agent.update(batch, context)
    assert float(stats["kl"]) == 0.0
    mean, var = agent.encoder.posterior(context)
    assert torch.equal(agent.sample_z(mean, var), mean)


def test_next_observations_enter_the_context_only_when_asked():
    agent = PEARL(4, 2, SMALL)
    with_next = PEARL(4, 2, PEARLConfig(hidden=(16, 16), encoder_hidden=(16, 16), use_next_obs=True))
    b = _batch()
    assert agent.context_rows(b["observations"], b["actions"], b["rewards"], b["next_observations"]).shape[-1] == 7
    assert with_next.context_rows(b["observations"], b["actions"], b["rewards"],
                                  b["next_observations"]).shape[-1] == 11


def test_task_replay_keeps_tasks_apart_and_clears_one_task():
    buffer = meta.TaskReplay(tasks=3, capacity=4, obs_dim=1, act_dim=1, device="cpu")
    steps = 3
    paths = {k: np.zeros((2, steps) + ((1,) if k in ("observations", "actions", "next_observations") else ()))
             for k in meta.FIELDS}
    paths["observations"][0, :, 0] = [1, 2, 3]
    paths["observations"][1, :, 0] = [10, 20, 30]
    paths["valid"] = np.array([[True, True, True], [True, True, False]])
    buffer.add(np.array([0, 2]), paths)
    assert buffer.size.tolist() == [3, 0, 2]
    buffer.add(np.array([0, 2]), paths)  # task 0 wraps its ring of 4
    assert buffer.size.tolist() == [4, 0, 4]
    g = torch.Generator().manual_seed(0)
    batch = buffer.sample(np.array([0, 2]), 50, g)
    assert set(batch["observations"][0, :, 0].tolist()) <= {1.0, 2.0, 3.0}
    assert set(batch["observations"][1, :, 0].tolist()) == {10.0, 20.0}
    buffer.clear(np.array([2]))
    assert buffer.size.tolist() == [4, 0, 0]
    with pytest.raises(RuntimeError, match="task 2 has no data"):
        buffer.sample(np.array([0, 2]), 5, g)


def test_task_replay_grows_its_slots_up_to_the_capacity_only():
    buffer = meta.TaskReplay(tasks=2, capacity=10, obs_dim=1, act_dim=1, device="cpu", slots=2)
    paths = {k: np.ones((1, 3) + ((1,) if k in ("observations", "actions", "next_observations") else ()))
             for k in meta.FIELDS}
    paths["valid"] = np.ones((1, 3), bool)
    buffer.add(np.array([1]), paths)
    assert buffer.data["rewards"].shape == (2, 4) and buffer.size.tolist() == [0, 3]
    for _ in range(3):
        buffer.add(np.array([1]), paths)
    assert buffer.data["rewards"].shape == (2, 10) and buffer.size.tolist() == [0, 10]
