"""PEARL's task families against the official definitions (katerakelly/oyster rlkit/envs, configs;
rand_param_envs): the sparse point robot's goals, order, split and rewards by hand; the cheetah's
observation and reward by hand; every MuJoCo family's interface, seeding, task draws and `done`; and
the lockstep rollout's masks, shapes and single batched policy call per step."""
import gymnasium as gym
import numpy as np
import pytest

from common.papers import UsageError
from reproductions.pearl import tasks as T

MUJOCO_OBS_DIMS = {"cheetah_vel": 20, "cheetah_dir": 20, "ant_dir": 27, "ant_goal": 113, "humanoid_dir": 376,
                   "walker_params": 17, "hopper_params": 11}


# -- the sparse point robot (point_robot.py SparsePointEnv) -------------------------------------
def test_point_sparse_goals_are_the_official_half_circle_in_the_official_order_and_split():
    np.random.seed(0)
    global_state = np.random.get_state()[1].copy()
    goals = np.array(T.FAMILIES["point_sparse"].tasks())
    np.testing.assert_array_equal(np.random.get_state()[1], global_state)  # the global RNG is untouched

    assert goals.shape == (100, 2)
    np.testing.assert_allclose(np.linalg.norm(goals, axis=1), 1.0)
    angles = np.arctan2(goals[:, 1], goals[:, 0])
    np.testing.assert_allclose(np.sort(angles), np.linspace(0, np.pi, 100), atol=1e-12)  # each angle once
    # the official shuffle: np.random.seed(1337); np.random.shuffle(goals), re-implemented
    expected = np.stack([np.cos(np.linspace(0, np.pi, 100)), np.sin(np.linspace(0, np.pi, 100))], axis=1)
    np.random.RandomState(1337).shuffle(expected)
    np.testing.assert_array_equal(goals, expected)
    # the first three angles printed by the official snippet itself (global np.random.seed(1337) after
    # PointEnv's 200 draws, then np.random.shuffle): linspace indices 2, 48, 86 = 2pi/99, 48pi/99, 86pi/99
    np.testing.assert_allclose(angles[:3], [0.06346652, 1.52319644, 2.72906028], atol=1e-8)

    train, test = T.split("point_sparse")
    assert len(train) == 80 and len(test) == 20
    np.testing.assert_array_equal(np.array(train + test), goals)


def test_point_sparse_rewards_by_hand_and_actions_rescaled_then_clipped_to_a_tenth():
    family = T.FAMILIES["point_sparse"]
    near = family.make([0.2, 0.0])  # one step of +0.1 in x leaves it 0.1 from the goal
    far = family.make([0.6, 0.0])   # ... and 0.5 from this one
    for env in (near, far):
        obs, _ = env.reset(seed=0)
        np.testing.assert_array_equal(obs, [0.0, 0.0])  # starts at the origin
        assert env.action_space.low.tolist() == [-1, -1] and env.action_space.high.tolist() == [1, 1]
    obs, reward, terminated, truncated, info = near.step(np.array([1.0, 0.0]))
    np.testing.assert_allclose(obs, [0.1, 0.0], atol=1e-6)
    assert reward == pytest.approx(-0.1, abs=1e-6) and info["sparse_reward"] == pytest.approx(0.9, abs=1e-6)
    assert not terminated and not truncated
    _, reward, _, _, info = far.step(np.array([1.0, 0.0]))
    assert reward == pytest.approx(-0.5, abs=1e-6) and info["sparse_reward"] == 0.0
    # a policy action beyond the box moves by 0.1 at most; 0 does not move
    obs, *_ = far.step(np.array([7.0, -3.0]))
    np.testing.assert_allclose(obs, [0.2, -0.1], atol=1e-6)
    obs, *_ = far.step(np.zeros(2))
    np.testing.assert_allclose(obs, [0.2, -0.1], atol=1e-6)
    assert obs.dtype == np.float32


def test_point_robot_dense_goals_and_a_seeded_random_start():
    family = T.FAMILIES["point"]
    goals = np.array(family.tasks())
    rng = np.random.RandomState(1337)  # PointEnv: [[uniform(-1, 1), uniform(-1, 1)] for _ in range(n)]
    np.testing.assert_array_equal(goals, [[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(100)])
    env = family.make(goals[0])
    a, b, c = env.reset(seed=5)[0], env.reset(seed=5)[0], env.reset(seed=6)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and np.all(np.abs(a) <= 1)
    _, reward, _, _, info = env.step(np.zeros(2))
    assert "sparse_reward" not in info
    assert reward == pytest.approx(-np.linalg.norm(c - goals[0]), abs=1e-6)  # the last reset's start


# -- the MuJoCo families ---------------------------------------------------------------------------
def test_cheetah_vel_tasks_observation_and_reward_by_hand():
    family = T.FAMILIES["cheetah_vel"]
    velocities = np.array(family.tasks())
    # the official np.random.seed(1337); np.random.uniform(0.0, 3.0, size=(130,)), first values printed once
    np.testing.assert_allclose(velocities[:3], [0.78607403, 0.47605192, 0.83437956], atol=1e-8)
    assert len(velocities) == 130 and velocities.min() >= 0 and velocities.max() < 3 and velocities.max() > 2
    env = family.make(velocities[0])
    obs, _ = env.reset(seed=0)
    data = env.unwrapped.data
    assert obs.shape == (20,) and obs.dtype == np.float32
    np.testing.assert_allclose(obs, np.concatenate([data.qpos[1:], data.qvel, data.body("torso").xpos]), rtol=1e-6)
    action = np.array([0.9, -0.5, 0.3, 1.0, -1.0, 0.2])
    for _ in range(3):
        x_before = float(data.qpos[0])
        _, reward, terminated, _, _ = env.step(action)
        x_velocity = (float(data.qpos[0]) - x_before) / 0.05  # timestep 0.01 x frame_skip 5
        assert reward == pytest.approx(-abs(x_velocity - velocities[0]) - 0.05 * np.sum(action ** 2), rel=1e-9)
        assert not terminated


@pytest.mark.parametrize("name", list(MUJOCO_OBS_DIMS))
def test_each_mujoco_family_makes_resets_seeded_and_steps_in_the_unit_box(name):
    family = T.FAMILIES[name]
    tasks = family.tasks()
    train, test = T.split(family)
    assert len(tasks) == family.n_tasks and (len(train), len(test)) == (family.n_train, family.n_test)
    env = family.make(tasks[0])
    assert env.action_space.shape == env.unwrapped.action_space.shape
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    first, _ = env.reset(seed=3)
    np.testing.assert_array_equal(first, env.reset(seed=3)[0])
    assert not np.array_equal(first, env.reset(seed=4)[0])
    assert first.shape == (MUJOCO_OBS_DIMS[name],) == env.observation_space.shape and first.dtype == np.float32
    actions = np.random.default_rng(0).uniform(-1, 1, size=(3, env.action_space.shape[0]))
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        assert obs.shape == first.shape and np.all(np.isfinite(obs)) and np.isfinite(reward)
        assert not terminated and not truncated  # three steps from the start do not fall


def test_task_draws_follow_the_official_distributions():
    assert T.FAMILIES["cheetah_dir"].tasks() == [-1.0, 1.0]
    train, test = T.split("cheetah_dir")
    assert train == test == [-1.0, 1.0]  # 2/2 tasks: the test tasks are the train tasks (launch_experiment.py)
    ant_dir = T.FAMILIES["ant_dir"].tasks()  # forward_backward is not set by configs/ant-dir.json
    assert len(ant_dir) == 2 and ant_dir[0] != ant_dir[1] and all(0 <= a < 2 * np.pi for a in ant_dir)
    goals = np.array(T.FAMILIES["ant_goal"].tasks())
    assert goals.shape == (180, 2) and np.linalg.norm(goals, axis=1).max() <= 3
    assert np.mean(np.linalg.norm(goals, axis=1) < 1.5) == pytest.approx(0.25, abs=0.1)  # uniform on the disc
    humanoid = np.array(T.FAMILIES["humanoid_dir"].tasks())
    assert len(np.unique(humanoid)) == 130 and humanoid.min() >= 0 and humanoid.max() < 2 * np.pi
    with pytest.raises(UsageError, match="unknown task family 'cheetah'.*cheetah_vel"):
        T.split("cheetah")


def test_walker_params_change_the_model_and_its_dynamics():
    family = T.FAMILIES["walker_params"]
    tasks = family.tasks()
    defaults = T._default_params("walker2d.xml")
    assert not np.array_equal(tasks[0]["body_mass"], tasks[1]["body_mass"])
    for name, base in (("body_mass", 1.5), ("body_inertia", 1.5), ("dof_damping", 1.3), ("geom_friction", 1.5)):
        ratio = tasks[1][name][defaults[name] > 0] / defaults[name][defaults[name] > 0]
        assert np.all(ratio >= base ** -3) and np.all(ratio <= base ** 3) and len(np.unique(ratio)) == ratio.size
    envs = [family.make(task) for task in tasks[:2]]
    model = envs[1].unwrapped.model
    np.testing.assert_array_equal(model.body_mass, tasks[1]["body_mass"])
    np.testing.assert_array_equal(model.geom_friction, tasks[1]["geom_friction"])
    assert not np.allclose(model.body_mass[1:], defaults["body_mass"][1:])
    assert envs[1].unwrapped.dt == pytest.approx(0.016)  # rand_param_envs' XML timestep 0.004 x frame_skip 4
    after = []
    for env in envs:
        env.reset(seed=0)
        for _ in range(5):
            obs, *_ = env.step(np.full(6, 0.5))
        after.append(obs)
    assert not np.allclose(after[0], after[1], atol=1e-4)  # same start, same actions, other physics


@pytest.mark.parametrize("name,index,value,ends", [
    ("ant_dir", 2, 1.5, True),        # torso z above 1
    ("ant_goal", 2, 1.5, False),      # ant_goal is never done
    ("humanoid_dir", 2, 0.6, True),   # z below 1
    ("walker_params", 1, 0.5, True),  # height below 0.8
    ("hopper_params", 2, 0.5, True),  # |angle| above 0.2
    ("cheetah_vel", 2, 3.0, False),   # never done
])
def test_termination_is_the_official_done(name, index, value, ends):
    family = T.FAMILIES[name]
    env = family.make(family.tasks()[0])
    env.reset(seed=0)
    sim = env.unwrapped
    qpos = sim.data.qpos.copy()
    qpos[index] = value
    sim.set_state(qpos, sim.data.qvel.copy())
    _, _, terminated, truncated, _ = env.step(np.zeros(env.action_space.shape))
    assert terminated is ends and truncated is False


def test_humanoid_has_gym_0_12_left_hip_range():
    family = T.FAMILIES["humanoid_dir"]
    model = family.make(family.tasks()[0]).unwrapped.model
    np.testing.assert_allclose(np.rad2deg(model.jnt_range[model.joint("left_hip_y").id]), [-120, 20])


# -- the lockstep rollout --------------------------------------------------------------------------
class _Countdown(gym.Env):
    """obs = (its id, steps taken); reward = steps taken; sparse reward 1 at step 2; done after `end` steps."""

    def __init__(self, ident: int, end: int | None):
        self.ident, self.end, self.t, self.seeds = ident, end, 0, []
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        self.seeds.append(seed)
        return np.array([self.ident, 0], np.float32), {}

    def step(self, action):
        self.t += 1
        info = {"sparse_reward": float(self.t == 2)}
        return np.array([self.ident, self.t], np.float32), float(self.t), self.t == self.end, False, info


def test_rollout_masks_a_terminated_env_and_calls_the_policy_once_per_step():
    envs = [_Countdown(0, end=3), _Countdown(1, end=None)]
    calls = []

    def policy(obs):
        calls.append(obs.copy())
        return obs[:, :1] * 0.1  # row i is always env i

    path = T.rollout(envs, policy, horizon=5, seeds=[10, 11])
    assert len(calls) == 5 and all(c.shape == (2, 2) for c in calls)
    assert [e.seeds for e in envs] == [[10], [11]]
    np.testing.assert_array_equal(calls[4][:, 0], [0, 1])
    np.testing.assert_array_equal(calls[4][0], [0, 3])  # a finished env shows its last observation
    for key, shape in (("observations", (2, 5, 2)), ("actions", (2, 5, 1)), ("next_observations", (2, 5, 2)),
                       ("rewards", (2, 5)), ("sparse_rewards", (2, 5)), ("terminals", (2, 5)), ("valid", (2, 5))):
        assert path[key].shape == shape, key
    np.testing.assert_array_equal(path["valid"], [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(path["terminals"], [[0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(path["rewards"], [[1, 2, 3, 0, 0], [1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(path["returns"], [6, 15])
    np.testing.assert_array_equal(path["sparse_returns"], [1, 1])
    np.testing.assert_array_equal(path["success"], [True, True])
    np.testing.assert_array_equal(path["observations"][1, :, 1], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(path["next_observations"][1, :, 1], [1, 2, 3, 4, 5])
    np.testing.assert_allclose(path["actions"][1, :, 0], 0.1)
    assert not path["observations"][0, 3:].any() and not path["actions"][0, 3:].any()

    calls.clear()
    path = T.rollout([_Countdown(0, end=3), _Countdown(1, end=2)], policy, horizon=6, seeds=None)
    assert len(calls) == 3  # no call once every env has ended
    np.testing.assert_array_equal(path["valid"].sum(1), [3, 2])
    with pytest.raises(ValueError, match="expected \\(2, 1\\)"):
        T.rollout(envs, lambda obs: np.zeros((2, 3)), horizon=2, seeds=None)
    with pytest.raises(ValueError, match="appears twice"):  # one env stepped twice per step would mix trajectories
        T.rollout([envs[0], envs[0]], policy, horizon=2, seeds=None)


def test_rollout_on_point_sparse_reports_success_and_sparse_returns():
    family = T.FAMILIES["point_sparse"]
    goals = np.array(family.tasks()[:3])
    envs = [family.make(g) for g in goals]

    def go_to_goal(obs):
        return np.clip((goals - obs) / 0.1, -1, 1)

    path = T.rollout(envs, go_to_goal, family.horizon, seeds=[0, 1, 2])
    assert path["success"].all() and path["valid"].all()
    np.testing.assert_allclose(path["sparse_returns"], path["sparse_rewards"].sum(1), rtol=1e-6)
    assert np.all(path["sparse_returns"] > 5) and np.all(path["returns"] > -10)
    still = T.rollout(envs, lambda obs: np.zeros((3, 2)), family.horizon, seeds=None)
    assert not still["success"].any() and not still["sparse_returns"].any()
    np.testing.assert_allclose(still["returns"], -20.0, rtol=1e-6)  # 20 steps at distance 1
