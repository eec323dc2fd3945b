"""Report figures for DQN: Figure 2's two signals (the ε = 0.05 return and the average max-Q on the
held-out states) against training frames, Table 1 with our row, the human-normalized IQM with its
stratified-bootstrap CI, and the throughput of every run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.plots import curve_plot
from common.records import all_curves
from common.stats import iqm, stratified_bootstrap_ci
from reproductions.dqn_atari.runner import ARMS, TABLE1, human_normalized

ARM_LABELS = {"dqn": "DQN (replay)", "noreplay": "no replay (32 newest transitions)"}
TITLES = {"beam_rider": "B.Rider", "breakout": "Breakout", "enduro": "Enduro", "pong": "Pong", "qbert": "Q*bert",
          "seaquest": "Seaquest", "space_invaders": "S.Invaders"}


def _describe(runs) -> str:
    cfg = runs[0].config
    return f"{cfg['variant']}, {cfg['frames']:,} frames, {len(runs)} seed(s)"


def ours(runs) -> dict[str, list[float]]:
    """Each game's final ε = 0.05 return, one value per seed."""
    games = [g for g in TABLE1["Random"] if all(f"{g}_return" in r.record["metrics"] for r in runs)]
    return {g: [r.record["metrics"][f"{g}_return"] for r in runs] for g in games}


def table1(runs) -> tuple[str, pd.DataFrame]:
    """Table 1's average-total-reward rows beside ours (mean ± std over seeds), with its caption: the
    human-normalized IQM and its stratified-bootstrap CI over seeds x games."""
    scores = ours(runs)
    games = list(TABLE1["Random"])
    rows = [[name] + [f"{TABLE1[name][g]:g}" for g in games] for name in ("Random", "Sarsa", "Contingency")]
    rows.append(["DQN (paper)"] + [f"{TABLE1['DQN'][g]:g}" for g in games])
    rows.append(["Ours"] + [
        f"{np.mean(scores[g]):.1f} ± {np.std(scores[g], ddof=1) if len(scores[g]) > 1 else 0:.1f}"
        if g in scores else "—" for g in games])
    rows.append(["Human"] + [f"{TABLE1['Human'][g]:g}" for g in games])
    caption = f"Table 1 (average total reward, ε = 0.05) with our row ({_describe(runs)})"
    if scores:
        matrix = np.array([[human_normalized(g, scores[g][i]) for g in scores] for i in range(len(runs))])
        low, high = stratified_bootstrap_ci(matrix)
        caption += (f"; human-normalized IQM {iqm(matrix):.3f} [95% stratified-bootstrap CI {low:.3f}, {high:.3f}, "
                    f"rliable's method] over seeds x {len(scores)} game(s)")
    return caption, pd.DataFrame(rows, columns=["Method"] + [TITLES[g] for g in games])


def throughput(runs) -> pd.DataFrame:
    """Agent frames/s, emulator frames/s and updates/s of every run, per arm (evaluations excluded)."""
    rows = []
    for run in sorted(runs, key=lambda r: r.seed):
        speed = run.record["throughput"]
        for game in TABLE1["Random"]:
            for arm, piece in ARMS.items():
                key = f"{game}_{piece}"
                if f"{key}agent_frames_per_s" in speed:
                    rows.append([str(run.seed), TITLES[game], ARM_LABELS[arm]] + [
                        f"{speed[f'{key}{m}']:.0f}" for m in ("agent_frames_per_s", "emulator_frames_per_s",
                                                               "updates_per_s")] + [
                        f"{run.record['wall_time_s'] / 60:.1f}", str(run.record["versions"].get("torch", ""))])
    return pd.DataFrame(rows, columns=["seed", "game", "arm", "agent frames/s", "emulator frames/s", "updates/s",
                                       "run wall min", "torch"])


def figures(runs, out_dir: Path) -> list[tuple[str, Path | pd.DataFrame]]:
    out_dir = Path(out_dir)
    made: list[tuple[str, Path]] = []
    curves = all_curves(runs)
    if not runs or not {"game", "arm", "eval_return", "max_q"} <= set(curves.columns):
        return made
    curves = curves.assign(arm=curves["arm"].map(ARM_LABELS), game=curves["game"].map(TITLES),
                           random=curves["game"].map(TABLE1["Random"]))  # from the ROM ids, before the renaming
    # a vector of environments overshoots each evaluation point by up to num_envs - 1 frames, differently
    # per seed: snap to the schedule so that seeds are averaged point by point
    every = runs[0].config["eval_every"]
    frames = "training frames (thousands)"
    curves[frames] = (curves["step"] / every).round() * every / 1000
    made.append(((f"Average return per episode under ε = 0.05 during training ({_describe(runs)}); dashed: "
                  "Table 1's Random row"),
                 curve_plot(curves, x=frames, y="eval_return", hue="arm", col="game", baseline="random",
                            path=out_dir / "dqn_atari_returns.png", title="Average reward per episode (Fig. 2)")))
    made.append(("Average max-Q over the fixed held-out states collected by a random policy before training",
                 curve_plot(curves, x=frames, y="max_q", hue="arm", col="game",
                            path=out_dir / "dqn_atari_max_q.png", title="Average action value Q (Fig. 2)")))
    made.append(table1(runs))
    made.append(("Throughput of the training loop per run (evaluations excluded)", throughput(runs)))
    return made
