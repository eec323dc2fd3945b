"""PEARL (Rakelly et al. 2019, "Efficient Off-Policy Meta-Reinforcement Learning via Probabilistic
Context Variables"): a context encoder infers a task variable z from transitions, and a soft
actor-critic conditioned on z acts and learns from off-policy data.

The order of one gradient step follows the official code (katerakelly/oyster, rlkit/torch/sac/sac.py
`_take_step`), which is SAC's first version (Haarnoja et al. 2018a: a state-value network V and its
Polyak target, two Q-functions without targets, the entropy weight fixed at 1 so that `reward_scale`
sets the temperature):

  1. z ~ q(z|c) per task of the meta-batch, from its context c (§4.1, eq. 1: a product of Gaussian
     factors, one per transition);
  2. the KL term beta * KL(q(z|c) || N(0, I)), summed over tasks and latent dimensions (eq. 3);
  3. the critic loss on Q1, Q2(s, a, z) against r_scale * r + gamma * V_target(s', z) (eq. 4): its
     gradient, with the KL's, trains the encoder: z enters the critics *with* its gradient;
  4. V(s, z̄) against min Q(s, ã, z̄) - log pi(ã|s, z̄), with ã from the policy and z̄ = stop-gradient(z);
     then the Polyak step of V_target;
  5. the policy loss E[log pi(ã|s, z̄) - min Q(s, ã, z̄)] (eq. 5) plus 1e-3 (mean² + log_std²).

Every task of the meta-batch is one slice of one batched tensor: the encoder sees (tasks, n, ·), the
networks see (tasks * batch, ·), never a Python loop over tasks.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from common.sac import EnsembleMLP, QEnsemble, TanhGaussianActor, mlp, soft_update


@dataclass(frozen=True)
class PEARLConfig:
    latent: int = 5                                   # official latent_size
    hidden: tuple[int, ...] = (300, 300, 300)         # net_size 300, three layers (Q1, Q2, V, pi)
    encoder_hidden: tuple[int, ...] = (200, 200, 200) # launch_experiment.py
    lr: float = 3e-4                                  # policy, qf, vf and context lrs
    gamma: float = 0.99
    tau: float = 0.005                                # soft_target_tau (V_target only)
    reward_scale: float = 5.0
    kl_lambda: float = 0.1                            # beta of eq. 3
    information_bottleneck: bool = True               # False: z is the mean of the factors' means, no KL
    use_next_obs: bool = False                        # context transitions (s, a, r, s') instead of (s, a, r)
    policy_mean_reg: float = 1e-3
    policy_std_reg: float = 1e-3


class ContextEncoder(nn.Module):
    """q(z|c): each context transition maps to a Gaussian factor N(mu_n, sigma_n²), and the posterior is
    their normalized product (§4.1): sigma² = 1 / sum_n 1/sigma_n², mu = sigma² sum_n mu_n / sigma_n².
    A product does not depend on the order of its factors, so q(z|c) is permutation invariant."""

    def __init__(self, context_dim: int, latent: int, hidden: tuple[int, ...], information_bottleneck: bool):
        super().__init__()
        self.latent, self.information_bottleneck = latent, information_bottleneck
        self.net = mlp(context_dim, hidden, 2 * latent if information_bottleneck else latent)

    def posterior(self, context: torch.Tensor, mask: torch.Tensor | None = None):
        """context (tasks, n, context_dim), mask (tasks, n) of real transitions -> (mean, var), (tasks, latent).
        Without the information bottleneck: the mean of the factors' outputs, and var 0 (a deterministic z)."""
        out = self.net(context)
        weight = torch.ones(context.shape[:2], device=context.device, dtype=context.dtype) if mask is None \
            else mask.to(context.dtype)
        if not self.information_bottleneck:
            mean = (out * weight.unsqueeze(-1)).sum(1) / weight.sum(1, keepdim=True).clamp_min(1)
            return mean, torch.zeros_like(mean)
        mu, var = out[..., :self.latent], F.softplus(out[..., self.latent:]).clamp_min(1e-7)  # agent.py
        precision = weight.unsqueeze(-1) / var
        var_post = 1.0 / precision.sum(1).clamp_min(1e-7)
        return var_post * (precision * mu).sum(1), var_post


def kl_to_unit_gaussian(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, var) || N(0, I)) per row, summed over latent dimensions."""
    return 0.5 * (var + mean ** 2 - 1.0 - var.log()).sum(-1)


class PEARL(nn.Module):
    """The agent. `update(rl_batch, context)` is one gradient step on a meta-batch:
    rl_batch fields have shape (tasks, batch, ·); context is (tasks, n, context_dim)."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: PEARLConfig = PEARLConfig()):
        super().__init__()
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        context_dim = obs_dim + act_dim + 1 + (obs_dim if cfg.use_next_obs else 0)
        self.encoder = ContextEncoder(context_dim, cfg.latent, cfg.encoder_hidden, cfg.information_bottleneck)
        conditioned = obs_dim + cfg.latent
        self.actor = TanhGaussianActor(conditioned, act_dim, cfg.hidden)
        self.critic = QEnsemble(2, conditioned, act_dim, cfg.hidden)
        self.value = EnsembleMLP(1, conditioned, cfg.hidden, 1)
        self.value_target = copy.deepcopy(self.value).requires_grad_(False)
        self.optimizers = {name: torch.optim.Adam(module.parameters(), lr=cfg.lr)
                           for name, module in (("actor", self.actor), ("critic", self.critic),
                                                ("value", self.value), ("encoder", self.encoder))}

    # -- the task variable ------------------------------------------------------------------------
    def context_rows(self, obs, act, reward, next_obs) -> torch.Tensor:
        """A context transition: (s, a, r), or (s, a, r, s') with `use_next_obs`."""
        parts = [obs, act, reward.unsqueeze(-1)] + ([next_obs] if self.cfg.use_next_obs else [])
        return torch.cat(parts, dim=-1)

    def sample_z(self, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """A reparameterized draw from N(mean, var) (with var 0: the mean itself)."""
        return mean + var.sqrt() * torch.randn_like(mean)

    def prior(self, tasks: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.zeros(tasks, self.cfg.latent, device=device), torch.ones(tasks, self.cfg.latent, device=device))

    @torch.no_grad()
    def act(self, obs: torch.Tensor, z: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions for obs (tasks, obs_dim) with each task's z (tasks, latent)."""
        x = torch.cat([obs, z], dim=-1)
        return self.actor.mode(x) if deterministic else self.actor.sample(x)[0]

    # -- one gradient step (sac.py `_take_step`) -----------------------------------------------------
    def update(self, batch: dict[str, torch.Tensor], context: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        tasks, size = batch["rewards"].shape
        flat = {k: v.reshape(tasks * size, *v.shape[2:]) for k, v in batch.items()}
        mean, var = self.encoder.posterior(context)
        z = self.sample_z(mean, var).repeat_interleave(size, dim=0)  # one z per task, for all its transitions
        z_bar = z.detach()
        obs_z, next_obs_z = torch.cat([flat["observations"], z], -1), torch.cat([flat["next_observations"], z], -1)
        obs_z_bar = torch.cat([flat["observations"], z_bar], -1)

        kl = kl_to_unit_gaussian(mean, var).sum() if cfg.information_bottleneck else torch.zeros(())
        with torch.no_grad():
            target = cfg.reward_scale * flat["rewards"] + \
                (1 - flat["terminals"]) * cfg.gamma * self.value_target(next_obs_z)[0, :, 0]
        q = self.critic(obs_z, flat["actions"])
        critic_loss = ((q - target) ** 2).mean(1).sum()  # MSE(Q1) + MSE(Q2)
        for name in ("critic", "encoder"):
            self.optimizers[name].zero_grad(set_to_none=True)
        (critic_loss + cfg.kl_lambda * kl).backward()
        self.optimizers["critic"].step()
        self.optimizers["encoder"].step()

        mu, log_std = self.actor.distribution(obs_z_bar)
        new_act, _, logp = self.actor.sample_from(mu, log_std)
        self.critic.requires_grad_(False)  # the V and policy losses move only V and the policy
        q_new = self.critic(obs_z_bar, new_act).min(0).values  # the just-updated critics, as the official
        self.critic.requires_grad_(True)
        v = self.value(obs_z_bar)[0, :, 0]
        value_loss = ((v - (q_new - logp).detach()) ** 2).mean()
        self.optimizers["value"].zero_grad(set_to_none=True)
        value_loss.backward()
        self.optimizers["value"].step()
        soft_update(self.value_target, self.value, cfg.tau)

        actor_loss = (logp - q_new).mean() + cfg.policy_mean_reg * (mu ** 2).mean() + \
            cfg.policy_std_reg * (log_std ** 2).mean()
        self.optimizers["actor"].zero_grad(set_to_none=True)
        actor_loss.backward()
        self.optimizers["actor"].step()
        return {"critic_loss": critic_loss.detach(), "value_loss": value_loss.detach(),
                "actor_loss": actor_loss.detach(), "kl": kl.detach(), "q_mean": q.detach().mean(),
                "z_var": var.detach().mean(), "entropy": -logp.detach().mean()}
