"""DQN on Atari (reproductions/dqn_atari): the 2013 network, the two variants' targets and losses,
the schedules, bad input, and a killed-and-resumed run that counts every frame once."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.papers import UsageError
from common.rl_eval import Evaluation
from reproductions.dqn_atari import runner
from reproductions.dqn_atari.dqn import Agent, QNetwork, td_loss
from tests.conftest import assert_usage_error
from tests.resume import kill_then_resume

CPU = torch.device("cpu")

pytest.importorskip("ale_py")


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def _cfg(**overrides) -> dict:
    return {**runner.CONFIG, **runner.TIERS["smoke"], **overrides}


def test_the_2013_network_has_the_papers_layers():
    net = QNetwork(num_actions=6)
    assert [tuple(m.weight.shape) for m in (net.conv1, net.conv2, net.fc, net.out)] == \
        [(16, 4, 8, 8), (32, 16, 4, 4), (256, 2592), (6, 256)]
    assert [m.stride for m in (net.conv1, net.conv2)] == [(4, 4), (2, 2)]
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    relu = torch.nn.functional.relu
    x = relu(net.conv2(relu(net.conv1(frames.float() / 255))))  # uint8 in, scaled to [0, 1]
    torch.testing.assert_close(net(frames), net.out(relu(net.fc(x.flatten(1)))))


def test_the_nature_loss_clips_the_td_error_in_its_gradient_and_nips_does_not():
    q = torch.tensor([0.0, 0.0, 0.0], requires_grad=True)
    target = torch.tensor([0.5, 3.0, -4.0])
    for variant, expected in (("nips2013", [-0.5, -3.0, 4.0]), ("nature2015", [-0.5, -1.0, 1.0])):
        q.grad = None
        (td_loss(variant, q, target) * 3).backward()  # undo the batch mean
        torch.testing.assert_close(q.grad, torch.tensor(expected))


def _batch(num_actions=4, n=8):
    s = torch.randint(0, 256, (n, 4, 84, 84), dtype=torch.uint8)
    return (s, torch.randint(0, 256, (n, 4, 84, 84), dtype=torch.uint8), torch.randint(0, num_actions, (n,)),
            torch.randn(n), torch.zeros(n))


def test_nips2013_bootstraps_from_the_online_network_and_nature2015_from_a_lagged_copy():
    batch = _batch()
    nips = Agent(4, _cfg(variant="nips2013", bf16=False), CPU)
    assert nips.target is None
    nature = Agent(4, _cfg(variant="nature2015", bf16=False, target_update=3), CPU)
    initial = {k: v.clone() for k, v in nature.net.state_dict().items()}
    for _ in range(2):
        nature.update(batch)
    # two updates in, the target network still holds the initial weights ...
    assert all(torch.equal(v, initial[k]) for k, v in nature.target.state_dict().items())
    assert not torch.equal(nature.net.fc.weight, initial["fc.weight"])
    nature.update(batch)  # ... and the third refreshes it
    assert all(torch.equal(v, nature.net.state_dict()[k]) for k, v in nature.target.state_dict().items())
    # the online network's loss is the one nips2013 bootstraps with
    s, s2, a, r, _ = batch
    with torch.no_grad():
        expected = 0.5 * ((r + 0.99 * nips.net(s2).max(1).values - nips.net(s).gather(1, a[:, None]).squeeze(1)) ** 2)
    torch.testing.assert_close(nips.loss(*batch), expected.mean())


def test_epsilon_anneals_linearly_then_stays():
    cfg = _cfg(eps_start=1.0, eps_end=0.1, eps_frames=1000)
    assert [runner.epsilon(cfg, f) for f in (0, 500, 1000, 5000)] == pytest.approx([1.0, 0.55, 0.1, 0.1])


def test_human_normalized_scores_use_table_1():
    assert runner.human_normalized("breakout", 1.2) == 0
    assert runner.human_normalized("breakout", 31) == pytest.approx(1)
    assert runner.human_normalized("pong", 20) == pytest.approx(40.4 / 17.4)


def test_space_invaders_skips_three_frames():
    assert runner.frame_skip(runner.CONFIG, "space_invaders") == 3 and runner.frame_skip(runner.CONFIG, "pong") == 4


@pytest.mark.parametrize("overrides, message", [
    ({"games": ["breakout", "tetris"]}, "games: unknown 'tetris'; valid: .*space_invaders"),
    ({"games": ["pong", "pong"]}, "games must list at least one game, each once"),
    ({"variant": "double"}, "unknown variant.*nips2013, nature2015"),
    ({"num_envs": 0}, "num_envs must be >= 1"),
    ({"gamma": 1.5}, r"gamma must be in \[0, 1\]"),
    ({"eps_end": -0.1}, r"eps_end must be in \[0, 1\] \(a probability\)"),
])
def test_validate_names_what_was_wrong_and_what_is_valid(overrides, message):
    with pytest.raises(UsageError, match=message):
        runner.validate(_cfg(**overrides))


@pytest.mark.parametrize("setting, key", [
    ("games=breakout,tetris", "games"),   # not a Table 1 game (an ale-py ROM id)
    ("frames=0", "frames"),               # a count below 1
    ("replay_size=-5", "replay_size"),
    ("eval_epsilon=2", "eval_epsilon"),   # a probability above 1
    ("variant=double", "variant"),
    ("lr=abc", "lr"),                     # wrongly typed
    ("batch_size=3.5", "batch_size"),
])
def test_bad_input_exits_2_with_one_line_naming_the_key(setting, key, tmp_path, monkeypatch, capsys):
    line = assert_usage_error("dqn_atari", setting, tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert key in line


def test_every_tier_is_valid():
    from common.config import resolve
    from common.papers import get_paper
    paper = get_paper("dqn_atari").runner()
    for tier in ("smoke", "cpu", "paper"):
        paper.validate(resolve(paper, tier, {}))
    paper.validate(resolve(paper, "paper", paper.FEW_STEPS))


def test_learning_waits_for_learning_starts_in_both_arms():
    for arm in ("dqn", "noreplay"):
        trainer = runner.Trainer(_cfg(learning_starts=60), "breakout", arm, seed=0, device=CPU)
        while trainer.frames < 60:
            assert trainer.step() == [] and trainer.agent.updates == 0
        while trainer.agent.updates == 0:
            trainer.step()
        assert 60 <= trainer.frames <= 60 + 2 * 8


def test_the_no_replay_arm_learns_from_its_32_newest_transitions_each_update():
    trainer = runner.Trainer(_cfg(learning_starts=60), "breakout", "noreplay", seed=0, device=CPU)
    seen = []
    update = trainer.agent.update
    trainer.agent.update = lambda batch: seen.append(batch) or update(batch)
    while len(seen) < 3:
        trainer.step()
    assert all(len(batch[2]) == runner.CONFIG["no_replay_memory"] == 32 for batch in seen)  # a full minibatch
    lo, hi = trainer.replay._candidates()
    assert hi - lo == 32 // trainer.cfg["num_envs"]  # each environment's newest 16 transitions, no older ones


def test_a_killed_run_resumes_without_counting_frames_twice(tmp_path):
    cfg = _cfg()
    # smoke logs at frames 0, 200 and 400 per arm and checkpoints after the 200 one: die at the 400 one
    reference, resumed, ctx, ckpt = kill_then_resume("dqn_atari", runner.run, cfg, tmp_path, kill_at_log_call=3)
    saved = torch.load(ckpt / "breakout_dqn.pt", weights_only=True)["state"]["trainer"]  # the resumed run's last
    assert "replay" in saved and 200 <= saved["frames"] < cfg["frames"] + cfg["num_envs"]
    assert resumed.keys() == reference.keys()
    for run in (reference, resumed):  # the budget, overshot by less than one vector step
        for arm in ("", "noreplay_"):
            assert cfg["frames"] <= run[f"breakout_{arm}frames"] < cfg["frames"] + cfg["num_envs"]
    rows = [(r["arm"], r["step"]) for r in ctx.curves]
    assert len(rows) == len(set(rows)) == 6  # three evaluation points per arm, none twice
    for arm in ("dqn", "noreplay"):
        steps = [s for a, s in rows if a == arm]
        assert steps == sorted(steps) and steps[0] == 0 and steps[-1] >= cfg["frames"]
    # the arm trained wholly after the resume is the uninterrupted run's, bit for bit
    assert {k: v for k, v in resumed.items() if "noreplay" in k} == \
        {k: v for k, v in reference.items() if "noreplay" in k}


def test_checkpoints_restore_the_agent_and_the_replay_memory():
    trainer = runner.Trainer(_cfg(learning_starts=20), "breakout", "dqn", seed=0, device=CPU)
    while trainer.agent.updates < 3:
        trainer.step()
    state = trainer.state()
    copy = runner.Trainer(_cfg(learning_starts=20), "breakout", "dqn", seed=1, device=CPU)
    copy.load(state)
    assert copy.frames == trainer.frames and copy.agent.updates == trainer.agent.updates
    for a, b in zip(trainer.agent.net.parameters(), copy.agent.net.parameters()):
        assert torch.equal(a, b)
    t = trainer.replay.t
    assert np.array_equal(copy.replay.frames[:, t % copy.replay.slots], trainer.replay.frames[:, t % copy.replay.slots])
    assert copy.replay.t == t + 1  # the emulators were restarted: a new episode begins after the saved frames


def test_an_arm_that_diverges_is_recorded_and_the_other_still_trains(tmp_path, monkeypatch):
    from tests.resume import smoke_context
    step = runner.Trainer.step

    def nan_losses_without_replay(self):
        losses = step(self)
        return [loss * float("nan") for loss in losses] if self.arm == "noreplay" else losses

    monkeypatch.setattr(runner.Trainer, "step", nan_losses_without_replay)
    monkeypatch.setattr(runner, "evaluate", lambda *args: Evaluation(10.0, 1, 8, (10.0,)))  # one finished game
    cfg = _cfg(**{**runner.FEW_STEPS, "learning_starts": 4, "update_every": 1})
    ctx = smoke_context("dqn_atari", tmp_path, resume=False)
    metrics = runner.run(cfg, ctx)
    assert metrics["breakout_noreplay_diverged"] == 1 and metrics["breakout_noreplay_diverged_step"] >= 4
    assert not any(k.startswith("breakout_noreplay_") and "diverged" not in k for k in metrics)
    assert metrics["breakout_diverged"] == 0 and metrics["breakout_updates"] > 0
    assert metrics["hns_iqm"] == metrics["breakout_hns"]  # the summaries are over the replay agents
    assert "breakout_dqn" in ctx.arrays and "breakout_noreplay" not in ctx.arrays


def test_a_final_evaluation_that_finishes_no_game_gives_no_score(tmp_path):
    from tests.resume import smoke_context
    cfg = _cfg(**{**runner.FEW_STEPS, "ablation_no_replay": False})  # 8 evaluation steps: no game ends
    ctx = smoke_context("dqn_atari", tmp_path, resume=False)
    metrics = runner.run(cfg, ctx)
    assert metrics["breakout_eval_episodes"] == 0 and "breakout_return" not in metrics and "hns_iqm" not in metrics
    assert ctx.undefined["breakout_return"] == "no evaluation episode finished within 8 agent steps"


def test_a_replay_checkpoint_loaded_onto_another_device_restores():
    trainer = runner.Trainer(_cfg(learning_starts=20), "breakout", "dqn", seed=0, device=CPU)
    while trainer.agent.updates < 2:
        trainer.step()
    state = trainer.replay.state_dict()
    moved = {k: v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    # a meta tensor holds no data, so the copy to the host fails; what matters is that it is attempted
    # (a bare .numpy() of a tensor on a device raises TypeError before any copy)
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta"):
        trainer.replay.load_state_dict(moved)
