"""PEARL's task families (Rakelly et al. 2019, §5 and appendix), defined as the official code defines
them (katerakelly/oyster `rlkit/envs/*.py`, `configs/*.json`; Walker and Hopper from its submodule
dennisl88/rand_param_envs), on Gymnasium 1.x v5 MuJoCo environments and the `mujoco` package.

A family draws all its tasks at once (`Family.tasks()`: the config's env_params n_tasks, as the
official env constructor does: n_train + n_test, but 2 for the 2/2 families) and `split` cuts them as
`launch_experiment.py`: train = tasks[:n_train], test = tasks[-n_test:] (for the 2/2 families the
test tasks *are* the train tasks). `Family.make(task)` is one environment for one task, with the
official observation, reward and `done`:

- actions in [-1, 1]: `NormalizedBoxActions` rescales them to the env's box and clips, as rlkit's
  `NormalizedBoxEnv`;
- observations float32; `info["sparse_reward"]` on every step of a sparse family;
- `terminated` only where the official `done` is True (ant_dir, humanoid_dir, walker/hopper falls);
  no time limit inside the env: the caller runs `horizon` steps (`rollout`), as the official sampler.

The MuJoCo families keep from the gymnasium v5 env its XML, its simulator step (`mj_step`, then
`mj_rnePostConstraint` so that contact forces exist, as in the MuJoCo 1.50 the official runs used:
mujoco-py 1.50.1.63, gym 0.12.1, docker/environment.yml) and its seeded reset noise (the same
distributions as the official reset_model); the observation, reward and termination are recomputed
here from `data`, term by term as the official `step`.

Seeding: the official constructors draw tasks from numpy's global RNG, after `np.random.seed(1337)`
for the point robots and cheetah_vel, unseeded for the others. Here every family draws from its own
`np.random.RandomState(1337)` (never the global RNG), in the official order of draws: the seeded
families get the official tasks exactly, the unseeded ones a fixed draw of the same distribution.
Episodes are seeded by `env.reset(seed=...)` (official: gym's per-env np_random, unseeded).

What matches the official definitions, family by family ("=" exact, "≈" differs as said):
- point_sparse (SparsePointEnv): = goals (100 angles in [0, pi] on the unit circle, the official
  shuffle), start (0, 0), dynamics, dense and sparse rewards; pure numpy.
- point (PointEnv): = goals U([-1, 1]^2) (seed 1337, scalar draws x then y); ≈ start U([-1, 1]^2)
  from the env's seeded np_random instead of the global RNG.
- cheetah_vel: = v_goal ~ U(0, 3) seed 1337 (the docstring's [0, 2] is wrong), reward, 20-d obs;
  ≈ MuJoCo 4 instead of 1.50 (same half_cheetah.xml).
- cheetah_dir: = tasks {-1, +1}, reward, obs; ≈ MuJoCo version only.
- ant_dir: = reward (xy torso velocity . direction - 0.5|a|^2 - contact + 1), done z outside [0.2, 1],
  27-d obs; ≈ the config does not set forward_backward, so the official tasks are 2 directions
  theta ~ U(0, 2 pi) (unseeded there, RandomState(1337) here), not the fwd/back pair {0, pi} the
  paper's name "Ant-Fwd-Back" implies; gymnasium's ant.xml = oyster's ant.xml minus two visual sites.
- ant_goal: = goals uniform on the disc of radius 3, reward (-L1 distance - 0.1|a|^2 - contact),
  never done, 113-d obs (qpos, qvel, clipped cfrc_ext of all 14 bodies); ≈ unseeded there; the
  official README says this experiment "is currently not reproduced correctly".
- humanoid_dir: = reward (0.25 COM displacement . direction / opt.timestep, i.e. 1.25 x the COM
  velocity, minus 0.1|ctrl|^2, minus min(5e-7|cfrc_ext|^2, 10), plus 5), done z outside [1, 2],
  376-d obs (gymnasium's v5 obs drops the world body: 348); = gym 0.12.1's left_hip_y range
  [-120, 20] deg restored (gymnasium's humanoid.xml has -110); ≈ unseeded there.
- walker_params / hopper_params: = the rand_param_envs draws (per task, in its order: body_mass,
  body_inertia x 1.5^U(-3,3), dof_damping x 1.3^U(-3,3), geom_friction x 1.5^U(-3,3), elementwise),
  reward (dx/dt + 1 - 1e-3|a|^2), done, obs, frame_skip 4 and the XML's timestep 0.004 (dt 0.016;
  gymnasium's XMLs say 0.002); ≈ MuJoCo 1.31 there: gymnasium's local-coordinate conversion of the
  same XML (walker2d.xml with feet friction 0.9/1.9, not walker2d_v5.xml), defaults as MuJoCo 4
  compiles them, and a different contact solver; unseeded there.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from common.papers import UsageError

SEED = 1337  # the official `np.random.seed(1337)` of point_robot.py and half_cheetah_vel.py


# -- actions -------------------------------------------------------------------------------------
class NormalizedBoxActions(gym.ActionWrapper):
    """Policy actions in [-1, 1], rescaled to the env's box and clipped to it (wrappers.py
    `NormalizedBoxEnv.step`: lb + (a + 1) / 2 (ub - lb), then np.clip(lb, ub))."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.low = env.action_space.low.astype(np.float64)
        self.high = env.action_space.high.astype(np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32)

    def action(self, action):
        scaled = self.low + (np.asarray(action, dtype=np.float64) + 1.0) * 0.5 * (self.high - self.low)
        return np.clip(scaled, self.low, self.high)


# -- the point robots (point_robot.py) -----------------------------------------------------------
class PointRobot(gym.Env):
    """A point on the plane, s <- s + a with a in [-0.1, 0.1]^2, dense reward -|s - goal|_2, never done.

    sparse (SparsePointEnv): starts at (0, 0); info["sparse_reward"] = 1 - |s - goal| within
    `goal_radius` of the goal, else 0 (`sparsify_rewards`, then +1 inside). Otherwise (PointEnv):
    starts uniform on [-1, 1]^2 at every reset.
    """

    def __init__(self, goal, sparse: bool, goal_radius: float = 0.2):
        self.goal = np.asarray(goal, dtype=np.float64)
        if self.goal.shape != (2,):
            raise ValueError(f"a point robot task is a goal of shape (2,), got shape {self.goal.shape}")
        self.sparse, self.goal_radius = sparse, goal_radius
        self.action_space = spaces.Box(-0.1, 0.1, (2,), np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.state = np.zeros(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = np.zeros(2) if self.sparse else self.np_random.uniform(-1.0, 1.0, size=2)
        return self.state.astype(np.float32), {}

    def step(self, action):
        self.state = self.state + action  # the official step does not clip: NormalizedBoxEnv did
        reward = -float(np.linalg.norm(self.state - self.goal))
        info = {}
        if self.sparse:
            info["sparse_reward"] = 1.0 + reward if reward >= -self.goal_radius else 0.0
        return self.state.astype(np.float32), reward, False, False, info


# -- the MuJoCo families -------------------------------------------------------------------------
class _MujocoTask(gym.Wrapper):
    """A gymnasium v5 MuJoCo env used for its model, simulator step and seeded reset noise; the
    subclass gives the official observation (`observe`) and step (reward, done, info)."""

    def __init__(self, env: gym.Env, task):
        super().__init__(env)
        self.task = task
        self.sim = env.unwrapped
        self.model, self.data = self.sim.model, self.sim.data
        self.observation_space = spaces.Box(-np.inf, np.inf, self.observe().shape, np.float32)

    @property
    def dt(self) -> float:
        return self.sim.dt  # opt.timestep * frame_skip

    def simulate(self, action) -> None:
        self.sim.do_simulation(action, self.sim.frame_skip)

    def reset(self, *, seed=None, options=None):
        _, info = self.env.reset(seed=seed, options=options)
        mujoco.mj_rnePostConstraint(self.model, self.data)  # cfrc_ext of the reset state too (MuJoCo >= 2 computes it only on request)
        return self.observe(), info

    def observe(self) -> np.ndarray:
        raise NotImplementedError


class HalfCheetahTask(_MujocoTask):
    """half_cheetah.py: obs = qpos[1:], qvel, torso position (get_body_com = xpos) -> 20-d.

    task: a target velocity (half_cheetah_vel.py: r = -|v_x - v_goal| - 0.05|a|^2) when `velocity`,
    else a direction in {-1, +1} (half_cheetah_dir.py: r = direction v_x - 0.05|a|^2). Never done.
    """

    def __init__(self, env, task, velocity: bool):
        self.velocity = velocity
        super().__init__(env, float(task))

    def observe(self):
        d = self.data
        return np.concatenate([d.qpos[1:], d.qvel, d.body("torso").xpos]).astype(np.float32)

    def step(self, action):
        x_before = float(self.data.qpos[0])
        self.simulate(action)
        x_velocity = (float(self.data.qpos[0]) - x_before) / self.dt
        forward = -abs(x_velocity - self.task) if self.velocity else self.task * x_velocity
        ctrl_cost = 0.5 * 1e-1 * float(np.sum(np.square(action)))
        info = dict(x_velocity=x_velocity, reward_forward=forward, reward_ctrl=-ctrl_cost)
        return self.observe(), forward - ctrl_cost, False, False, info


def _ant_contact_cost(data) -> float:
    return 0.5 * 1e-3 * float(np.sum(np.square(np.clip(data.cfrc_ext, -1, 1))))  # ant_dir.py / ant_goal.py


class AntDirTask(_MujocoTask):
    """ant_dir.py: task = an angle theta; r = v_xy . (cos theta, sin theta) - 0.5|a|^2 - contact + 1,
    done when the state is not finite or the torso z leaves [0.2, 1]; obs = qpos[2:], qvel (ant.py) -> 27-d."""

    def observe(self):
        return np.concatenate([self.data.qpos[2:], self.data.qvel]).astype(np.float32)

    def step(self, action):
        xy_before = self.data.body("torso").xpos[:2].copy()
        direction = np.array([np.cos(self.task), np.sin(self.task)])
        self.simulate(action)
        xy_velocity = (self.data.body("torso").xpos[:2] - xy_before) / self.dt
        forward = float(xy_velocity @ direction)
        ctrl_cost = 0.5 * float(np.square(action).sum())
        contact_cost = _ant_contact_cost(self.data)
        reward = forward - ctrl_cost - contact_cost + 1.0
        state = np.concatenate([self.data.qpos, self.data.qvel])
        terminated = not (np.isfinite(state).all() and 0.2 <= state[2] <= 1.0)
        info = dict(reward_forward=forward, reward_ctrl=-ctrl_cost, reward_contact=-contact_cost, reward_survive=1.0)
        return self.observe(), reward, terminated, False, info


class AntGoalTask(_MujocoTask):
    """ant_goal.py: task = a goal (2,); r = -|xy_torso - goal|_1 - 0.1|a|^2 - contact, never done;
    obs = qpos, qvel, clip(cfrc_ext, -1, 1) of every body (the world's included) -> 113-d."""

    def observe(self):
        d = self.data
        return np.concatenate([d.qpos, d.qvel, np.clip(d.cfrc_ext, -1, 1).ravel()]).astype(np.float32)

    def step(self, action):
        self.simulate(action)
        goal_reward = -float(np.sum(np.abs(self.data.body("torso").xpos[:2] - self.task)))
        ctrl_cost = 0.1 * float(np.square(action).sum())
        contact_cost = _ant_contact_cost(self.data)
        info = dict(goal_forward=goal_reward, reward_ctrl=-ctrl_cost, reward_contact=-contact_cost)
        return self.observe(), goal_reward - ctrl_cost - contact_cost, False, False, info


class HumanoidDirTask(_MujocoTask):
    """humanoid_dir.py: task = an angle theta; r = 0.25 (COM_xy' - COM_xy) . (cos theta, sin theta) /
    opt.timestep - 0.1|ctrl|^2 - min(5e-7|cfrc_ext|^2, 10) + 5 (the official divides by the MuJoCo
    timestep, not dt: 5x the velocity), done when z leaves [1, 2]; obs = qpos[2:], qvel, cinert,
    cvel, qfrc_actuator, cfrc_ext, all bodies -> 376-d."""

    def observe(self):
        d = self.data
        return np.concatenate([d.qpos[2:], d.qvel, d.cinert.ravel(), d.cvel.ravel(), d.qfrc_actuator,
                               d.cfrc_ext.ravel()]).astype(np.float32)

    def mass_center(self) -> np.ndarray:
        mass = self.model.body_mass[:, None]
        return (mass * self.data.xipos).sum(0) / mass.sum()

    def step(self, action):
        com_before = self.mass_center()[:2]
        self.simulate(action)
        direction = np.array([np.cos(self.task), np.sin(self.task)])
        lin_vel_cost = 0.25 * float(direction @ (self.mass_center()[:2] - com_before)) / self.model.opt.timestep
        quad_ctrl_cost = 0.1 * float(np.square(self.data.ctrl).sum())
        quad_impact_cost = min(0.5e-6 * float(np.square(self.data.cfrc_ext).sum()), 10.0)
        reward = lin_vel_cost - quad_ctrl_cost - quad_impact_cost + 5.0
        terminated = bool(self.data.qpos[2] < 1.0 or self.data.qpos[2] > 2.0)
        info = dict(reward_linvel=lin_vel_cost, reward_quadctrl=-quad_ctrl_cost, reward_alive=5.0,
                    reward_impact=-quad_impact_cost)
        return self.observe(), reward, terminated, False, info


RAND_PARAMS = ("body_mass", "body_inertia", "dof_damping", "geom_friction")  # base.py's order of draws


class RandParamsTask(_MujocoTask):
    """rand_param_envs walker2d_rand_params.py / hopper_rand_params.py: task = the model's body_mass,
    body_inertia, dof_damping, geom_friction (`set_task`); r = dx/dt + 1 - 1e-3|a|^2; obs = qpos[1:],
    clip(qvel, -10, 10). Walker done unless 0.8 < z < 2 and -1 < angle < 1; Hopper done unless the
    state is finite, |state[2:]| < 100, z > 0.7 and |angle| < 0.2."""

    def __init__(self, env, task, hopper: bool):
        self.hopper = hopper
        super().__init__(env, task)
        self.model.opt.timestep = 0.004  # rand_param_envs' walker2d.xml and hopper.xml (gymnasium's: 0.002)
        for name in RAND_PARAMS:
            target = getattr(self.model, name)
            value = np.asarray(task[name], dtype=np.float64)
            if value.shape != target.shape:
                raise ValueError(f"task {name} has shape {value.shape}; this model's is {target.shape}")
            target[:] = value

    def observe(self):
        return np.concatenate([self.data.qpos[1:], np.clip(self.data.qvel, -10, 10)]).astype(np.float32)

    def step(self, action):
        x_before = float(self.data.qpos[0])
        self.simulate(action)
        x_after, height, angle = self.data.qpos[0:3]
        ctrl_cost = 1e-3 * float(np.square(action).sum())
        reward = (x_after - x_before) / self.dt + 1.0 - ctrl_cost
        if self.hopper:
            state = np.concatenate([self.data.qpos, self.data.qvel])
            healthy = np.isfinite(state).all() and (np.abs(state[2:]) < 100).all() and height > 0.7 and abs(angle) < 0.2
        else:
            healthy = 0.8 < height < 2.0 and -1.0 < angle < 1.0
        return self.observe(), float(reward), not healthy, False, dict(reward_ctrl=-ctrl_cost)


# -- task draws (each from a private RandomState(1337), in the official order of draws) ---------
def _half_circle_goals(n: int) -> list:
    """SparsePointEnv: n angles linspace(0, pi) on the unit circle, shuffled after np.random.seed(1337)
    (PointEnv's goal draws come before, but the seed is set again right before the shuffle)."""
    angles = np.linspace(0, np.pi, num=n)
    goals = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    np.random.RandomState(SEED).shuffle(goals)
    return list(goals)


def _square_goals(n: int) -> list:
    rng = np.random.RandomState(SEED)  # PointEnv: [[uniform(-1, 1), uniform(-1, 1)] for _ in range(n)]
    return [np.array([rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0)]) for _ in range(n)]


def _velocities(n: int) -> list:
    return list(np.random.RandomState(SEED).uniform(0.0, 3.0, size=(n,)))  # half_cheetah_vel.py


def _angles(n: int) -> list:
    return list(np.random.RandomState(SEED).uniform(0.0, 2.0 * np.pi, size=(n,)))  # ant_dir.py, humanoid_dir.py


def _disc_goals(n: int) -> list:
    rng = np.random.RandomState(SEED)  # ant_goal.py: uniform on the disc of radius 3
    a = rng.random_sample(n) * 2 * np.pi
    r = 3 * rng.random_sample(n) ** 0.5
    return list(np.stack((r * np.cos(a), r * np.sin(a)), axis=-1))


@cache
def _default_params(xml_file: str) -> dict:
    model = mujoco.MjModel.from_xml_path(gym.envs.mujoco.mujoco_env.expand_model_path(xml_file))
    return {name: getattr(model, name).copy() for name in RAND_PARAMS}


def _rand_params(xml_file: str, n: int) -> list:
    """base.py `RandomEnv.sample_tasks` (log_scale_limit 3): per task, each parameter times an elementwise
    multiplier 1.5^U(-3, 3) (dof_damping: 1.3^U(-3, 3)), of this model's default values."""
    rng, defaults, tasks = np.random.RandomState(SEED), _default_params(xml_file), []
    for _ in range(n):
        task = {}
        for name in RAND_PARAMS:
            base = 1.3 if name == "dof_damping" else 1.5
            task[name] = defaults[name] * np.array(base) ** rng.uniform(-3.0, 3.0, size=defaults[name].shape)
        tasks.append(task)
    return tasks


def _mujoco(env_id: str, **kwargs) -> gym.Env:
    """The v5 env class itself (no TimeLimit, no checker wrappers: the caller runs `horizon` steps)."""
    return gym.envs.registration.load_env_creator(gym.spec(env_id).entry_point)(**kwargs)


def _humanoid(task) -> gym.Env:
    env = HumanoidDirTask(_mujoco("Humanoid-v5"), float(task))
    model = env.unwrapped.model
    model.jnt_range[model.joint("left_hip_y").id] = np.deg2rad([-120.0, 20.0])  # gym 0.12.1's humanoid.xml
    return env


# -- families ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    """A task distribution: its official numbers (configs/*.json), how its tasks are drawn and its env.
    A task is the official task parameter: a goal (2,) array (point robots, ant_goal), a target
    velocity (cheetah_vel), a direction +-1 (cheetah_dir), an angle (ant_dir, humanoid_dir), or a dict
    of model parameter arrays (walker_params, hopper_params)."""

    name: str
    n_train: int         # configs/*.json n_train_tasks / n_eval_tasks
    n_test: int
    horizon: int         # max_path_length
    sparse: bool         # the context and the reported return use info["sparse_reward"]
    use_next_obs: bool   # use_next_obs_in_context
    n_tasks: int         # env_params n_tasks: n_train + n_test, except 2 for the 2/2 families (train = test)
    draw: Callable[[int], list] = field(repr=False, compare=False)          # n tasks, the official way
    build: Callable[[object], gym.Env] = field(repr=False, compare=False)   # the env, before action normalization

    def tasks(self) -> list:
        """All the config's `n_tasks` tasks (n_train + n_test, or 2 for cheetah_dir and ant_dir, whose
        test tasks are the train tasks), the same on every call."""
        return self.draw(self.n_tasks)

    def make(self, task) -> gym.Env:
        """One environment for `task`, actions in [-1, 1]; seed it with `env.reset(seed=...)`."""
        return NormalizedBoxActions(self.build(task))


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("point_sparse", 80, 20, 20, True, False, 100, _half_circle_goals, lambda g: PointRobot(g, sparse=True)),
    Family("point", 80, 20, 20, False, False, 100, _square_goals, lambda g: PointRobot(g, sparse=False)),
    Family("cheetah_vel", 100, 30, 200, False, False, 130, _velocities,
           lambda v: HalfCheetahTask(_mujoco("HalfCheetah-v5"), v, velocity=True)),
    Family("cheetah_dir", 2, 2, 200, False, False, 2, lambda n: [-1.0, 1.0],
           lambda d: HalfCheetahTask(_mujoco("HalfCheetah-v5"), d, velocity=False)),
    Family("ant_dir", 2, 2, 200, False, False, 2, _angles, lambda a: AntDirTask(_mujoco("Ant-v5"), float(a))),
    Family("ant_goal", 150, 30, 200, False, False, 180, _disc_goals,
           lambda g: AntGoalTask(_mujoco("Ant-v5"), np.asarray(g, dtype=np.float64))),
    Family("humanoid_dir", 100, 30, 200, False, False, 130, _angles, _humanoid),
    Family("walker_params", 40, 10, 200, False, True, 50, lambda n: _rand_params("walker2d.xml", n),
           lambda p: RandParamsTask(_mujoco("Walker2d-v5", xml_file="walker2d.xml"), p, hopper=False)),
    Family("hopper_params", 40, 10, 200, False, True, 50, lambda n: _rand_params("hopper.xml", n),
           lambda p: RandParamsTask(_mujoco("Hopper-v5", xml_file="hopper.xml"), p, hopper=True)),
]}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise UsageError(f"unknown task family {name!r}; valid: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def split(family_or_name: Family | str) -> tuple[list, list]:
    """(train tasks, test tasks) as launch_experiment.py: tasks[:n_train], tasks[-n_test:]."""
    f = family(family_or_name) if isinstance(family_or_name, str) else family_or_name
    tasks = f.tasks()
    return tasks[:f.n_train], tasks[-f.n_test:]


# -- lockstep rollouts ---------------------------------------------------------------------------
def rollout(envs: list, policy: Callable[[np.ndarray], np.ndarray], horizon: int,
            seeds: list[int] | None = None) -> dict[str, np.ndarray]:
    """One trajectory of `horizon` steps in each of `envs` (one per task), all stepped together with one
    batched call `policy(obs (n, obs_dim)) -> actions (n, act_dim)` per step; env i is reset first
    (with seeds[i] when given).

    Row i of every policy call is always env i: an env whose episode ended (terminated, or truncated by
    a wrapper of its own) keeps its last observation in the batch and its action is discarded; the
    calls stop once every env has ended. Its remaining steps are zeros with valid = False. Actions are
    stored as the policy returned them (the env clips), as the official sampler stores them.

    Returns (n, horizon, ·) arrays observations, actions, next_observations and (n, horizon) rewards,
    sparse_rewards (info["sparse_reward"], else the reward), terminals, valid; and per env (n,)
    returns, sparse_returns (sums over valid steps) and success (a valid step with sparse reward > 0:
    the goal radius for point_sparse; not meaningful for dense families).
    """
    n = len(envs)
    if n == 0 or horizon < 1:
        raise ValueError(f"need at least one env and horizon >= 1, got {n} envs and horizon {horizon}")
    if seeds is not None and len(seeds) != n:
        raise ValueError(f"got {len(seeds)} seeds for {n} envs")
    if len({id(env) for env in envs}) != n:
        raise ValueError("an env object appears twice in envs: each row needs its own env (make one per row)")
    obs = np.stack([np.asarray(env.reset(seed=None if seeds is None else int(seeds[i]))[0], dtype=np.float32)
                    for i, env in enumerate(envs)])
    act_dim = envs[0].action_space.shape[0]
    path = {"observations": np.zeros((n, horizon, obs.shape[1]), np.float32),
            "actions": np.zeros((n, horizon, act_dim), np.float32),
            "rewards": np.zeros((n, horizon), np.float32),
            "sparse_rewards": np.zeros((n, horizon), np.float32),
            "next_observations": np.zeros((n, horizon, obs.shape[1]), np.float32),
            "terminals": np.zeros((n, horizon), np.float32),
            "valid": np.zeros((n, horizon), bool)}
    running = np.ones(n, bool)
    for t in range(horizon):
        if not running.any():
            break
        actions = np.asarray(policy(obs.copy()), dtype=np.float32)  # a copy: obs changes in place below
        if actions.shape != (n, act_dim):
            raise ValueError(f"policy returned actions of shape {actions.shape}; expected ({n}, {act_dim})")
        for i in np.flatnonzero(running):
            next_obs, reward, terminated, truncated, info = envs[i].step(actions[i])
            path["observations"][i, t] = obs[i]
            path["actions"][i, t] = actions[i]
            path["rewards"][i, t] = reward
            path["sparse_rewards"][i, t] = info.get("sparse_reward", reward)
            path["next_observations"][i, t] = next_obs
            path["terminals"][i, t] = float(terminated)
            path["valid"][i, t] = True
            obs[i] = next_obs
            running[i] = not (terminated or truncated)
    path["returns"] = path["rewards"].sum(1, dtype=np.float64)  # invalid steps are zeros
    path["sparse_returns"] = path["sparse_rewards"].sum(1, dtype=np.float64)
    path["success"] = ((path["sparse_rewards"] > 0) & path["valid"]).any(1)
    return path
