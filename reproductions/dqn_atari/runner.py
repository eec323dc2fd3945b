"""DQN (Mnih et al. 2013, "Playing Atari with Deep Reinforcement Learning"): the runner.

One seed trains one agent per game (Algorithm 1): ε-greedy acting in a vector of deterministic ALE
environments, every transition into a frame-once replay memory, one RMSProp minibatch update every
`update_every` agent steps. Along the way it traces Figure 2 (the average return under ε = 0.05 and
the average max-Q over a fixed set of held-out states) and ends with Table 1's number, the average
total reward per episode under ε = 0.05. With `ablation_no_replay` it trains a second agent on the
same frame budget whose memory holds only its `no_replay_memory` newest transitions (one minibatch,
32): every update learns from the newest 32 transitions, as many samples per update as with replay,
and each transition is used about as often, but nothing older is replayed and consecutive
minibatches overlap, so the samples stay correlated (§4's argument for replay).

"Frames" are the agent's frames, one per action (DeepMind's usage: 10M frames = 10M actions,
40M emulator frames at frame skip 4).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from common import rl_env
from common.config import check_names, check_range
from common.context import Diverged, RunContext
from common.papers import UsageError
from common.replay import FrameReplay
from common.rl_eval import evaluate
from common.stats import iqm
from reproductions.dqn_atari.dqn import VARIANTS, Agent

# The paper tier (§5 of the 2013 paper; the Nature 2015 values where 2013 gives none, marked N).
CONFIG = {
    "games": ["beam_rider", "breakout", "enduro", "pong", "qbert", "seaquest", "space_invaders"],  # Table 1
    "variant": "nips2013",          # or nature2015: target network + TD error clipped to [-1, 1]
    "frames": 10_000_000,           # agent frames (actions) of training per game
    "num_envs": 4,                  # environments stepped together (the paper: one; README, Deviations)
    "frame_skip": 4,                # k = 4 ...
    "frame_skip_space_invaders": 3,  # ... except Space Invaders (the lasers blink at k = 4)
    "replay_size": 1_000_000,       # the 1M most recent frames
    "batch_size": 32,
    "update_every": 1,              # agent steps per minibatch update (Algorithm 1: every step)
    "learning_starts": 50_000,      # N: frames of experience before the first update
    "lr": 2.5e-4,                   # N: RMSProp learning rate (2013 gives no constants)
    "rms_decay": 0.95,              # N: squared-gradient momentum
    "rms_eps": 0.01,                # N: min squared gradient (added outside the root in PyTorch)
    "gamma": 0.99,                  # N
    "eps_start": 1.0,               # ε annealed linearly from 1 ...
    "eps_end": 0.1,                 # ... to 0.1 ...
    "eps_frames": 1_000_000,        # ... over the first 1M frames
    "target_update": 10_000,        # N, nature2015 only: updates between target-network refreshes
    "eval_epsilon": 0.05,
    "eval_every": 50_000,           # one "epoch" = 50k minibatch updates (Fig. 2)
    "eval_steps": 10_000,           # Fig. 2: ε-greedy for 10,000 steps
    "eval_episodes": 1000,          # (a cap that the step budget reaches first)
    "final_eval_episodes": 30,      # Table 1's number: episodes ...
    "final_eval_steps": 135_000,    # ... within at most this many agent steps
    "heldout_states": 1000,         # Fig. 2: states collected by a random policy before training
    "ablation_no_replay": False,    # also train an agent without replay: ...
    "no_replay_memory": 32,         # ... that learns from its 32 newest transitions (one minibatch)
    "bf16": False,                  # bfloat16 autocast for the network: fast only with native bf16 (README)
    "compile": False,               # torch.compile the loss and the RMSProp step
    "checkpoint_every": 250_000,    # agent frames between resume checkpoints
    "checkpoint_replay": False,     # also save the replay memory (7 GB at 1M frames)
}

TIERS = {
    # seconds, deterministic: one game, a few hundred frames, every code path (ablation, checkpoints)
    "smoke": {"games": ["breakout"], "frames": 400, "num_envs": 2, "replay_size": 300, "update_every": 8,
              "learning_starts": 100, "eps_frames": 300, "eval_every": 200, "eval_steps": 100, "eval_episodes": 2,
              "final_eval_episodes": 2, "final_eval_steps": 200, "heldout_states": 32, "ablation_no_replay": True,
              "checkpoint_every": 200, "checkpoint_replay": True},
    # README, Tiers: Q*bert at 2% of the paper's frames; 28 min per seed with the ablation, 3 side by side
    "cpu": {"games": ["qbert"], "frames": 200_000, "update_every": 4, "replay_size": 100_000,
            "learning_starts": 10_000, "eps_frames": 50_000, "target_update": 2_500, "eval_every": 20_000,
            "eval_steps": 2_500, "final_eval_episodes": 32, "final_eval_steps": 20_000, "heldout_states": 500,
            "ablation_no_replay": True, "compile": True, "checkpoint_every": 40_000, "checkpoint_replay": True},
}
FEW_STEPS = {"frames": 16, "replay_size": 64, "learning_starts": 8, "eval_every": 8, "eval_steps": 8,
             "eval_episodes": 1, "final_eval_episodes": 1, "final_eval_steps": 8, "heldout_states": 8,
             "checkpoint_every": 8}
LIBRARIES = ("ale-py", "gymnasium")
DATASETS = ()

# Table 1 of the 2013 paper (average total reward; shared/papers.md §1, C) in ale-py ROM ids
TABLE1 = {
    "Random": {"beam_rider": 354, "breakout": 1.2, "enduro": 0, "pong": -20.4, "qbert": 157, "seaquest": 110,
               "space_invaders": 179},
    "Sarsa": {"beam_rider": 996, "breakout": 5.2, "enduro": 129, "pong": -19, "qbert": 614, "seaquest": 665,
              "space_invaders": 271},
    "Contingency": {"beam_rider": 1743, "breakout": 6, "enduro": 159, "pong": -17, "qbert": 960, "seaquest": 723,
                    "space_invaders": 268},
    "DQN": {"beam_rider": 4092, "breakout": 168, "enduro": 470, "pong": 20, "qbert": 1952, "seaquest": 1705,
            "space_invaders": 581},
    "Human": {"beam_rider": 7456, "breakout": 31, "enduro": 368, "pong": -3, "qbert": 18900, "seaquest": 28010,
              "space_invaders": 3690},
}
ARMS = {"dqn": "", "noreplay": "noreplay_"}  # arm -> metric-name piece


def human_normalized(game: str, score: float) -> float:
    """(score - Random) / (Human - Random), with Table 1's Random and Human rows."""
    random, human = TABLE1["Random"][game], TABLE1["Human"][game]
    return (score - random) / (human - random)


def validate(cfg: dict) -> None:
    """Every value a user can set, checked before anything trains (one line each, exit 2). No emulator
    is made here: the games are checked against Table 1, whose names are ale-py ROM ids."""
    games = check_names("games", cfg["games"], tuple(TABLE1["Random"]))
    if not games or len(set(games)) != len(games):
        raise UsageError(f"games must list at least one game, each once, from Table 1's ale-py ROM ids: "
                         f"{', '.join(TABLE1['Random'])}; got {cfg['games']}")
    if cfg["variant"] not in VARIANTS:
        raise UsageError(f"variant: unknown variant {cfg['variant']!r}; valid variants: {', '.join(VARIANTS)}")
    for key in ("frames", "num_envs", "replay_size", "batch_size", "update_every", "eps_frames", "target_update",
                "eval_every", "eval_steps", "eval_episodes", "final_eval_episodes", "final_eval_steps",
                "heldout_states", "checkpoint_every", "frame_skip", "frame_skip_space_invaders", "no_replay_memory"):
        check_range(key, cfg[key], 1)
    check_range("learning_starts", cfg["learning_starts"], 0)
    for key in ("eps_start", "eps_end", "eval_epsilon", "gamma"):
        check_range(key, cfg[key], 0, 1, " (a probability)" if "eps" in key else "")
    check_range("rms_decay", cfg["rms_decay"], 0, 1)
    check_range("rms_eps", cfg["rms_eps"], 0)
    check_range("lr", cfg["lr"], 0)
    if cfg["lr"] == 0:
        raise UsageError(f"lr must be > 0, got {cfg['lr']}")


def frame_skip(cfg: dict, game: str) -> int:
    return cfg["frame_skip_space_invaders"] if game == "space_invaders" else cfg["frame_skip"]


def epsilon(cfg: dict, frames: int) -> float:
    """Linear from eps_start to eps_end over the first eps_frames frames, then constant."""
    fraction = min(frames / cfg["eps_frames"], 1.0)
    return cfg["eps_start"] + fraction * (cfg["eps_end"] - cfg["eps_start"])


def heldout_states(cfg: dict, game: str, seed: int) -> torch.Tensor:
    """Fig. 2's fixed set: states met by a uniformly random policy before training, one every 4th step."""
    env = rl_env.make_atari(game, cfg["num_envs"], frame_skip(cfg, game))
    rng = np.random.default_rng(seed)
    obs, kept = rl_env.reset(env, seed), []
    while sum(len(k) for k in kept) < cfg["heldout_states"] * 4:
        kept.append(obs.copy())
        obs, *_ = rl_env.step(env, rng.integers(0, env.single_action_space.n, size=env.num_envs))
    env.close()
    states = np.concatenate(kept)[::4][:cfg["heldout_states"]]
    return torch.from_numpy(np.ascontiguousarray(states))


class Trainer:
    """Algorithm 1 on a vector of environments, with everything a checkpoint needs to continue it."""

    def __init__(self, cfg: dict, game: str, arm: str, seed: int, device: torch.device):
        self.cfg, self.game, self.arm, self.seed, self.device = cfg, game, arm, seed, device
        self.env = rl_env.make_atari(game, cfg["num_envs"], frame_skip(cfg, game))
        self.num_actions = int(self.env.single_action_space.n)
        torch.manual_seed(seed)  # both arms of the ablation start from the same network
        self.agent = Agent(self.num_actions, cfg, device)
        # the replay memory stays in host memory as uint8 (7 GB at 1M frames); its minibatches go to the device
        capacity = cfg["replay_size"] if arm == "dqn" else cfg["no_replay_memory"]
        self.replay = FrameReplay(capacity, cfg["num_envs"], seed=seed)
        self.ready_at = min(cfg["learning_starts"], self.replay.per_env * cfg["num_envs"])
        self.rng = np.random.default_rng(seed)  # exploration
        self.frames, self.credit, self.episode_returns = 0, 0, []
        self.running = np.zeros(cfg["num_envs"])
        self.start_episodes(reset_seed=seed)

    def start_episodes(self, reset_seed: int) -> None:
        self.obs = rl_env.reset(self.env, reset_seed)
        self.replay.start(self.obs[:, -1])
        self.resetting = np.zeros(self.cfg["num_envs"], dtype=bool)  # the next step resets that env
        self.running[:] = 0

    def act(self) -> np.ndarray:
        n = self.cfg["num_envs"]
        explore = self.rng.random(n) < epsilon(self.cfg, self.frames)
        random_actions = self.rng.integers(0, self.num_actions, size=n)
        return np.where(explore, random_actions, self.agent.greedy(self.obs))

    def step(self) -> list[float]:
        """One vector step and the updates it makes due; returns the losses."""
        actions = self.act()
        self.obs, rewards, terminated, truncated = rl_env.step(self.env, actions)
        # rewards clipped to {-1, 0, +1} for learning only (§5); returns are counted raw
        self.replay.add(actions, np.sign(rewards), terminated, truncated, self.obs[:, -1])
        playing = ~self.resetting
        self.frames += int(playing.sum())
        self.running += np.where(playing, rewards, 0.0)
        ended = terminated | truncated
        self.episode_returns += [float(r) for r in self.running[ended & playing]]
        self.running[ended] = 0.0
        self.resetting = ended
        if self.frames < self.cfg["learning_starts"] or len(self.replay) < self.ready_at:
            return []
        self.credit += int(playing.sum())
        losses = []
        while self.credit >= self.cfg["update_every"]:
            self.credit -= self.cfg["update_every"]
            # drawn on the host from the replay's own generator and copied to the device once (pinned and
            # non-blocking on CUDA): the same minibatch on every device
            losses.append(self.agent.update(self.replay.sample(self.cfg["batch_size"], self.device)))
        return losses

    def state(self) -> dict:
        state = {"agent": self.agent.state_dict(), "frames": self.frames, "credit": self.credit,
                 "episode_returns": list(self.episode_returns), "rng": self.rng.bit_generator.state,
                 "replay_rng": self.replay.rng.bit_generator.state}
        if self.cfg["checkpoint_replay"]:
            state["replay"] = self.replay.state_dict()
        return state

    def load(self, state: dict) -> None:
        """Continue from a checkpoint. The emulators cannot be restored, so their episodes restart
        (seeded by the frame count): frames after the checkpoint are played again, never counted twice."""
        self.agent.load_state_dict(state["agent"])
        self.frames, self.credit = state["frames"], state["credit"]
        self.episode_returns = list(state["episode_returns"])
        self.rng.bit_generator.state = state["rng"]
        if "replay" in state:
            self.replay.load_state_dict(state["replay"])
        self.replay.rng.bit_generator.state = state["replay_rng"]
        self.start_episodes(reset_seed=self.seed + self.frames)


def agent(cfg: dict, game: str, arm: str, ctx: RunContext) -> dict[str, float]:
    """One agent, a `ctx.stage` (a resumed run gets a finished agent's metrics and final returns back)
    inside `ctx.may_diverge`: its metrics, with `<prefix>diverged` (0, or 1 with the step and the last
    finite value: then no other metric of this agent), and its final evaluation's returns for the report."""
    key, prefix = f"{game}_{arm}", f"{game}_{ARMS[arm]}"

    def train_or_diverge() -> dict:
        with ctx.may_diverge(prefix.rstrip("_")) as outcome:
            metrics, returns = train(cfg, game, arm, ctx)
        if outcome.diverged:
            metrics, returns = {}, []
        return {"metrics": {**metrics, **outcome.metrics()}, "final_returns": returns, "diverged": outcome.diverged}

    result = ctx.stage(key, train_or_diverge)
    if not result["diverged"]:
        ctx.save_arrays(key, final_returns=np.array(result["final_returns"], dtype=np.float64))
    return result["metrics"]


def train(cfg: dict, game: str, arm: str, ctx: RunContext) -> tuple[dict[str, float], list[float]]:
    """Train one agent on `game` to the frame budget; Fig. 2's curves on the way, Table 1's number at
    the end. Returns its metrics and the final evaluation's episode returns."""
    trainer = Trainer(cfg, game, arm, ctx.seed, ctx.device)
    states = heldout_states(cfg, game, seed=10_000 + ctx.seed).to(ctx.device)  # Fig. 2's max-Q inputs, moved once
    eval_env = rl_env.make_atari(game, cfg["num_envs"], frame_skip(cfg, game))
    try:
        return learn(cfg, game, arm, ctx, trainer, states, eval_env)
    finally:  # a diverged agent's emulators are closed too
        trainer.env.close()
        eval_env.close()


def learn(cfg: dict, game: str, arm: str, ctx: RunContext, trainer: Trainer, states: torch.Tensor,
          eval_env) -> tuple[dict[str, float], list[float]]:
    """train()'s loop, from the untrained network's point (or the last mid-training checkpoint) to the
    frame budget and the final evaluation."""
    key, prefix = f"{game}_{arm}", f"{game}_{ARMS[arm]}"

    def measure(episodes: int, steps: int, seed: int):
        result = evaluate(eval_env, trainer.agent.greedy, trainer.num_actions, seed, cfg["eval_epsilon"],
                          episodes, steps)
        max_q = float(trainer.agent.q_values(states).max(1).values.mean())
        return result, max_q

    saved = ctx.restore(key)
    if saved is not None:
        trainer.load(saved["trainer"])
    max_qs = [row["max_q"] for row in ctx.curves if row.get("game") == game and row.get("arm") == arm]
    next_eval = (trainer.frames // cfg["eval_every"] + 1) * cfg["eval_every"]
    def returns(result) -> dict:  # a point with no finished episode has no return (not a partial game's)
        return {"eval_return": result.mean_return} if result.episodes else {}

    if saved is None:  # the untrained network's point
        result, max_q = measure(cfg["eval_episodes"], cfg["eval_steps"], seed=0)
        ctx.log(0, game=game, arm=arm, max_q=max_q, epsilon=1.0, eval_episodes=result.episodes, **returns(result))
        max_qs.append(max_q)
    last_checkpoint, seen_returns = trainer.frames, len(trainer.episode_returns)
    train_seconds, start_frames, start_updates = 0.0, trainer.frames, trainer.agent.updates
    losses: list = []
    bar = ctx.progress(range(cfg["frames"]), desc=f"{key} ({cfg['variant']})", total=cfg["frames"])
    bar.update(trainer.frames)
    while trainer.frames < cfg["frames"]:
        clock, before = time.perf_counter(), trainer.frames
        losses += trainer.step()
        train_seconds += time.perf_counter() - clock
        bar.update(trainer.frames - before)
        if trainer.frames >= next_eval or trainer.frames >= cfg["frames"]:
            next_eval += cfg["eval_every"]
            result, max_q = measure(cfg["eval_episodes"], cfg["eval_steps"], seed=trainer.frames)
            max_qs.append(max_q)
            recent = trainer.episode_returns[seen_returns:]
            seen_returns = len(trainer.episode_returns)
            extra = {"train_return": float(np.mean(recent))} if recent else {}
            if losses:
                extra["loss"] = float(torch.stack(losses).mean())
            losses = []
            ctx.log(trainer.frames, game=game, arm=arm, max_q=max_q, epsilon=epsilon(cfg, trainer.frames),
                    eval_episodes=result.episodes, **returns(result), **extra)
            if trainer.frames - last_checkpoint >= cfg["checkpoint_every"]:
                last_checkpoint = trainer.frames
                ctx.checkpoint(key, {"trainer": trainer.state()})
    bar.close()
    if trainer.frames > start_frames and train_seconds > 0:
        steps_per_s = (trainer.frames - start_frames) / train_seconds
        ctx.record_throughput(f"{prefix}agent_frames_per_s", steps_per_s)
        ctx.record_throughput(f"{prefix}emulator_frames_per_s", steps_per_s * frame_skip(cfg, game))
        ctx.record_throughput(f"{prefix}updates_per_s", (trainer.agent.updates - start_updates) / train_seconds)

    final, max_q = measure(cfg["final_eval_episodes"], cfg["final_eval_steps"], seed=1)
    rises = np.diff(max_qs)
    if final.episodes:
        scores = {f"{prefix}return": final.mean_return, f"{prefix}hns": human_normalized(game, final.mean_return)}
    else:  # Table 1's number is over finished episodes: without one there is no score, only the count
        scores = {}
        for name in (f"{prefix}return", f"{prefix}hns"):
            ctx.mark_undefined(name, f"no evaluation episode finished within {cfg['final_eval_steps']:,} agent steps")
    metrics = {**scores, f"{prefix}eval_episodes": final.episodes, f"{prefix}frames": trainer.frames,
               f"{prefix}updates": trainer.agent.updates, f"{prefix}max_q_start": max_qs[0],
               f"{prefix}max_q_end": max_q, f"{prefix}max_q_rise": max_q - max_qs[0],
               f"{prefix}max_q_up_fraction": float((rises > 0).mean()) if len(rises) else 0.0}
    for name, value in metrics.items():  # a NaN max-Q at the very end is this agent's divergence too
        if not math.isfinite(value):
            raise Diverged(trainer.frames, name, value)
    return metrics, [float(r) for r in final.returns]


def run(cfg: dict, ctx: RunContext) -> dict[str, float]:
    rl_env.atari_games()  # ale-py is importable: fail before anything trains
    metrics: dict[str, float] = {}
    for game in cfg["games"]:
        arms = ("dqn", "noreplay") if cfg["ablation_no_replay"] else ("dqn",)
        for arm in arms:  # each agent is a stage: a resumed run skips the finished ones
            metrics.update(agent(cfg, game, arm, ctx))
    games = [g for g in cfg["games"] if f"{g}_return" in metrics]  # the games whose DQN agent did not diverge
    if not games:
        return metrics
    metrics["hns_iqm"] = iqm([metrics[f"{g}_hns"] for g in games])
    # §5's summary: above Random everywhere, above Human exactly where Table 1's DQN is (B.Rider ... S.Invaders)
    metrics["games_above_random"] = sum(metrics[f"{g}_return"] > TABLE1["Random"][g] for g in games)
    metrics["games_human_as_paper"] = sum((metrics[f"{g}_return"] > TABLE1["Human"][g])
                                          == (TABLE1["DQN"][g] > TABLE1["Human"][g]) for g in games)
    return metrics
