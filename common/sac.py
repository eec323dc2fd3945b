"""Soft actor-critic for continuous control (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and
Applications", Algorithm 1), and the network pieces the offline- and meta-RL papers build on.

* `EnsembleMLP`: K independent MLPs evaluated as one batched matrix product per layer (`baddbmm`),
  so an ensemble of critics costs one forward pass, never a Python loop over members.
* `QEnsemble`: K critics Q_k(s, a) -> (K, B).
* `TanhGaussianActor`: a = max_action * tanh(u), u ~ N(mu(s), sigma(s)), reparameterized, with the
  change-of-variables correction of the SAC paper's appendix C for log pi(a|s).
* `SAC`: twin critics with the clipped double-Q target (min over the two target critics), the
  entropy-regularized actor loss, and the temperature tuned to a target entropy of -|A| (§5, eq. 18).

Everything runs on the device of the batch it is given; the caller puts the agent on `ctx.device`.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class EnsembleLinear(nn.Module):
    """K linear maps applied to K batches at once: (K, B, fan_in) -> (K, B, fan_out)."""

    def __init__(self, members: int, fan_in: int, fan_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, fan_in, fan_out))
        self.bias = nn.Parameter(torch.empty(members, 1, fan_out))
        bound = 1 / math.sqrt(fan_in)  # nn.Linear's default initialization, member by member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """K MLPs with ReLU hidden layers. Input (B, fan_in) is shared by all members; (K, B, fan_in)
    gives each member its own batch. Output (K, B, fan_out)."""

    def __init__(self, members: int, fan_in: int, hidden: tuple[int, ...], fan_out: int):
        super().__init__()
        sizes = (fan_in, *hidden, fan_out)
        self.members = members
        self.layers = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, *x.shape)
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class QEnsemble(nn.Module):
    """K critics: (s, a) of shape (..., obs), (..., act) -> Q of shape (K, ...)."""

    def __init__(self, members: int, obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = EnsembleMLP(members, obs_dim + act_dim, hidden, 1)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-1]
        x = torch.cat([obs, act], dim=-1).reshape(-1, obs.shape[-1] + act.shape[-1])
        return self.net(x).reshape(self.net.members, *lead)


def mlp(fan_in: int, hidden: tuple[int, ...], fan_out: int) -> nn.Sequential:
    sizes = (fan_in, *hidden)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], fan_out))


class TanhGaussianActor(nn.Module):
    """pi(a|s): u ~ N(mu(s), exp(log_sigma(s))), a = max_action * tanh(u).

    `log_std_bounds` clamps log sigma (SAC's (-20, 2)); None leaves it free, as BEAR's official actor does.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], max_action: float = 1.0,
                 log_std_bounds: tuple[float, float] | None = (-20.0, 2.0)):
        super().__init__()
        self.trunk = mlp(obs_dim, hidden[:-1], hidden[-1])
        self.heads = nn.Linear(hidden[-1], 2 * act_dim)  # mean and log sigma
        self.max_action, self.log_std_bounds = max_action, log_std_bounds

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.heads(F.relu(self.trunk(obs))).chunk(2, dim=-1)
        if self.log_std_bounds is not None:
            log_std = log_std.clamp(*self.log_std_bounds)
        return mean, log_std

    def sample(self, obs: torch.Tensor, samples: int | None = None, noise_clip: float | None = None):
        """(action, pre-tanh u, log pi(a|s)). With `samples`, n draws per state: shapes (B, n, ·).
        `noise_clip` clips the standard normal noise to [-c, c] (BEAR's trick for its MMD samples)."""
        return self.sample_from(*self.distribution(obs), samples, noise_clip)

    def sample_from(self, mean: torch.Tensor, log_std: torch.Tensor, samples: int | None = None,
                    noise_clip: float | None = None):
        """`sample` from a distribution already computed, for losses that also use its parameters."""
        if samples is not None:
            mean, log_std = mean.unsqueeze(-2), log_std.unsqueeze(-2)
            noise = torch.randn(*mean.shape[:-2], samples, mean.shape[-1], device=mean.device, dtype=mean.dtype)
        else:
            noise = torch.randn_like(mean)
        if noise_clip is not None:
            noise = noise.clamp(-noise_clip, noise_clip)
        pre_tanh = mean + log_std.exp() * noise
        return self.max_action * torch.tanh(pre_tanh), pre_tanh, self._log_prob(mean, log_std, pre_tanh)

    def log_prob(self, obs: torch.Tensor, pre_tanh: torch.Tensor) -> torch.Tensor:
        """log pi of given pre-tanh actions; `pre_tanh` (B, ·) or (B, n, ·)."""
        mean, log_std = self.distribution(obs)
        if pre_tanh.dim() == mean.dim() + 1:
            mean, log_std = mean.unsqueeze(-2), log_std.unsqueeze(-2)
        return self._log_prob(mean, log_std, pre_tanh)

    def _log_prob(self, mean, log_std, pre_tanh):
        gauss = (-0.5 * ((pre_tanh - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # SAC appendix C: log |det da/du| = sum log(max_action * (1 - tanh(u)^2)), written stably
        squash = (2 * (math.log(2) - pre_tanh - F.softplus(-2 * pre_tanh))).sum(-1)
        return gauss - squash - pre_tanh.shape[-1] * math.log(self.max_action)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action max_action * tanh(mu(s)), for evaluation."""
        return self.max_action * torch.tanh(self.distribution(obs)[0])


@dataclass(frozen=True)
class SACConfig:
    hidden: tuple[int, ...] = (256, 256)
    lr: float = 3e-4           # actor, critics and temperature (SAC paper, Table 1)
    gamma: float = 0.99
    tau: float = 0.005         # target smoothing
    init_temperature: float = 1.0
    learn_temperature: bool = True
    target_entropy: float | None = None  # None: -|A| (SAC paper, §5)


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- tau * source + (1 - tau) * target, for every parameter at once."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


class SAC(nn.Module):
    """The agent: `update(batch)` is one gradient step of Algorithm 1 on a minibatch, a dict with
    `observations`, `actions`, `rewards`, `next_observations` and `terminals` (1 where the episode
    ended in a terminal state; a time-limit truncation is not one and bootstraps)."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig = SACConfig(), max_action: float = 1.0):
        super().__init__()
        self.cfg = cfg
        self.actor = TanhGaussianActor(obs_dim, act_dim, cfg.hidden, max_action)
        self.critic = QEnsemble(2, obs_dim, act_dim, cfg.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(cfg.init_temperature)))
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr, fused=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, fused=True)
        self.temperature_opt = torch.optim.Adam([self.log_temperature], lr=cfg.lr, fused=True)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.actor.mode(obs) if deterministic else self.actor.sample(obs)[0]

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        obs, act, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
        temperature = self.log_temperature.exp().detach()
        with torch.no_grad():  # soft Bellman target with clipped double Q (eqs. 3 and 7)
            next_act, _, next_logp = self.actor.sample(next_obs)
            next_q = self.critic_target(next_obs, next_act).min(0).values - temperature * next_logp
            target = batch["rewards"] + self.cfg.gamma * (1 - batch["terminals"]) * next_q
        q = self.critic(obs, act)
        critic_loss = 0.5 * ((q - target) ** 2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        new_act, _, logp = self.actor.sample(obs)  # eq. 7: E[alpha log pi - min_k Q_k]
        self.critic.requires_grad_(False)  # the actor's loss moves only the actor
        q_new = self.critic(obs, new_act).min(0).values
        self.critic.requires_grad_(True)
        actor_loss = (temperature * logp - q_new).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        if self.cfg.learn_temperature:  # eq. 18
            temperature_loss = -(self.log_temperature * (logp.detach() + self.target_entropy)).mean()
            self.temperature_opt.zero_grad(set_to_none=True)
            temperature_loss.backward()
            self.temperature_opt.step()
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(),
                "temperature": temperature, "q_mean": q.detach().mean(), "entropy": -logp.detach().mean()}
