"""Speed of reproductions/dqn_atari against a typical single-file PyTorch DQN, side by side in one process.

The reference re-implements the loop of CleanRL's `dqn_atari.py` (its structure, not its code): one
gymnasium env in a SyncVectorEnv, preprocessed in Python by gymnasium's AtariPreprocessing and
FrameStackObservation wrappers; ε-greedy acting one step at a time, with a forward pass only when
not exploring; a replay buffer that stores the stacked obs and next_obs of every transition (as
stable-baselines3's does for CleanRL) and copies the sampled arrays into tensors; one update every
`update_every` steps. Both sides use the same settings: the 2013 network, the nips2013 loss
(no target network), RMSProp with the runner's constants, minibatch 32, ε fixed at its final 0.1
(most of a run's frames), Breakout with frame skip 4 and no sticky actions.

Segments of `--steps` agent steps alternate between the two (reference, ours, reference, ours, ...)
after both memories hold `--warmup` transitions, so that load on the machine hits both alike; the
ratio of the summed times is printed. Run from the repository root, one thread:

    python -m benchmarks.dqn_atari_speed --steps 2000 --rounds 3 --update-every 4

Needs opencv (AtariPreprocessing resizes with cv2): pip install 'repro-suite[bench]'.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from reproductions.dqn_atari import runner
from reproductions.dqn_atari.dqn import QNetwork, td_loss


class ObsReplay:
    """stable-baselines3-style: the stacked obs and next obs of every transition, as uint8."""

    def __init__(self, capacity: int, shape=(4, 84, 84)):
        self.obs = np.zeros((capacity, *shape), np.uint8)
        self.next_obs = np.zeros((capacity, *shape), np.uint8)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.dones = np.zeros(capacity, np.float32)
        self.pos, self.full, self.capacity = 0, False, capacity

    def add(self, obs, next_obs, action, reward, done):
        self.obs[self.pos], self.next_obs[self.pos] = obs, next_obs
        self.actions[self.pos], self.rewards[self.pos], self.dones[self.pos] = action, reward, done
        self.pos = (self.pos + 1) % self.capacity
        self.full = self.full or self.pos == 0

    def sample(self, batch: int):
        idx = np.random.randint(0, self.capacity if self.full else self.pos, size=batch)
        return (torch.tensor(self.obs[idx]), torch.tensor(self.next_obs[idx]), torch.tensor(self.actions[idx]),
                torch.tensor(self.rewards[idx]), torch.tensor(self.dones[idx]))


class CleanRLStyle:
    def __init__(self, cfg: dict):
        import ale_py
        import gymnasium as gym
        from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation
        gym.register_envs(ale_py)

        def make():
            env = gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.0)
            env = AtariPreprocessing(env, noop_max=0, frame_skip=cfg["frame_skip"], screen_size=84,
                                     terminal_on_life_loss=False, grayscale_obs=True)
            return FrameStackObservation(env, 4, padding_type="zero")

        self.cfg = cfg
        self.envs = gym.vector.SyncVectorEnv([make])
        self.q = QNetwork(int(self.envs.single_action_space.n))
        self.opt = torch.optim.RMSprop(self.q.parameters(), lr=cfg["lr"], alpha=cfg["rms_decay"], eps=cfg["rms_eps"])
        self.rb = ObsReplay(cfg["replay_size"])
        self.obs, _ = self.envs.reset(seed=0)
        self.step_count = 0

    def step(self):
        cfg = self.cfg
        if np.random.random() < cfg["eps_end"]:
            actions = np.array([self.envs.single_action_space.sample()])
        else:
            with torch.no_grad():
                actions = self.q(torch.tensor(self.obs)).argmax(1).numpy()
        next_obs, rewards, terminations, _, _ = self.envs.step(actions)
        self.rb.add(self.obs[0], next_obs[0], actions[0], np.sign(rewards[0]), terminations[0])
        self.obs = next_obs
        self.step_count += 1
        if self.step_count > cfg["learning_starts"] and self.step_count % cfg["update_every"] == 0:
            s, s2, a, r, d = self.rb.sample(cfg["batch_size"])
            with torch.no_grad():
                target = r + cfg["gamma"] * (1 - d) * self.q(s2).max(1).values
            q = self.q(s).gather(1, a[:, None]).squeeze(1)
            loss = td_loss("nips2013", q, target)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()


class Ours:
    def __init__(self, cfg: dict):
        self.trainer = runner.Trainer(cfg, "breakout", "dqn", seed=0, device=torch.device("cpu"))

    def step(self):
        self.trainer.step()

    @property
    def step_count(self) -> int:
        return self.trainer.frames


def timed(impl, steps: int) -> float:
    """Seconds for `steps` agent steps (a vector step counts num_envs)."""
    target = impl.step_count + steps
    clock = time.perf_counter()
    while impl.step_count < target:
        impl.step()
    return time.perf_counter() - clock


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="agent steps per timed segment")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--update-every", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="also time ours with torch.compile")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = {**runner.CONFIG, **runner.TIERS["cpu"], "replay_size": 50_000, "learning_starts": args.warmup,
           "update_every": args.update_every, "variant": "nips2013", "eps_start": runner.CONFIG["eps_end"]}
    sides = {"cleanrl_style": CleanRLStyle(cfg), "ours_bf16": Ours(cfg), "ours_fp32": Ours({**cfg, "bf16": False})}
    if args.compile:
        sides["ours_bf16_compiled"] = Ours({**cfg, "compile": True})
    for impl in sides.values():
        timed(impl, args.warmup)
    seconds = {name: 0.0 for name in sides}
    for _ in range(args.rounds):
        for name, impl in sides.items():
            seconds[name] += timed(impl, args.steps)
    total = args.steps * args.rounds
    ref = seconds["cleanrl_style"]
    print(f"update every {args.update_every} agent steps, {total} timed agent steps per side, "
          f"{args.threads} thread(s)")
    for name, s in seconds.items():
        print(f"{name:14s} {total / s:8.1f} agent frames/s {total * cfg['frame_skip'] / s:8.1f} emulator frames/s "
              f"ratio to cleanrl_style {ref / s:5.2f}")


if __name__ == "__main__":
    main()
