"""Update throughput of reproductions/bear against d3rlpy's BEAR, side by side in one run.

Both sides get the same problem: Hopper's sizes (11-D observations, 3-D actions), 20,000 random
transitions, batch 256, 256-256 networks for the actor, each of the 2 critics and the behaviour VAE
(d3rlpy's defaults), 10 target samples and 4 MMD samples (d3rlpy's `n_mmd_action_samples`), after the
warm start (both run the full actor loss), one thread each. d3rlpy's BEAR also learns a SAC temperature
and adds the entropy term; ours follows the official code and has none, so this is the cost of one
BEAR update as each library defines it.

d3rlpy runs in its own virtual environment (it pins its own gym stack), in a worker process
(`benchmarks/d3rlpy_bear_worker.py`) that this script drives over a pipe: segments of `--steps` updates
alternate between ours and d3rlpy's, so load on the machine hits both alike, and the ratio of the summed
times is printed. Run from the repository root:

    python3 -m venv /tmp/d3venv && /tmp/d3venv/bin/pip install torch==2.13.0 d3rlpy
    python -m benchmarks.bear_speed --d3rlpy-python /tmp/d3venv/bin/python --steps 300 --rounds 5
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common.replay import TransitionReplay
from reproductions.bear.bear import BEAR, BEARConfig

OBS, ACT, BATCH, HIDDEN, MMD_SAMPLES, TARGET_SAMPLES = 11, 3, 256, 256, 4, 10


def ours(compile_update: bool):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 20_000
    replay = TransitionReplay.from_arrays({
        "observations": rng.normal(size=(n, OBS)), "actions": rng.uniform(-1, 1, size=(n, ACT)),
        "rewards": rng.normal(size=n), "next_observations": rng.normal(size=(n, OBS)), "terminals": np.zeros(n)})
    agent = BEAR(OBS, ACT, BEARConfig(hidden=(HIDDEN, HIDDEN), vae_hidden=(HIDDEN, HIDDEN), warmup_steps=0,
                                      constraint_samples=MMD_SAMPLES, target_samples=TARGET_SAMPLES))
    update = torch.compile(agent.update) if compile_update else agent.update
    generator = torch.Generator().manual_seed(0)

    def run(steps: int) -> float:
        clock = time.perf_counter()
        for _ in range(steps):
            update(replay.sample(BATCH, generator))
        return time.perf_counter() - clock
    return run


def _answer(worker, is_answer) -> list[str] | None:
    """The worker's next line that `is_answer` accepts, skipping d3rlpy's own log lines; None at its end."""
    for line in worker.stdout:
        words = line.split()
        if words and is_answer(words):
            return words
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d3rlpy-python", required=True, help="the python of a venv with d3rlpy installed")
    parser.add_argument("--steps", type=int, default=300, help="updates per segment")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=50, help="untimed updates on each side first")
    parser.add_argument("--compile", action="store_true", help="time ours under torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(1)
    worker = subprocess.Popen([args.d3rlpy_python, str(Path(__file__).with_name("d3rlpy_bear_worker.py")),
                               *map(str, (OBS, ACT, BATCH, HIDDEN, MMD_SAMPLES, TARGET_SAMPLES))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = _answer(worker, lambda words: words[0] == "ready")
    if ready is None:
        sys.exit("the d3rlpy worker did not start (is d3rlpy installed in that python?)")

    def theirs(steps: int) -> float:
        worker.stdin.write(f"run {steps}\n")
        worker.stdin.flush()
        return float(_answer(worker, lambda words: len(words) == 1 and words[0].replace(".", "", 1).isdigit())[0])

    mine = ours(args.compile)
    mine(args.warmup)
    theirs(args.warmup)
    ours_s = theirs_s = 0.0
    for round_ in range(args.rounds):
        t_theirs, t_ours = theirs(args.steps), mine(args.steps)
        theirs_s, ours_s = theirs_s + t_theirs, ours_s + t_ours
        print(f"round {round_ + 1}: d3rlpy {args.steps / t_theirs:.1f} updates/s, ours {args.steps / t_ours:.1f} "
              f"updates/s", flush=True)
    worker.stdin.write("quit\n")
    worker.stdin.flush()
    worker.wait()
    total = args.steps * args.rounds
    print(f"d3rlpy {ready[1]}: {total / theirs_s:.1f} updates/s; ours{' (compiled)' if args.compile else ''}: "
          f"{total / ours_s:.1f} updates/s; ours / d3rlpy = {theirs_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
