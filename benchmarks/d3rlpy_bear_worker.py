"""d3rlpy's BEAR, driven by benchmarks/bear_speed.py from d3rlpy's own environment (a separate venv: d3rlpy
pins its own gym stack). Reads lines "run N" on stdin, answers with the seconds N updates took; "quit" ends.
Only d3rlpy, numpy and torch are imported here."""
import sys
import time

import numpy as np
import torch


def main(obs_dim: int, act_dim: int, batch: int, hidden: int, mmd_samples: int, target_samples: int) -> None:
    import d3rlpy
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n, episode = 20_000, 1_000
    terminals = np.zeros(n)
    timeouts = np.zeros(n)
    timeouts[episode - 1::episode] = 1.0
    dataset = d3rlpy.dataset.MDPDataset(
        observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32), terminals=terminals, timeouts=timeouts)
    encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=[hidden, hidden])
    algo = d3rlpy.algos.BEARConfig(
        batch_size=batch, actor_encoder_factory=encoder, critic_encoder_factory=encoder,
        imitator_encoder_factory=encoder, n_mmd_action_samples=mmd_samples, n_target_samples=target_samples,
        warmup_steps=0).create(device="cpu:0")
    algo.build_with_dataset(dataset)
    print("ready", d3rlpy.__version__, flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "quit":
            break
        steps = int(command[1])
        clock = time.perf_counter()
        for _ in range(steps):
            algo.update(dataset.sample_transition_batch(batch))
        print(time.perf_counter() - clock, flush=True)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
