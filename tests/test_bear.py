"""BEAR: the MMD estimator, the update, the shared SAC pieces, and the offline-data readers on files
written in the real formats (h5py for D4RL; Minari's own DataCollector)."""
import math

import h5py
import numpy as np
import pytest
import torch

from common import offline_data
from common.cli import main
from common.config import resolve
from common.offline_data import OfflineDataError
from common.replay import TransitionReplay
from common.sac import QEnsemble, SAC, TanhGaussianActor
from reproductions.bear import runner
from reproductions.bear.bear import BEAR, BEARConfig, BehaviourCloning, mmd
from reproductions.bear.behaviour import pick_snapshots


# -- the MMD estimator (papers.md §10 check 4) ----------------------------------------------------
@pytest.mark.parametrize("kernel,sigma", [("laplacian", 10.0), ("gaussian", 20.0)])
def test_mmd_of_identical_sets_is_its_floor_and_grows_with_the_mean_shift(kernel, sigma):
    torch.manual_seed(0)
    x = torch.randn(8, 5, 3)
    assert torch.allclose(mmd(x, x, kernel, sigma), torch.full((8,), 1e-3))
    values = [float(mmd(x, x + shift, kernel, sigma).mean()) for shift in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert all(b > a for a, b in zip(values, values[1:]))


def test_mmd_matches_the_pairwise_formula_by_hand():
    x, y = torch.tensor([[[0.0], [1.0]]]), torch.tensor([[[3.0]]])
    sigma = 2.0
    k = lambda a, b: math.exp(-abs(a - b) / (2 * sigma))  # noqa: E731
    kxx = (k(0, 0) + k(0, 1) + k(1, 0) + k(1, 1)) / 4
    expected = math.sqrt(kxx + 1.0 - 2 * (k(0, 3) + k(1, 3)) / 2 + 1e-6)
    assert float(mmd(x, y, "laplacian", sigma)) == pytest.approx(expected, rel=1e-6)
    kg = lambda a, b: math.exp(-(a - b) ** 2 / (2 * sigma))  # noqa: E731
    kxx = (2 + 2 * kg(0, 1)) / 4
    expected = math.sqrt(kxx + 1.0 - (kg(0, 3) + kg(1, 3)) + 1e-6)
    assert float(mmd(x, y, "gaussian", sigma)) == pytest.approx(expected, rel=1e-6)


# -- the shared networks ---------------------------------------------------------------------------
def test_a_critic_ensemble_is_k_independent_mlps_in_one_pass():
    torch.manual_seed(0)
    critics = QEnsemble(3, 4, 2, (8, 8))
    obs, act = torch.randn(5, 4), torch.randn(5, 2)
    q = critics(obs, act)
    assert q.shape == (3, 5)
    x = torch.cat([obs, act], -1)
    for k in range(3):
        h = x
        for i, layer in enumerate(critics.net.layers):
            h = h @ layer.weight[k] + layer.bias[k, 0]
            h = torch.relu(h) if i < len(critics.net.layers) - 1 else h
        assert torch.allclose(q[k], h[:, 0], atol=1e-6)
    assert critics(obs.expand(7, 5, 4), act.expand(7, 5, 2)).shape == (3, 7, 5)


def test_the_tanh_gaussian_log_prob_is_the_change_of_variables_density():
    torch.manual_seed(0)
    actor = TanhGaussianActor(4, 2, (16, 16), max_action=2.0)
    obs = torch.randn(6, 4)
    action, pre_tanh, logp = actor.sample(obs)
    mean, log_std = actor.distribution(obs)
    base = torch.distributions.Normal(mean, log_std.exp())
    squashed = torch.distributions.TransformedDistribution(
        base, [torch.distributions.TanhTransform(), torch.distributions.AffineTransform(0.0, 2.0)])
    assert torch.allclose(logp, squashed.log_prob(action).sum(-1), atol=1e-4)
    assert torch.allclose(actor.log_prob(obs, pre_tanh), logp, atol=1e-6)
    many = actor.sample(obs, samples=5, noise_clip=0.5)[1]
    assert many.shape == (6, 5, 2) and ((many - mean.unsqueeze(1)).abs() <= 0.5 * log_std.exp().unsqueeze(1) + 1e-6).all()


def _replay(n=256, seed=0):
    rng = np.random.default_rng(seed)
    return TransitionReplay.from_arrays({
        "observations": rng.normal(size=(n, 4)), "actions": rng.uniform(-1, 1, size=(n, 2)),
        "rewards": rng.normal(size=n), "next_observations": rng.normal(size=(n, 4)),
        "terminals": (rng.random(n) < 0.1).astype(np.float32)})


def test_bear_warm_start_trains_the_actor_on_the_constraint_alone_then_on_q():
    torch.manual_seed(0)
    replay, g = _replay(), torch.Generator().manual_seed(0)
    agent = BEAR(4, 2, BEARConfig(hidden=(16, 16), vae_hidden=(16, 16), warmup_steps=3, constraint_samples=4))
    losses = []
    for _ in range(5):
        batch = replay.sample(32, g)
        stats = agent.update(batch)
        losses.append(stats)
        if agent.steps <= 3:  # during the warm start the actor's loss is alpha * constraint (no Q)
            assert float(stats["actor_loss"]) > 0
    assert agent.steps == 5
    assert float(agent.log_alpha.detach()) != 0.0  # the dual step moved alpha
    actions = agent.act(torch.randn(3, 4))
    assert actions.shape == (3, 2) and actions.abs().max() <= 1


def test_alpha_rises_while_the_constraint_is_above_epsilon():
    torch.manual_seed(0)
    replay, g = _replay(), torch.Generator().manual_seed(0)
    agent = BEAR(4, 2, BEARConfig(hidden=(16, 16), vae_hidden=(16, 16), epsilon=-1.0, warmup_steps=0))
    for _ in range(5):
        agent.update(replay.sample(32, g))
    assert float(agent.log_alpha.detach()) > 0  # the constraint (>= 0.001) is always above -1: alpha only grows
    agent = BEAR(4, 2, BEARConfig(hidden=(16, 16), vae_hidden=(16, 16), epsilon=100.0, warmup_steps=0))
    for _ in range(5):
        agent.update(replay.sample(32, g))
    assert float(agent.log_alpha.detach()) < 0


def test_the_critic_target_mixes_min_and_max_of_the_target_critics():
    """y = r + gamma (1 - d) max_p [0.75 min_k Q'_k + 0.25 max_k Q'_k], checked against a loop by hand."""
    torch.manual_seed(0)
    agent = BEAR(4, 2, BEARConfig(hidden=(8, 8), vae_hidden=(8, 8), target_samples=3, lr=0.0, alpha_lr=0.0))
    batch = _replay().sample(5, torch.Generator().manual_seed(1))
    torch.manual_seed(7)
    agent.update(batch)  # lr 0: nothing moves, but the update draws the same samples as below
    torch.manual_seed(7)
    agent.vae.loss(batch["observations"], batch["actions"])
    next_act = agent.actor_target.sample(batch["next_observations"], 3)[0]
    expected = []
    for i in range(5):
        best = -np.inf
        for j in range(3):
            q = agent.critic_target(batch["next_observations"][i:i + 1], next_act[i, j:j + 1])[:, 0]
            best = max(best, float(0.75 * q.min() + 0.25 * q.max()))
        expected.append(float(batch["rewards"][i]) + 0.99 * (1 - float(batch["terminals"][i])) * best)
    q = agent.critic(batch["observations"], batch["actions"])
    loss = float(((q.detach() - torch.tensor(expected)) ** 2).mean(1).sum())
    torch.manual_seed(7)
    assert float(agent.update(batch)["critic_loss"]) == pytest.approx(loss, rel=1e-5)


def test_sac_and_bc_updates_run_and_act_inside_the_action_box():
    torch.manual_seed(0)
    replay, g = _replay(), torch.Generator().manual_seed(0)
    sac, bc = SAC(4, 2), BehaviourCloning(4, 2, (16, 16), 1e-3)
    first = float(bc.update(replay.sample(64, g))["vae_loss"])
    for _ in range(30):
        sac.update(replay.sample(64, g))
        last = float(bc.update(replay.sample(64, g))["vae_loss"])
    assert last < first
    obs = torch.randn(7, 4)
    for act in (sac.act(obs), sac.act(obs, deterministic=True), bc.act(obs)):
        assert act.shape == (7, 2) and act.abs().max() <= 1


# -- datasets ----------------------------------------------------------------------------------
def test_snapshots_medium_is_the_first_at_a_third_of_the_best():
    assert pick_snapshots([10, 200, 400, 900, 700], 1 / 3) == (2, 3)
    assert pick_snapshots([-300, -100, 50, 20], 1 / 3) == (1, 2)  # measured from the worst, for negative returns


def _episodes():
    """Three episodes: one ends terminal, one by a timeout, one cut by the end of the data."""
    rows = {"observations": [], "actions": [], "rewards": [], "next_observations": [], "terminals": [], "timeouts": []}
    for episode, (length, end) in enumerate([(3, "terminal"), (4, "timeout"), (2, None)]):
        for t in range(length):
            rows["observations"].append([episode, t, 0.0])
            rows["next_observations"].append([episode, t + 1, 0.0])
            rows["actions"].append([0.1 * t, -0.1 * t])
            rows["rewards"].append(float(t))
            rows["terminals"].append(end == "terminal" and t == length - 1)
            rows["timeouts"].append(end == "timeout" and t == length - 1)
    return {k: np.asarray(v, dtype=np.float32) for k, v in rows.items()}


def test_a_d4rl_file_round_trips_with_its_attributes(tmp_path):
    data = _episodes()
    path = tmp_path / "hopper-medium-v2.hdf5"
    offline_data.write_d4rl(path, data, {"env_id": "Hopper-v5", "reference_random_return": -1.5})
    read, attrs = offline_data.read(path)
    for key in offline_data.FIELDS:
        assert np.array_equal(read[key], data[key]), key
    assert attrs == {"env_id": "Hopper-v5", "reference_random_return": -1.5}
    assert offline_data.episode_returns(read).tolist() == [3.0, 6.0]  # the cut episode is not complete


def test_a_d4rl_file_without_next_observations_drops_the_steps_that_end_a_timeout(tmp_path):
    """d4rl's qlearning_dataset: s' is the next row, and a row whose episode timed out has no s'."""
    data = _episodes()
    path = tmp_path / "v0.hdf5"
    with h5py.File(path, "w") as f:
        for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
            f.create_dataset(key, data=data[key])
    read, _ = offline_data.read(path)
    assert len(read["rewards"]) == 9 - 2  # the timeout row and the last row go
    assert np.array_equal(read["next_observations"][0], data["observations"][1])
    assert read["terminals"].sum() == 1 and read["timeouts"].sum() == 0


def test_a_v0_file_without_timeouts_still_reads(tmp_path):
    data = _episodes()
    path = tmp_path / "old.hdf5"
    with h5py.File(path, "w") as f:
        for key in ("observations", "actions", "rewards", "terminals", "next_observations"):
            f.create_dataset(key, data=data[key])
    read, _ = offline_data.read(path)
    assert len(read["rewards"]) == 9 and read["timeouts"].sum() == 0


@pytest.mark.parametrize("drop", ["actions", "rewards", "observations"])
def test_a_d4rl_file_missing_a_key_is_one_error_naming_file_and_key(tmp_path, drop):
    data = _episodes()
    path = tmp_path / "broken.hdf5"
    with h5py.File(path, "w") as f:
        for key in offline_data.FIELDS:
            if key != drop:
                f.create_dataset(key, data=data[key])
    with pytest.raises(OfflineDataError, match=f"broken.hdf5.*'{drop}'"):
        offline_data.read(path)


def test_a_truncated_file_is_one_error_naming_the_file(tmp_path):
    path = tmp_path / "cut.hdf5"
    offline_data.write_d4rl(path, _episodes(), {})
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(OfflineDataError, match="cut.hdf5"):
        offline_data.read(path)


def test_a_minari_dataset_written_by_minari_reads_as_the_same_transitions(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    import gymnasium as gym
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env = minari.DataCollector(gym.make("Pendulum-v1", max_episode_steps=5))
    recorded = []
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            action = env.action_space.sample()
            next_obs, reward, terminated, truncated, _ = env.step(action)
            recorded.append((obs, action, reward, next_obs, truncated))
            obs, done = next_obs, terminated or truncated
    env.create_dataset("pendulum/test-v0", algorithm_name="random", author="tests", author_email="t@t",
                       code_permalink="https://example.org", eval_env="Pendulum-v1")
    data, metadata = offline_data.read(tmp_path / "pendulum" / "test-v0")
    assert len(data["rewards"]) == 15 and data["timeouts"].sum() == 3 and data["terminals"].sum() == 0
    for i, (obs, action, reward, next_obs, _) in enumerate(recorded):
        assert np.allclose(data["observations"][i], obs) and np.allclose(data["next_observations"][i], next_obs)
        assert np.allclose(data["actions"][i], action) and data["rewards"][i] == pytest.approx(reward, rel=1e-6)
    assert metadata["total_steps"] == 15


def test_a_minari_folder_without_metadata_is_one_error(tmp_path):
    (tmp_path / "ds" / "data").mkdir(parents=True)
    with pytest.raises(OfflineDataError, match="metadata.json"):
        offline_data.read(tmp_path / "ds")


def test_a_bad_dataset_path_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["run", "bear", "--tier", "smoke", "--point", "env=hopper,dataset=random,algo=bc", "--quiet",
                 "--set", f"dataset_path={tmp_path / 'nothing.hdf5'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nothing.hdf5" in err[0]
    assert not (tmp_path / "results").exists()


# -- the experiment ----------------------------------------------------------------------------
def test_the_data_points_run_once_for_every_seed_and_ignore_the_learners_settings():
    from common.sweep import plan
    jobs = plan(["bear"], "cpu", [0, 1, 2], [], [])
    data_jobs = [j for j in jobs if j.point.startswith("stage=data")]
    assert sorted((j.point, j.seed) for j in data_jobs) == [("stage=data,env=halfcheetah", 0), ("stage=data,env=hopper", 0)]
    data_point = next(p for p in runner.POINTS["cpu"] if p.name == "stage=data,env=hopper")
    assert resolve(runner, "cpu", {"steps": 5, "bear.sigma": 3.0}, data_point) == resolve(runner, "cpu", {}, data_point)
    assert set(resolve(runner, "cpu", {}, data_point)) == set(runner.DATA_KEYS)


@pytest.mark.parametrize("setting,key", [("algo=td3", "algo"), ("dataset=mixed", "dataset"), ("bear.kernel=rbf", "bear.kernel"),
                                         ("data.medium_fraction=2", "data.medium_fraction"), ("env=pong", "env")])
def test_validate_names_what_was_wrong_and_what_is_valid(setting, key):
    from common.config import parse_sets
    from common.papers import UsageError
    with pytest.raises(UsageError, match=key.replace(".", r"\.")):
        runner.validate(resolve(runner, "smoke", parse_sets(runner, [setting])))


# -- resuming ------------------------------------------------------------------------------------
def _data_cfg():
    data_point = next(p for p in runner.POINTS["smoke"] if p.name == "stage=data,env=hopper")
    return resolve(runner, "smoke", {}, data_point)


def test_a_killed_behaviour_run_resumes_exactly_where_it_stopped(tmp_path):
    """Killed after its first checkpoint (the first episode end after the first evaluation), resumed:
    the same snapshots, evaluations and replay as an uninterrupted run."""
    from reproductions.bear.behaviour import train_behaviour
    from tests.resume import kill_then_resume
    cfg = _data_cfg()

    def run(cfg, ctx):
        out = train_behaviour(cfg["envs"][cfg["env"]], cfg["data"], ctx.seed, ctx)
        return {"returns": out["state"]["returns"], "replay": {k: v.sum().item() for k, v in out["replay"].items()},
                "episodes": out["state"]["episodes"]}

    reference, resumed, ctx, ckpt = kill_then_resume("bear", run, cfg, tmp_path, kill_at_log_call=30)
    evaluations_before_kill = [r for r in ctx.curves if "behaviour_eval_return" in r]
    assert (ckpt / "behaviour.pt").exists() and evaluations_before_kill
    assert resumed == reference


def test_a_killed_training_run_resumes_to_the_same_metrics(tmp_path):
    from common.context import RunContext
    from tests.resume import kill_then_resume
    cfg = _data_cfg()
    ctx = RunContext(paper="bear", tier="smoke", seed=0, device=torch.device("cpu"), checkpoint_dir=tmp_path / "data",
                     artifact_prefix=tmp_path / "art", show_progress=False)
    files = {}
    ctx.publisher = lambda name, value: files.setdefault(name, value) and {}
    runner.run(cfg, ctx)
    train_point = next(p for p in runner.POINTS["smoke"] if p.name == "env=hopper,dataset=random,algo=bear")
    train_cfg = resolve(runner, "smoke", {}, train_point)

    def run(cfg, ctx):
        ctx.provider = lambda name: (files[name], {})
        return runner.run(cfg, ctx)

    reference, resumed, _, ckpt = kill_then_resume("bear", run, train_cfg, tmp_path / "train", kill_at_log_call=8)
    assert (ckpt / "train.pt").exists()
    assert resumed == reference


def test_repro_run_makes_the_datasets_once_whatever_the_seed(tmp_path, monkeypatch):
    """`repro run bear --tier smoke --seed 1` runs every algorithm point with seed 1 and the data point
    only as their producer, with its fixed seed 0 (a data point with seed 1 would be data nobody reads)."""
    import json
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["run", "bear", "--tier", "smoke", "--seed", "1", "--quiet"]) == 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "bear" / "smoke").glob("*.json")]
    assert sorted((r["point"].startswith("stage=data"), r["seed"]) for r in records) == \
        [(False, 1)] * 4 + [(True, 0)]
    with_mode = sorted(r["config"]["algo"] for r in records if "mode_return" in r["metrics"])
    assert with_mode == ["bear", "bear_kl"]  # the acting-rule diagnostic is BEAR's alone
    trained = [r for r in records if not r["point"].startswith("stage=data")]
    assert all("return" in r["metrics"] and "return" not in r["undefined"] for r in trained)


def test_recorded_transitions_chain_within_an_episode():
    """A recorded stream is a chain: s'_t = s_{t+1} inside an episode, and every s_t is the state the
    action was taken in (a stored view of the shared observation buffer would turn every s_t into the
    stream's last state; that bug corrupted the first cpu datasets)."""
    from common import control
    rng = np.random.default_rng(0)
    played = control.play("Hopper-v5", lambda obs: rng.uniform(-1, 1, size=(len(obs), 3)), seed=0, copies=2,
                          steps=300, record=True)
    t = played.transitions
    ends = (t["terminals"] > 0) | (t["timeouts"] > 0)
    inside = np.flatnonzero(~ends[:-1])
    assert len(inside) > 250
    assert np.array_equal(t["observations"][inside + 1], t["next_observations"][inside])
    assert not np.array_equal(t["observations"][0], t["observations"][1])
    assert len(np.unique(t["observations"], axis=0)) > 290
