"""The replay memory's size at the paper's 1M frames: bytes allocated and resident after every slot
was written, and the time of a 32-transition minibatch. Run from the repository root:

    python -m benchmarks.replay_memory --frames 1000000 --envs 4
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from common.replay import FrameReplay


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--envs", type=int, default=4)
    args = parser.parse_args(argv)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    replay = FrameReplay(args.frames, args.envs)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(args.envs, 84, 84), dtype=np.uint8)
    replay.start(frames)
    clock = time.perf_counter()
    for t in range(replay.slots):  # every slot written: the memory is resident, not just reserved
        ended = np.zeros(args.envs, dtype=bool)
        replay.add(np.zeros(args.envs, dtype=np.int64), np.zeros(args.envs), ended, ended, frames)
    fill = time.perf_counter() - clock
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    clock = time.perf_counter()
    for _ in range(100):
        replay.sample(32)
    sample_ms = (time.perf_counter() - clock) * 10
    gib = 2 ** 30
    print(f"{len(replay):,} transitions in {args.envs} streams: {replay.nbytes / gib:.2f} GiB allocated "
          f"({replay.nbytes / len(replay):.0f} bytes per transition; one 84x84 frame is 7056), "
          f"{rss / gib:.2f} GiB more resident after filling ({fill:.0f} s); a minibatch of 32 takes {sample_ms:.2f} ms")


if __name__ == "__main__":
    main()
