"""PEARL's data: per-task replay buffers, collection with z from the prior or the posterior, and the
meta-test protocol of posterior sampling (official rlkit/core/rl_algorithm.py).

Two buffers per training task (§4.3: the context sampler S_c is not the RL sampler):
  rl       everything collected for the task; the actor-critic batches come from here;
  encoder  what the task's latest visit collected with z from the prior or the posterior (cleared at
           each visit); the context batches come from here. The extra posterior data goes to rl only.

Tasks of one collection round step together (tasks.rollout: one batched policy call per step for all
of them); a Python loop runs over trajectories, never over tasks in a step.
"""
from __future__ import annotations

import numpy as np
import torch

from reproductions.pearl import tasks as task_families
from reproductions.pearl.pearl import PEARL

FIELDS = ("observations", "actions", "rewards", "sparse_rewards", "next_observations", "terminals")


class TaskReplay:
    """A ring buffer per task, all in one tensor per field: (tasks, slots, ·), on the learner's device.
    The slots grow (doubling) as data comes, up to `capacity`: the official capacity, 1e6 per task, is a
    bound the official runs never reach, and 130 tasks' worth of it would not fit in memory."""

    def __init__(self, tasks: int, capacity: int, obs_dim: int, act_dim: int, device, slots: int = 1024):
        self.capacity, self.device = capacity, torch.device(device)
        widths = {"observations": (obs_dim,), "actions": (act_dim,), "next_observations": (obs_dim,)}
        self.data = {k: torch.zeros(tasks, min(slots, capacity), *widths.get(k, ()), device=self.device)
                     for k in FIELDS}
        self.size = torch.zeros(tasks, dtype=torch.long)
        self.cursor = torch.zeros(tasks, dtype=torch.long)

    def _grow(self, needed: int) -> None:
        slots = self.data["rewards"].shape[1]
        if needed <= slots or slots == self.capacity:
            return
        more = min(self.capacity, max(needed, 2 * slots)) - slots
        self.data = {k: torch.cat([v, v.new_zeros(v.shape[0], more, *v.shape[2:])], 1) for k, v in self.data.items()}

    def add(self, task_ids: np.ndarray, paths: dict) -> None:
        """Append the valid steps of `paths` (fields (n, steps, ·), `valid` (n, steps)) to tasks `task_ids`."""
        self._grow(int((self.size[task_ids] + torch.as_tensor(paths["valid"].sum(1))).max()))
        for row, task in enumerate(task_ids):
            keep = paths["valid"][row]
            n = int(keep.sum())
            index = (self.cursor[task] + torch.arange(n)) % self.capacity
            for key in FIELDS:
                self.data[key][task, index] = torch.as_tensor(paths[key][row][keep], dtype=torch.float32,
                                                              device=self.device)
            self.cursor[task] = (self.cursor[task] + n) % self.capacity
            self.size[task] = min(int(self.size[task]) + n, self.capacity)

    def clear(self, task_ids: np.ndarray) -> None:
        self.size[task_ids] = 0
        self.cursor[task_ids] = 0

    def sample(self, task_ids: np.ndarray, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """`batch` transitions per task, uniformly with replacement: fields (len(task_ids), batch, ·)."""
        ids = torch.as_tensor(task_ids, dtype=torch.long)
        sizes = self.size[ids]
        if int(sizes.min()) == 0:
            raise RuntimeError(f"task {int(ids[sizes.argmin()])} has no data to sample")
        u = torch.rand(len(ids), batch, generator=generator, device=generator.device)
        index = (u * sizes.to(u.device).unsqueeze(1)).long().to(self.device)
        rows = ids.to(self.device).unsqueeze(1)
        return {k: v[rows, index] for k, v in self.data.items()}

    def state_dict(self) -> dict:
        return {"data": self.data, "size": self.size, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.data, self.size, self.cursor = state["data"], state["size"], state["cursor"]


def context(agent: PEARL, buffer_batch: dict[str, torch.Tensor], sparse: bool) -> torch.Tensor:
    """Context rows from a buffer batch; a sparse family's context carries the sparse reward (sac.py)."""
    reward = buffer_batch["sparse_rewards" if sparse else "rewards"]
    return agent.context_rows(buffer_batch["observations"], buffer_batch["actions"], reward,
                              buffer_batch["next_observations"])


def _policy(agent: PEARL, z: torch.Tensor, deterministic: bool, device):
    def policy(obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(obs, dtype=torch.float32, device=device)
        return agent.act(x, z, deterministic).cpu().numpy()  # rollout passes every task's row, in order
    return policy


def collect(agent: PEARL, envs: list, task_ids: np.ndarray, steps: int, horizon: int, posterior: bool,
            encoder_buffer: TaskReplay, context_batch: int, sparse: bool, generator: torch.Generator,
            seeds: list[int], device):
    """`collect_data`: whole trajectories until each task has `steps` transitions. With the prior, a
    fresh z ~ N(0, I) per trajectory; with the posterior, the first trajectory also uses the prior
    (`clear_z`) and after each trajectory z ~ q(z|c), c a context batch from the task's encoder buffer as
    it is then (`update_post_train` = 1). Yields each trajectory's paths (tasks, horizon, ·): the caller
    adds them to the buffers before the next context is drawn."""
    mean, var = agent.prior(len(envs), device)
    for k in range(-(-steps // horizon)):
        z = agent.sample_z(mean, var)
        path = task_families.rollout(envs, _policy(agent, z, False, device), horizon, [s + k for s in seeds])
        yield path
        if posterior:
            with torch.no_grad():
                mean, var = agent.encoder.posterior(
                    context(agent, encoder_buffer.sample(task_ids, context_batch, generator), sparse))


@torch.no_grad()
def meta_test(agent: PEARL, envs: list, trajectories: int, exploration: int, horizon: int, sparse: bool,
              seeds: list[int], device) -> dict[str, np.ndarray]:
    """Posterior sampling (§4.2; `collect_paths`), on every task of `envs` at once. The context is the
    task's own transitions of this test, online. Trajectories 1..`exploration` each use a fresh z from
    the prior; from then on z ~ q(z | all transitions so far), re-inferred after every trajectory.
    Actions are the deterministic tanh(mean): the exploration is in z alone. Returns per trajectory and
    task (trajectories, tasks): `returns` (the sparse return on a sparse family, as reported) and
    `success` (a step within the goal radius)."""
    mean, var = agent.prior(len(envs), device)
    rows, masks, returns, success = [], [], [], []
    for k in range(trajectories):
        z = agent.sample_z(mean, var)
        path = task_families.rollout(envs, _policy(agent, z, True, device), horizon, [s + k for s in seeds])
        returns.append(path["sparse_returns"] if sparse else path["returns"])
        success.append(path["success"])
        reward = torch.as_tensor(path["sparse_rewards" if sparse else "rewards"], dtype=torch.float32, device=device)
        rows.append(agent.context_rows(*(torch.as_tensor(path[key], dtype=torch.float32, device=device)
                                         for key in ("observations", "actions")), reward,
                                       torch.as_tensor(path["next_observations"], dtype=torch.float32, device=device)))
        masks.append(torch.as_tensor(path["valid"], device=device))
        if k + 1 >= exploration:
            mean, var = agent.encoder.posterior(torch.cat(rows, 1), torch.cat(masks, 1))
    return {"returns": np.stack(returns), "success": np.stack(success).astype(float)}
