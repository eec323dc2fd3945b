"""BEAR-QL (Kumar, Fu, Tucker & Levine 2019, "Stabilizing Off-Policy Q-Learning via Bootstrapping
Error Reduction", Algorithm 1), behaviour cloning, and the MMD and KL constraints.

One `BEAR.update(batch)` is one pass of Algorithm 1's loop, in the official code's order
(aviralkumar2907/BEAR `algos.py`, `BEAR.train`):

1. fit the behaviour model: a conditional VAE, loss = MSE(reconstruction, a) + 0.5 KL (§5);
2. the critic target: p actions per next state from the target actor, each scored by
   lambda * min_k Q'_k + (1 - lambda) * max_k Q'_k over the K target critics (the soft clipped double
   Q of BCQ, Algorithm 1 line 5), the max over the p actions, y = r + gamma (1 - terminal) that;
3. every critic regresses on y;
4. the constraint: the sampled MMD (§5, eq. for MMD^2) between n actions from the behaviour model and
   n from the actor, on the actions before tanh (the code's comment: gradients do not die in the
   squashing), returned as sqrt(MMD^2 + 1e-6) per state; or, for the paper's KL comparison, the
   negative log-likelihood of the behaviour model's samples under the actor;
5. the actor: maximize min_k of Q_k averaged over its n samples, minus alpha times the constraint
   (eq. 1 in Lagrangian form); during the warm start only alpha times the constraint;
6. alpha = exp(log alpha) by dual gradient descent on alpha (constraint - epsilon), log alpha clamped
   to [-5, `log_alpha_max`] ("auto" mode); or a fixed alpha ("hardcoded" mode);
7. soft target updates of the critics and the actor.

Every step is batched: the p target actions and the n constraint samples are one forward pass each,
and the K critics one batched matrix product (`common.sac.QEnsemble`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from common.sac import QEnsemble, TanhGaussianActor, mlp, soft_update


# -- the constraint ------------------------------------------------------------------------------
def mmd(x: torch.Tensor, y: torch.Tensor, kernel: str, sigma: float) -> torch.Tensor:
    """sqrt(MMD^2 + 1e-6) between sample sets x (B, n, d) and y (B, m, d), one value per row (B,).

    MMD^2 = mean k(x, x') - 2 mean k(x, y) + mean k(y, y') (§5), the biased estimate over all pairs,
    with the official kernels: laplacian k = exp(-|x - y|_1 / (2 sigma)), gaussian
    k = exp(-|x - y|_2^2 / (2 sigma)) (sigma, not sigma^2, as in `algos.py`).
    """
    if kernel == "laplacian":
        def k(a, b):
            return torch.exp(-torch.cdist(a, b, p=1) / (2 * sigma)).mean(dim=(1, 2))
    elif kernel == "gaussian":
        def k(a, b):
            return torch.exp(-(a.unsqueeze(2) - b.unsqueeze(1)).pow(2).sum(-1) / (2 * sigma)).mean(dim=(1, 2))
    else:
        raise ValueError(f"unknown kernel {kernel!r}; valid: laplacian, gaussian")
    return (k(x, x) + k(y, y) - 2 * k(x, y) + 1e-6).sqrt()


# -- the behaviour model -------------------------------------------------------------------------
class BehaviourVAE(nn.Module):
    """A conditional VAE of the data's actions given the state (BCQ's, reused by BEAR): latent 2|A|,
    log sigma clamped to [-4, 15], decoder output max_action * tanh (official `algos.VAE`)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], max_action: float = 1.0):
        super().__init__()
        self.latent = 2 * act_dim
        self.encoder = mlp(obs_dim + act_dim, hidden, 2 * self.latent)
        self.decoder = mlp(obs_dim + self.latent, hidden, act_dim)
        self.max_action = max_action

    def loss(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        mean, log_std = self.encoder(torch.cat([obs, act], -1)).chunk(2, -1)
        log_std = log_std.clamp(-4, 15)
        z = mean + log_std.exp() * torch.randn_like(mean)
        recon = self.max_action * torch.tanh(self.decoder(torch.cat([obs, z], -1)))
        kl = -0.5 * (1 + 2 * log_std - mean.pow(2) - (2 * log_std).exp()).mean()  # averaged, as the code
        return F.mse_loss(recon, act) + 0.5 * kl

    def decode(self, obs: torch.Tensor, samples: int | None = None, z_clip: float = 0.5):
        """(actions, pre-tanh actions) for z ~ N(0, I) clipped to [-z_clip, z_clip]; with `samples`,
        n per state, shapes (B, n, act)."""
        if samples is not None:
            obs = obs.unsqueeze(-2).expand(*obs.shape[:-1], samples, obs.shape[-1])
        z = torch.randn(*obs.shape[:-1], self.latent, device=obs.device).clamp(-z_clip, z_clip)
        raw = self.decoder(torch.cat([obs, z], -1))
        return self.max_action * torch.tanh(raw), raw


# -- BEAR ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BEARConfig:
    hidden: tuple[int, ...] = (400, 300)      # actor and each critic (official `RegularActor`, `EnsembleCritic`)
    vae_hidden: tuple[int, ...] = (750, 750)  # official `VAE`
    critics: int = 2                          # K (official main.py: `algos.BEAR(2, ...)`)
    lr: float = 1e-3                          # every optimizer: torch.optim.Adam's default, as the code
    alpha_lr: float = 1e-3
    gamma: float = 0.99
    tau: float = 0.005
    target_mix: float = 0.75                  # lambda of the soft clipped double Q target
    target_samples: int = 10                  # p
    constraint: str = "mmd"                   # or "kl" (the paper's comparison)
    kernel: str = "laplacian"
    sigma: float = 20.0
    constraint_samples: int = 10              # n, `num_samples_match`
    epsilon: float = 0.05                     # the threshold (hard-coded in the code; -2.0 for KL)
    mode: str = "auto"                        # dual gradient descent on alpha, or "hardcoded"
    fixed_alpha: float = 100.0                # the hardcoded mode's weight
    log_alpha_init: float = 0.0
    log_alpha_max: float = 10.0               # the code's `lagrange_thresh`
    warmup_steps: int = 20_000                # actor trained on the constraint alone before this
    eval_samples: int = 10                    # actions scored by Q_1 when acting


class BEAR(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, cfg: BEARConfig, max_action: float = 1.0):
        super().__init__()
        self.cfg = cfg
        self.actor = TanhGaussianActor(obs_dim, act_dim, cfg.hidden, max_action, log_std_bounds=None)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = QEnsemble(cfg.critics, obs_dim, act_dim, cfg.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.vae = BehaviourVAE(obs_dim, act_dim, cfg.vae_hidden, max_action)
        self.log_alpha = nn.Parameter(torch.tensor(float(cfg.log_alpha_init)))
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr, fused=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, fused=True)
        self.vae_opt = torch.optim.Adam(self.vae.parameters(), lr=cfg.lr, fused=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr, fused=True)
        self.steps = 0

    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach() if self.cfg.mode == "auto" else torch.tensor(self.cfg.fixed_alpha)

    def constraint(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-state constraint value (B,), the actor's n actions (B, n, act)) for step 4."""
        cfg = self.cfg
        with torch.no_grad():
            _, data_raw = self.vae.decode(obs, cfg.constraint_samples)
        actor_act, actor_raw, _ = self.actor.sample(obs, cfg.constraint_samples, noise_clip=0.5)
        if cfg.constraint == "kl":  # E_beta[-log pi(a|s)] = KL(beta || pi) + const (official `kl_loss`)
            value = -self.actor.log_prob(obs, data_raw).mean(-1)
        else:
            value = mmd(data_raw, actor_raw, cfg.kernel, cfg.sigma)
        return value, actor_act

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs, act, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
        vae_loss = self.vae.loss(obs, act)  # 1.
        self.vae_opt.zero_grad(set_to_none=True)
        vae_loss.backward()
        self.vae_opt.step()

        with torch.no_grad():  # 2.
            next_act = self.actor_target.sample(next_obs, cfg.target_samples)[0]  # (B, p, act)
            next_q = self.critic_target(next_obs.unsqueeze(1).expand(-1, cfg.target_samples, -1), next_act)
            mixed = cfg.target_mix * next_q.min(0).values + (1 - cfg.target_mix) * next_q.max(0).values
            target = batch["rewards"] + cfg.gamma * (1 - batch["terminals"]) * mixed.max(-1).values
        q = self.critic(obs, act)  # 3.
        critic_loss = ((q - target) ** 2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        value, actor_act = self.constraint(obs)  # 4.
        self.critic.requires_grad_(False)
        n = cfg.constraint_samples
        q_actor = self.critic(obs.unsqueeze(1).expand(-1, n, -1), actor_act).mean(-1).min(0).values  # 5.
        self.critic.requires_grad_(True)
        alpha = self.alpha()
        warm = self.steps < cfg.warmup_steps
        actor_loss = (alpha * value).mean() if warm else (-q_actor + alpha * value).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        if cfg.mode == "auto":  # 6. gradient ascent on alpha (constraint - epsilon), i.e. descent on its negative
            alpha_loss = -(self.log_alpha.exp() * (value.detach() - cfg.epsilon)).mean()
            self.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_opt.step()
            with torch.no_grad():
                self.log_alpha.clamp_(-5.0, cfg.log_alpha_max)
        soft_update(self.critic_target, self.critic, cfg.tau)  # 7.
        soft_update(self.actor_target, self.actor, cfg.tau)
        self.steps += 1
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), "vae_loss": vae_loss.detach(),
                "q_mean": q.detach().mean(), "constraint": value.detach().mean(), "alpha": alpha}

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """The official `select_action`: `eval_samples` actions from the actor per state, the one with the
        highest Q_1."""
        actions = self.actor.sample(obs, self.cfg.eval_samples)[0]  # (B, m, act)
        q1 = self.critic(obs.unsqueeze(1).expand(-1, self.cfg.eval_samples, -1), actions)[0]  # (B, m)
        return actions[torch.arange(len(obs)), q1.argmax(-1)]


class BehaviourCloning(nn.Module):
    """The paper's BC baseline as the official code runs it (`BCQ(cloning=True)`): the conditional VAE
    fitted to the data, acting with its decoder at z ~ N(0, I) clipped to [-0.25, 0.25]
    (`decode_bc_test`)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], lr: float, max_action: float = 1.0):
        super().__init__()
        self.vae = BehaviourVAE(obs_dim, act_dim, hidden, max_action)
        self.opt = torch.optim.Adam(self.vae.parameters(), lr=lr, fused=True)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss = self.vae.loss(batch["observations"], batch["actions"])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"vae_loss": loss.detach()}

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(obs, z_clip=0.25)[0]


def q_bound(rewards: torch.Tensor, gamma: float) -> float:
    """max |r| / (1 - gamma): no discounted return, so no correct Q-value, exceeds it in size."""
    return float(rewards.abs().max()) / (1 - gamma)
