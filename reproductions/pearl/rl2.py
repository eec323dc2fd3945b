"""RL² (Duan et al. 2016, "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning"), the on-policy
meta-RL baseline of PEARL's sample-efficiency comparison (Rakelly et al. 2019, §6.1: RL² from the ProMP code,
trained with PPO), here trained with PPO (Schulman et al. 2017) on whole trials.

A *trial* is `episodes_per_trial` consecutive episodes on one task. A recurrent policy reads at every step
(s_t, a_{t-1}, r_{t-1}, d_{t-1}) (RL² §2.2, Fig. 1) and keeps its hidden state across the episode boundaries
of a trial, so what it saw of the task in episode 1 steers episode 2; the state is reset to zero only between
trials. The objective is the discounted return of the whole trial (§2.2), so exploring in an early episode is
credited with the reward it earns later.

Top to bottom:
* `RL2Config`: every hyper-parameter, with its source; `check_config` says which one is out of range.
* `RL2Policy`: GRU -> Gaussian mean with a state-independent learned log std; a second GRU -> value.
* `gae`, `clipped_surrogate`: the advantage over a trial and PPO's clipped objective, as plain functions.
* `RL2`: `collect` (n tasks stepped in lockstep, one batched policy call per step), `update` (PPO epochs over
  minibatches of whole trials, each re-run through the GRUs from a zero state), `evaluate` (the Gaussian
  mean), `state_dict` / `load_state_dict` (networks, optimizer, statistics, random stream, step counters).

Choices and their sources. ProMP = jonasrothfuss/ProMP, branch `full_code` at 9e7fc51, the RL² code PEARL
ran: run_scripts/rl2_run_sweep.py (the sweep over PEARL's MuJoCo families), configs/rl2_config.json,
maml_zoo/policies/gaussian_rnn_policy.py, maml_zoo/algos/ppo.py, maml_zoo/optimizers/rl2_first_order_optimizer.py,
maml_zoo/samplers/{maml_sampler,base,rl2_sample_processor}.py, maml_zoo/envs/rl2_env.py.

  = ProMP   hidden 64 (hidden_sizes (64,): one recurrent layer, then a linear output layer, create_rnn);
            2 episodes per trial (rollouts_per_meta_task 2, one env per task, the policy's state reset once
            per sampling); 100 tasks per iteration (the sweep's meta_batch_size; rl2_config.json says 200);
            discount 0.99; GAE lambda 1.0; advantages normalized; Adam, lr 1e-3; 5 epochs of 1 minibatch
            (num_minibatches 1, which its optimizer ignores: every epoch is one full-batch step); clip 0.2
            (PPO's clip_eps default); no entropy bonus (its loss is the clipped surrogate alone); a learned
            state-independent log std, initial std 1, floor 1e-6 (GaussianRNNPolicy); the raw Gaussian
            sample is the action and its log-prob is the one optimized (no tanh), the env clips.
  ≠ ProMP   * GRU, not ProMP's LSTM (cell_type "lstm"): the RL² paper's cell (§3), and the brief's.
            * The value: ProMP fits a LinearFeatureBaseline per task by least squares every iteration; here
              a second GRU with a linear value head, no parameter shared with the policy (as ProMP's baseline
              shares none), so no value-loss coefficient is needed (with disjoint parameters and Adam it
              would only rescale the value's step; `value_lr` is the knob). Its targets are standardized by
              running (EMA) statistics of the returns ("ART" of PopArt, van Hasselt et al. 2016): an
              unscaled head would need thousands of ProMP's 5 Adam steps per iteration to reach returns
              of -100s (cheetah), whereas the least-squares baseline has no lag.
            * Advantages by GAE over the whole trial, the trial's end being the only end (RL² §2.2's
              objective); ProMP computes them per episode (base.py `_compute_samples_data`, one path per
              episode), which never credits episode 1's exploration with episode 2's reward. Normalized
              over the batch (ProMP: per task).
            * Backpropagation through whole trials from a zero state (ProMP truncates at 32 steps, carries
              the state forward and averages the chunks' gradients). Gradients clipped to a global norm
              of 0.5 per network (ProMP: none; full BPTT through 2 x 200 GRU steps can explode).
            * At an episode boundary inside a trial the policy gets the new episode's first observation with
              the previous step's action and reward and d = 1 (RL² Fig. 1); ProMP's RL2Env.reset returns
              zeros for (a, r, d), so its done input is always 0. The action fed back is the clipped one the
              env executed (ProMP feeds the raw sample).
            * An env that terminates early (a fall) is reset at once and the trial goes on with d = 1: every
              trial is exactly episodes_per_trial x horizon steps (ProMP's sampler also resets on done and
              stops at a fixed sample budget). A fallen env may thus start an extra, partial episode; the
              per-episode returns reported are those of its first `episodes_per_trial` episodes, which are
              always complete (each lasts at most `horizon` steps).
  reward    The reward RL² learns from and sees as r_{t-1} is the task's own: info["sparse_reward"] on a
            sparse family (the sparse point robot), else the env's reward. ProMP trains RL² on the task's
            reward; PEARL's sparse point robot is defined by its sparse reward (PEARL only uses the dense
            one for its critic, a path RL² does not have), so the honest comparison is on the sparse one.

Every env step is counted: `train_env_steps` (collect) and `eval_env_steps` (evaluate), separately.
Everything lives on `device`; env data crosses to it once per step (one tensor in, one array out).
Deterministic given `seed`: it seeds the networks' initialization and a private torch.Generator for action
noise and minibatch order; envs are seeded through `collect(envs, seeds)`.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from common.config import check_range
from common.papers import UsageError


@dataclass(frozen=True)
class RL2Config:
    hidden: int = 64                  # GRU size (ProMP hidden_sizes (64,))
    episodes_per_trial: int = 2       # ProMP rollouts_per_meta_task
    tasks_per_iteration: int = 100    # trials per PPO iteration, one task each (ProMP sweep meta_batch_size)
    lr: float = 1e-3                  # the policy's Adam (ProMP learning_rate)
    value_lr: float = 1e-3            # the value network's Adam (same as the policy's)
    gamma: float = 0.99               # discount over the whole trial (ProMP discount)
    gae_lambda: float = 1.0           # ProMP gae_lambda
    clip: float = 0.2                 # PPO's epsilon (ProMP clip_eps)
    epochs: int = 5                   # passes over the batch per iteration (ProMP max_epochs)
    minibatches: int = 1              # minibatches of whole trials per epoch (ProMP num_minibatches)
    entropy_coef: float = 0.0         # ProMP: no entropy term
    max_grad_norm: float = 0.5        # per network; 0 disables (ProMP: none)
    normalize_advantages: bool = True  # ProMP normalize_adv
    init_std: float = 1.0             # ProMP GaussianRNNPolicy init_std
    min_std: float = 1e-6             # ProMP min_std
    return_norm_rate: float = 0.1     # EMA rate of the value targets' mean and variance (ours)
    max_action: float = 1.0           # the env's actions are clip(sample, -max_action, max_action)


def check_config(cfg: RL2Config, prefix: str = "rl2.") -> None:
    """Raise UsageError naming the first setting out of range and its valid range."""
    for key in ("hidden", "episodes_per_trial", "tasks_per_iteration", "epochs", "minibatches"):
        value = getattr(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise UsageError(f"{prefix}{key} must be an integer, got {value!r}")
        check_range(prefix + key, value, 1)
    if cfg.minibatches > cfg.tasks_per_iteration:
        raise UsageError(f"{prefix}minibatches ({cfg.minibatches}) must be <= {prefix}tasks_per_iteration "
                         f"({cfg.tasks_per_iteration}): a minibatch holds whole trials")
    for key in ("lr", "value_lr", "clip", "init_std", "min_std", "return_norm_rate", "max_action"):
        check_range(prefix + key, getattr(cfg, key), 0)
        if getattr(cfg, key) == 0:
            raise UsageError(f"{prefix}{key} must be > 0, got 0")
    for key in ("entropy_coef", "max_grad_norm"):
        check_range(prefix + key, getattr(cfg, key), 0)
    for key in ("gamma", "gae_lambda", "return_norm_rate"):
        check_range(prefix + key, getattr(cfg, key), 0, 1)
    if cfg.min_std > cfg.init_std:
        raise UsageError(f"{prefix}min_std ({cfg.min_std}) must be <= {prefix}init_std ({cfg.init_std})")


# -- the policy ----------------------------------------------------------------------------------
class RL2Policy(nn.Module):
    """Input per step: concat(s_t, a_{t-1}, r_{t-1}, d_{t-1}) of width obs + act + 2.

    policy: GRU -> linear mean; log std a learned vector, the same for every state (ProMP's GaussianRNNPolicy):
            the hidden state carries the task belief into the mean only, and PPO's ratios do not move
            with a state-dependent spread.
    value:  its own GRU -> linear, in standardized units (`RL2` de-standardizes it).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, init_std: float = 1.0, min_std: float = 1e-6):
        super().__init__()
        self.input_dim = obs_dim + act_dim + 2
        self.policy_rnn = nn.GRU(self.input_dim, hidden, batch_first=True)
        self.mean_head = nn.Linear(hidden, act_dim)
        self.log_std_param = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        self.value_rnn = nn.GRU(self.input_dim, hidden, batch_first=True)
        self.value_head = nn.Linear(hidden, 1)
        self.min_log_std = math.log(min_std)

    def log_std(self) -> torch.Tensor:
        return self.log_std_param.clamp_min(self.min_log_std)  # ProMP: tf.maximum(log_std, log(min_std))

    def initial_state(self, n: int, device) -> torch.Tensor:
        """The zero state of a trial's start, (1, n, hidden)."""
        return torch.zeros(1, n, self.policy_rnn.hidden_size, device=device)

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One env step for all n trials at once: x (n, input), state (1, n, hidden) -> mean (n, act), state."""
        out, state = self.policy_rnn(x.unsqueeze(1), state)
        return self.mean_head(out.squeeze(1)), state

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole trials from a zero state: inputs (N, T, input) -> mean (N, T, act), standardized value (N, T)."""
        policy_out, _ = self.policy_rnn(inputs)
        value_out, _ = self.value_rnn(inputs)
        return self.mean_head(policy_out), self.value_head(value_out).squeeze(-1)

    def policy_parameters(self) -> list[nn.Parameter]:
        return [*self.policy_rnn.parameters(), *self.mean_head.parameters(), self.log_std_param]

    def value_parameters(self) -> list[nn.Parameter]:
        return [*self.value_rnn.parameters(), *self.value_head.parameters()]


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """log N(action; mean, diag(exp(log_std))^2), summed over the action's dimensions."""
    z = (action - mean) / log_std.exp()
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    return (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)


# -- the PPO pieces ------------------------------------------------------------------------------
def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalized advantage estimates over whole trials (Schulman et al. 2016, eq. 16), (N, T) -> (N, T):
    A_t = delta_t + gamma lam A_{t+1}, delta_t = r_t + gamma V_{t+1} - V_t, with V_T = A_T = 0 at the trial's
    end (its only end: episode boundaries inside a trial are ordinary steps of RL²'s MDP)."""
    advantages = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
        next_value = values[:, t]
    return advantages


def clipped_surrogate(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                      clip: float) -> torch.Tensor:
    """PPO's clipped objective per step, as a loss (Schulman et al. 2017, eq. 7):
    -min(rho A, clip(rho, 1 - eps, 1 + eps) A), rho = pi(a|h) / pi_old(a|h). No gradient flows where the
    ratio is already beyond the clip range in the direction the advantage pushes it."""
    ratio = (log_prob - old_log_prob).exp()
    return -torch.min(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)


class ReturnStatistics:
    """Exponential moving averages of the value targets' first two moments; the value head predicts
    (return - mean) / std. The first batch sets them."""

    def __init__(self, rate: float, device):
        self.rate = rate
        self.mean = torch.zeros((), device=device)
        self.second = torch.ones((), device=device)
        self.started = False

    @property
    def std(self) -> torch.Tensor:
        return (self.second - self.mean.pow(2)).clamp_min(1e-8).sqrt()

    def update(self, x: torch.Tensor) -> None:
        rate = self.rate if self.started else 1.0
        self.mean = self.mean + rate * (x.mean() - self.mean)
        self.second = self.second + rate * (x.pow(2).mean() - self.second)
        self.started = True

    def state_dict(self) -> dict:
        return {"mean": self.mean, "second": self.second, "started": self.started}

    def load_state_dict(self, state: dict) -> None:
        self.mean = state["mean"].to(self.mean.device)
        self.second = state["second"].to(self.second.device)
        self.started = bool(state["started"])


# -- RL² ----------------------------------------------------------------------------------------
class RL2:
    """The learner. `horizon` is the family's episode length; `sparse` trains on info["sparse_reward"]."""

    def __init__(self, obs_dim: int, act_dim: int, horizon: int, cfg: RL2Config = RL2Config(),
                 sparse: bool = False, device: str | torch.device = "cpu", seed: int = 0):
        check_config(cfg)
        if horizon < 1 or obs_dim < 1 or act_dim < 1:
            raise ValueError(f"need horizon, obs_dim and act_dim >= 1, got {horizon}, {obs_dim}, {act_dim}")
        self.cfg, self.obs_dim, self.act_dim, self.horizon, self.sparse = cfg, obs_dim, act_dim, horizon, sparse
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):  # the initialization comes from `seed`, the global stream is untouched
            torch.manual_seed(seed)
            self.policy = RL2Policy(obs_dim, act_dim, cfg.hidden, cfg.init_std, cfg.min_std)
        self.policy.to(self.device)
        self.optimizer = torch.optim.Adam([{"params": self.policy.policy_parameters(), "lr": cfg.lr},
                                           {"params": self.policy.value_parameters(), "lr": cfg.value_lr}], fused=True)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.returns = ReturnStatistics(cfg.return_norm_rate, self.device)
        self.train_env_steps = 0
        self.eval_env_steps = 0
        self.updates = 0

    # -- acting --------------------------------------------------------------------------------
    @torch.no_grad()
    def _trial(self, envs: list, seeds, episodes: int, deterministic: bool) -> dict:
        """One trial of `episodes` x horizon steps in every env, all stepped in lockstep with one batched
        `policy.step` per step; env i is reset with seeds[i] at the start, without a seed afterwards."""
        n, horizon, max_action = len(envs), self.horizon, self.cfg.max_action
        if n == 0:
            raise ValueError("need at least one env")
        if seeds is None or len(seeds) != n:
            raise ValueError(f"need one seed per env: got {None if seeds is None else len(seeds)} seeds for {n} envs")
        if len({id(env) for env in envs}) != n:
            raise ValueError("an env object appears twice in envs: each trial needs its own env (make one per task)")
        for env in envs:
            if env.action_space.shape != (self.act_dim,):
                raise ValueError(f"env action shape {env.action_space.shape}; this learner acts in ({self.act_dim},)")
        steps = episodes * horizon
        obs = np.stack([np.asarray(env.reset(seed=int(s))[0], dtype=np.float32) for env, s in zip(envs, seeds)])
        if obs.shape[1:] != (self.obs_dim,):
            raise ValueError(f"env observation shape {obs.shape[1:]}; this learner reads ({self.obs_dim},)")
        prev_action = np.zeros((n, self.act_dim), np.float32)
        prev_reward = np.zeros(n, np.float32)
        prev_done = np.zeros(n, np.float32)
        episode = np.zeros(n, np.int64)           # which episode of the trial each env is in
        episode_step = np.zeros(n, np.int64)      # steps taken in that episode
        record = {} if deterministic else {  # what PPO needs; an evaluation keeps only the returns
            "inputs": torch.empty(n, steps, self.policy.input_dim, device=self.device),
            "actions": torch.empty(n, steps, self.act_dim, device=self.device),
            "log_probs": torch.empty(n, steps, device=self.device)}
        rewards = np.zeros((n, steps), np.float32)       # the reward learned from (sparse on a sparse family)
        env_rewards = np.zeros((n, steps), np.float32)   # the env's own reward
        episode_of_step = np.zeros((n, steps), np.int64)
        state = self.policy.initial_state(n, self.device)
        log_std = self.policy.log_std()
        std = log_std.exp()
        for t in range(steps):
            x = torch.as_tensor(np.concatenate([obs, prev_action, prev_reward[:, None], prev_done[:, None]], 1),
                                device=self.device)
            mean, state = self.policy.step(x, state)
            if deterministic:
                sample = mean
            else:
                sample = mean + std * torch.randn(mean.shape, generator=self.generator, device=self.device)
                record["inputs"][:, t] = x
                record["actions"][:, t] = sample
                record["log_probs"][:, t] = gaussian_log_prob(mean, log_std, sample)
            action = sample.clamp(-max_action, max_action).cpu().numpy()
            episode_of_step[:, t] = episode
            for i, env in enumerate(envs):
                next_obs, reward, terminated, truncated, info = env.step(action[i])
                if self.sparse:
                    if "sparse_reward" not in info:
                        raise ValueError("sparse=True but the env's info has no 'sparse_reward'; "
                                         "use sparse=False for a dense family")
                    rewards[i, t] = info["sparse_reward"]
                else:
                    rewards[i, t] = reward
                env_rewards[i, t] = reward
                episode_step[i] += 1
                done = terminated or truncated or episode_step[i] == horizon
                if done:  # a new episode of the same trial: reset the env, keep the policy's state
                    next_obs = env.reset()[0]
                    episode[i] += 1
                    episode_step[i] = 0
                obs[i] = next_obs
                prev_done[i] = float(done)
            prev_action, prev_reward = action, rewards[:, t].copy()
        counted = episode_of_step < episodes  # the first `episodes` episodes, complete; drop a partial extra one
        rows = np.nonzero(counted)[0]
        episode_returns = np.zeros((n, episodes))
        env_episode_returns = np.zeros((n, episodes))
        np.add.at(episode_returns, (rows, episode_of_step[counted]), rewards[counted])
        np.add.at(env_episode_returns, (rows, episode_of_step[counted]), env_rewards[counted])
        record.update(rewards=torch.as_tensor(rewards, device=self.device), episode=episode_of_step,
                      episode_returns=episode_returns, env_episode_returns=env_episode_returns)
        return record

    def collect(self, envs: list, seeds) -> dict:
        """One training trial per env (one task each). Returns tensors on the device: inputs (n, T, obs+act+2),
        actions (n, T, act) (the raw Gaussian samples; the env got them clipped), log_probs (n, T), rewards
        (n, T) (the learned reward); and numpy arrays: episode (n, T) (each step's episode index in its
        trial), episode_returns and env_episode_returns (n, episodes_per_trial) (learned and env reward)."""
        batch = self._trial(envs, seeds, self.cfg.episodes_per_trial, deterministic=False)
        self.train_env_steps += batch["inputs"].shape[0] * batch["inputs"].shape[1]
        return batch

    def evaluate(self, envs: list, seeds, episodes: int | None = None) -> np.ndarray:
        """The per-episode returns (n, episodes) of one trial per env, acting with the Gaussian mean; on a sparse
        family the sparse return. `episodes` defaults to episodes_per_trial. Consumes no training randomness."""
        episodes = self.cfg.episodes_per_trial if episodes is None else episodes
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        result = self._trial(envs, seeds, episodes, deterministic=True)
        self.eval_env_steps += len(envs) * episodes * self.horizon
        return result["episode_returns"]

    # -- learning ------------------------------------------------------------------------------
    def update(self, batch: dict) -> dict[str, torch.Tensor]:
        """PPO on a batch from `collect`: GAE over each trial, then `epochs` passes over `minibatches` sets of
        whole trials, each re-run through both GRUs from a zero state."""
        cfg = self.cfg
        inputs, actions, old_log_probs, rewards = (batch[k] for k in ("inputs", "actions", "log_probs", "rewards"))
        n = inputs.shape[0]
        if cfg.minibatches > n:
            raise ValueError(f"minibatches ({cfg.minibatches}) must be <= the batch's {n} trials")
        with torch.no_grad():
            _, value_std_units = self.policy(inputs)
            values = self.returns.mean + self.returns.std * value_std_units
            advantages = gae(rewards, values, cfg.gamma, cfg.gae_lambda)
            returns = advantages + values
            self.returns.update(returns)
            targets = (returns - self.returns.mean) / self.returns.std
            if cfg.normalize_advantages:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        log = defaultdict(list)
        policy_params, value_params = self.policy.policy_parameters(), self.policy.value_parameters()
        for _ in range(cfg.epochs):
            order = torch.randperm(n, generator=self.generator, device=self.device)
            for rows in order.tensor_split(cfg.minibatches):
                mean, value = self.policy(inputs[rows])
                log_std = self.policy.log_std()
                log_prob = gaussian_log_prob(mean, log_std, actions[rows])
                policy_loss = clipped_surrogate(log_prob, old_log_probs[rows], advantages[rows], cfg.clip).mean()
                entropy = gaussian_entropy(log_std)
                value_loss = 0.5 * (value - targets[rows]).pow(2).mean()
                self.optimizer.zero_grad(set_to_none=True)
                (policy_loss - cfg.entropy_coef * entropy + value_loss).backward()
                if cfg.max_grad_norm > 0:
                    nn.utils.clip_grad_norm_(policy_params, cfg.max_grad_norm)
                    nn.utils.clip_grad_norm_(value_params, cfg.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    log_ratio = log_prob - old_log_probs[rows]
                    log["policy_loss"].append(policy_loss.detach())
                    log["value_loss"].append(value_loss.detach())
                    log["entropy"].append(entropy.detach())
                    log["approx_kl"].append((log_ratio.exp() - 1 - log_ratio).mean())  # Schulman's k3 estimator
                    log["clip_fraction"].append(((log_ratio.exp() - 1).abs() > cfg.clip).float().mean())
        self.updates += 1
        stats = {k: torch.stack(v).mean() for k, v in log.items()}
        stats["std"] = self.policy.log_std().detach().exp().mean()
        stats["value_target_mean"], stats["value_target_std"] = self.returns.mean.clone(), self.returns.std.clone()
        return stats

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "returns": self.returns.state_dict(), "generator": self.generator.get_state(),
                "train_env_steps": self.train_env_steps, "eval_env_steps": self.eval_env_steps,
                "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.returns.load_state_dict(state["returns"])
        self.generator.set_state(state["generator"])
        self.train_env_steps, self.eval_env_steps = int(state["train_env_steps"]), int(state["eval_env_steps"])
        self.updates = int(state["updates"])
