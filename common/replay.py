"""Uniform experience replay for frame-stacking environments that stores every frame once, as uint8.

A vector of `num_envs` environments writes one stream each. Slot `t` of a stream holds the newest
frame of the observation at time t and what happened next: the action taken from it, the (clipped)
reward, whether the episode terminated, and whether that transition is real. A stacked state is
rebuilt at sampling time from the `stack` frames ending at t, and the next state from the frames
ending at t + 1, so a transition costs one frame instead of the eight that storing (obs, next_obs)
stacks would.

Episode boundaries follow the environments' own convention (ale-py's AtariVectorEnv, autoreset on
the next step): after a terminal or truncated step, the next `step` call resets that environment
and returns the first frame of a new episode with the older stack entries zeroed. So

  * the step taken *from* a final frame is the reset, not a transition, and is never sampled;
  * the first frame of an episode is flagged, and frames older than it are zeroed in a rebuilt
    stack, exactly as the environment zeroes them.

With a capacity of C transitions each stream keeps its C // num_envs newest transitions (at least
one): a "memory of one transition" keeps the newest transition of each environment.

The memory lives in host memory as numpy arrays whatever device the learner uses: 7 GB of uint8
frames at the paper's 1M transitions, which a GPU need not hold, and the emulator writes it from the
host anyway. A sampled minibatch goes to the learner's device (`sample(batch_size, device)`) in one
copy of its uint8 frames (the state and next-state stacks are views of the same stack + 1 frames,
split on the device); on CUDA from pinned memory, asynchronously (`non_blocking`), so the copy
overlaps the host's work until the network needs the batch.
"""
from __future__ import annotations

import numpy as np
import torch


class FrameReplay:
    def __init__(self, capacity: int, num_envs: int, frame_shape: tuple[int, int] = (84, 84), stack: int = 4,
                 seed: int = 0):
        if capacity < 1 or num_envs < 1 or stack < 1:
            raise ValueError(f"capacity, num_envs and stack must be positive, got {capacity}, {num_envs}, {stack}")
        self.num_envs, self.stack = num_envs, stack
        self.per_env = max(1, capacity // num_envs)  # transitions each stream can be sampled from
        self.slots = self.per_env + stack  # frames kept: the transitions' states and one next frame
        n, slots = num_envs, self.slots
        self.frames = np.zeros((n, slots, *frame_shape), dtype=np.uint8)
        self.actions = np.zeros((n, slots), dtype=np.int64)
        self.rewards = np.zeros((n, slots), dtype=np.float32)
        self.terminal = np.zeros((n, slots), dtype=np.bool_)
        self.first = np.zeros((n, slots), dtype=np.bool_)  # the frame starts an episode
        self.valid = np.zeros((n, slots), dtype=np.bool_)  # the slot's transition was taken and recorded
        self.ended = np.zeros(n, dtype=np.bool_)  # the newest frame ends an episode (the next step resets)
        self.t = -1  # time of the newest frame, the same for every stream
        self.count = 0  # valid transitions in memory
        self.rng = np.random.default_rng(seed)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.frames, self.actions, self.rewards, self.terminal, self.first, self.valid))

    def __len__(self) -> int:
        """Transitions that can be sampled now."""
        return self.count

    def start(self, frames: np.ndarray) -> None:
        """Every environment begins a new episode with `frames` (num_envs, H, W): at the first reset,
        and after a resume, when the environments were reset mid-episode."""
        if self.t >= 0:  # the episodes in progress end here; their last frame starts no transition
            self.ended[:] = True
        self._write_next(frames, first=np.ones(self.num_envs, dtype=np.bool_))
        self.ended[:] = False

    def add(self, actions, rewards, terminated, truncated, next_frames: np.ndarray) -> None:
        """Record one vector step: what was done from the newest frames, and the frames it led to."""
        if self.t < 0:
            raise RuntimeError("call start() with the first frames before add()")
        p = self.t % self.slots
        self.actions[:, p] = actions
        self.rewards[:, p] = rewards
        self.terminal[:, p] = terminated
        self.valid[:, p] = ~self.ended  # from a final frame the step was the environment's reset
        self.count += int((~self.ended).sum())
        first = self.ended.copy()
        self.ended = np.asarray(terminated, dtype=np.bool_) | np.asarray(truncated, dtype=np.bool_)
        self._write_next(next_frames, first)

    def _write_next(self, frames: np.ndarray, first: np.ndarray) -> None:
        self.t += 1
        gone = self.t - self.per_env - 1  # its stack's oldest frame is overwritten next: no longer sampled
        if gone >= 0:
            self.count -= int(self.valid[:, gone % self.slots].sum())
            self.valid[:, gone % self.slots] = False
        q = self.t % self.slots
        self.frames[:, q] = frames
        self.first[:, q] = first

    def _candidates(self) -> tuple[int, int]:
        """Times [lo, hi) whose transition and whole stack are still in memory."""
        return max(0, self.t - self.per_env), self.t

    def sample(self, batch_size: int, device: torch.device | str | None = None):
        """A uniform minibatch as torch tensors on `device` (None: host memory): states and next states
        (B, stack, H, W) uint8, actions, rewards, terminal flags (float). With at most `batch_size`
        transitions in memory, all of them. The draws are the same whatever the device."""
        lo, hi = self._candidates()
        if self.count == 0:
            raise RuntimeError("the replay memory holds no transition yet")
        if self.count <= batch_size:  # a small memory: all of it
            env, k = np.nonzero(self.valid[:, np.arange(lo, hi) % self.slots])
            return self.gather(env, lo + k, device)
        # uniform over valid (env, time) pairs with replacement: draw, and redraw the few invalid ones
        env = self.rng.integers(0, self.num_envs, size=batch_size)
        time = self.rng.integers(lo, hi, size=batch_size)
        bad = ~self.valid[env, time % self.slots]
        while bad.any():
            env[bad] = self.rng.integers(0, self.num_envs, size=int(bad.sum()))
            time[bad] = self.rng.integers(lo, hi, size=int(bad.sum()))
            bad = ~self.valid[env, time % self.slots]
        return self.gather(env, time, device)

    def gather(self, env: np.ndarray, time: np.ndarray, device: torch.device | str | None = None):
        """The transitions from `time` in streams `env`, stacks rebuilt, on `device` (None: host
        memory); also used by the tests."""
        window = time[:, None] + np.arange(-self.stack + 1, 2)  # the state's frames and the next frame
        slot = window % self.slots
        frames = self.frames[env[:, None], slot]  # (B, stack + 1, H, W), one gather
        first = self.first[env[:, None], slot] & (window >= 0)
        # a frame is kept unless an episode starts after it within the window (it belongs to the last episode)
        later_first = np.flip(np.cumsum(np.flip(first[:, 1:], 1), 1), 1) > 0
        keep = np.concatenate([~later_first, np.ones((len(env), 1), dtype=np.bool_)], 1) & (window >= 0)
        frames *= keep[:, :, None, None]
        p = time % self.slots
        frames, actions, rewards, terminal = to_device(
            (torch.from_numpy(frames), torch.from_numpy(self.actions[env, p]), torch.from_numpy(self.rewards[env, p]),
             torch.from_numpy(self.terminal[env, p].astype(np.float32))), device)
        return frames[:, :-1], frames[:, 1:], actions, rewards, terminal

    # -- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        arrays = {k: torch.from_numpy(getattr(self, k).copy())
                  for k in ("frames", "actions", "rewards", "terminal", "first", "valid", "ended")}
        return {**arrays, "t": self.t, "count": self.count, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        for k in ("frames", "actions", "rewards", "terminal", "first", "valid", "ended"):
            target = getattr(self, k)
            if tuple(state[k].shape) != target.shape:
                raise ValueError(f"replay checkpoint {k} has shape {tuple(state[k].shape)}, expected {target.shape}")
            target[...] = state[k].cpu().numpy()  # a checkpoint may have been loaded onto the learner's device
        self.t, self.count = int(state["t"]), int(state["count"])
        self.rng.bit_generator.state = state["rng"]


def to_device(tensors: tuple[torch.Tensor, ...], device: torch.device | str | None) -> tuple[torch.Tensor, ...]:
    """Host tensors moved to `device` (None: left where they are). On CUDA through pinned memory with
    non-blocking copies (the pinned buffers come from torch's caching host allocator, which keeps each
    one until its copy has finished); elsewhere a plain `.to`, which on the CPU returns them as they are."""
    if device is None:
        return tuple(tensors)
    device = torch.device(device)
    if device.type == "cuda":
        return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)
    return tuple(t.to(device) for t in tensors)


TRANSITION_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals")


class TransitionReplay:
    """A ring of flat transitions (s, a, r, s', terminal) held as tensors on the learner's device, for
    continuous control: a minibatch is one random index tensor and one gather per field, with no copy
    between host and device. An offline dataset is the same object filled once (`from_arrays`)."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device | str = "cpu"):
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity, self.device = capacity, torch.device(device)
        shapes = {"observations": (obs_dim,), "actions": (act_dim,), "rewards": (),
                  "next_observations": (obs_dim,), "terminals": ()}
        self.data = {k: torch.zeros(capacity, *shape, device=self.device) for k, shape in shapes.items()}
        self.size, self.cursor = 0, 0

    @classmethod
    def from_arrays(cls, arrays: dict, device: torch.device | str = "cpu") -> "TransitionReplay":
        n, obs_dim = arrays["observations"].shape
        replay = cls(n, obs_dim, arrays["actions"].shape[1], device)
        replay.add({k: arrays[k] for k in TRANSITION_FIELDS})
        return replay

    def __len__(self) -> int:
        return self.size

    def add(self, transitions: dict) -> None:
        """Append a batch of transitions (arrays or tensors with a leading batch dimension)."""
        n = len(transitions["rewards"])
        index = (self.cursor + torch.arange(n)) % self.capacity
        for key in TRANSITION_FIELDS:
            self.data[key][index.to(self.device)] = torch.as_tensor(
                transitions[key], dtype=torch.float32).reshape(n, *self.data[key].shape[1:]).to(self.device)
        self.cursor = (self.cursor + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        index = torch.randint(self.size, (batch_size,), device=self.device, generator=generator)
        return {k: v[index] for k, v in self.data.items()}

    def arrays(self) -> dict[str, np.ndarray]:
        """The stored transitions, oldest first, as float32 numpy arrays."""
        order = (torch.arange(self.size) + (self.cursor if self.size == self.capacity else 0)) % self.capacity
        return {k: v[order.to(self.device)].cpu().numpy() for k, v in self.data.items()}

    def state_dict(self) -> dict:
        return {"data": {k: v[:self.size].cpu() for k, v in self.data.items()}, "size": self.size, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.cursor = int(state["size"]), int(state["cursor"])
        for k, v in state["data"].items():
            self.data[k][:len(v)] = v.to(self.device)
