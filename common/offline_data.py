"""Offline RL datasets in the two public formats: D4RL's flat HDF5 file and a Minari dataset folder.

Both readers return the same dict of float32 numpy arrays, one row per transition:

    observations (N, obs)  actions (N, act)  rewards (N,)  next_observations (N, obs)
    terminals (N,)  timeouts (N,)          1.0 where the episode ended there (terminal: bootstrap
                                           from nothing; timeout: a time limit, which still bootstraps)

and the file's metadata as a dict (`attrs`). The writer writes D4RL's layout, with its `metadata/*`
kept as HDF5 attributes of the file.

D4RL (Fu et al. 2020; the layout of e.g. hopper-medium-v2.hdf5): `observations`, `actions`,
`rewards`, `terminals`, `timeouts` (missing in some v0 files) and, in v1/v2 files,
`next_observations`. When `next_observations` is missing, s' is the next row and the rows where an
episode stops (a timeout, or the last row) are dropped, as d4rl's `qlearning_dataset` does. A step that
is both terminal and timeout counts as terminal.

Minari (`<root>/<dataset id>/data/`): `metadata.json` and `main_data.hdf5` with one group per episode,
`episode_<i>/{observations (T+1 rows), actions, rewards, terminations, truncations}`. Only flat Box
observations and the HDF5 storage are read; anything else is refused by name.

Malformed files raise `OfflineDataError` (a DatasetError: the CLI prints one line and exits 2) naming
the file and what is wrong, before any array is returned.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.data import DatasetError

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


class OfflineDataError(DatasetError):
    pass


def _h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency; this names it if a user removed it
        raise OfflineDataError("reading offline RL datasets needs h5py: pip install h5py") from None
    return h5py


def write_d4rl(path: Path, data: dict, attrs: dict) -> None:
    """Write `data` (the FIELDS) in D4RL's layout; `attrs` (strings and numbers) become file attributes."""
    h5py = _h5py()
    n = len(data["rewards"])
    with h5py.File(path, "w") as f:
        for key in FIELDS:
            value = np.asarray(data[key])
            if len(value) != n:
                raise ValueError(f"{key} has {len(value)} rows, rewards {n}")
            dtype = np.bool_ if key in ("terminals", "timeouts") else np.float32
            f.create_dataset(key, data=value.astype(dtype), compression="gzip", compression_opts=1)
        for key, value in attrs.items():
            f.attrs[key] = value


def _read(f, path: Path, key: str) -> np.ndarray:
    if key not in f:
        raise OfflineDataError(f"{path}: missing dataset {key!r} (a D4RL file has {', '.join(FIELDS[:5])})")
    try:
        return np.asarray(f[key][()])
    except OSError as err:  # truncated or corrupt chunk
        raise OfflineDataError(f"{path}: dataset {key!r} cannot be read ({err})") from None


def read_d4rl(path: str | Path) -> tuple[dict, dict]:
    """(transitions, attrs) from a D4RL-layout HDF5 file."""
    h5py, path = _h5py(), Path(path)
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as err:
        raise OfflineDataError(f"{path}: not a readable HDF5 file ({err})") from None
    with f:
        obs = _read(f, path, "observations").astype(np.float32)
        actions = _read(f, path, "actions").astype(np.float32)
        rewards = _read(f, path, "rewards").astype(np.float32).reshape(-1)
        terminals = _read(f, path, "terminals").astype(bool).reshape(-1)
        timeouts = (_read(f, path, "timeouts").astype(bool).reshape(-1) if "timeouts" in f
                    else np.zeros_like(terminals))
        next_obs = _read(f, path, "next_observations").astype(np.float32) if "next_observations" in f else None
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
    n = len(obs)
    for key, value in (("actions", actions), ("rewards", rewards), ("terminals", terminals), ("timeouts", timeouts)):
        if len(value) != n:
            raise OfflineDataError(f"{path}: {key} has {len(value)} rows but observations has {n}")
    if obs.ndim != 2 or actions.ndim != 2:
        raise OfflineDataError(f"{path}: observations and actions must be 2-D, got {obs.shape} and {actions.shape}")
    timeouts &= ~terminals
    if next_obs is None:  # s' is the next row; drop rows whose next row starts another episode
        keep = ~timeouts
        keep[-1] = False
        next_obs = np.roll(obs, -1, axis=0)
        obs, actions, rewards, terminals, timeouts, next_obs = (
            a[keep] for a in (obs, actions, rewards, terminals, timeouts, next_obs))
    elif len(next_obs) != n:
        raise OfflineDataError(f"{path}: next_observations has {len(next_obs)} rows but observations has {n}")
    data = {"observations": obs, "actions": actions, "rewards": rewards, "next_observations": next_obs,
            "terminals": terminals.astype(np.float32), "timeouts": timeouts.astype(np.float32)}
    return data, attrs


def read_minari(folder: str | Path) -> tuple[dict, dict]:
    """(transitions, metadata) from a Minari dataset folder (the one holding `data/`)."""
    h5py, folder = _h5py(), Path(folder)
    meta_path, main = folder / "data" / "metadata.json", folder / "data" / "main_data.hdf5"
    try:
        metadata = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise OfflineDataError(f"{meta_path}: missing or not JSON ({err})") from None
    fmt = metadata.get("data_format", "hdf5")
    if fmt != "hdf5":
        raise OfflineDataError(f"{folder}: data_format {fmt!r} is not read here; valid: hdf5")
    try:
        f = h5py.File(main, "r")
    except (OSError, ValueError) as err:
        raise OfflineDataError(f"{main}: not a readable HDF5 file ({err})") from None
    parts: dict[str, list] = {k: [] for k in FIELDS}
    with f:
        episodes = sorted((k for k in f if k.startswith("episode_")), key=lambda k: int(k.split("_")[1]))
        if not episodes:
            raise OfflineDataError(f"{main}: no episode_<i> groups")
        for name in episodes:
            group = f[name]
            where = Path(f"{main}:{name}")
            if "observations" in group and isinstance(group["observations"], h5py.Group):
                raise OfflineDataError(f"{where}: dict or tuple observations are not read here; valid: a flat Box")
            obs = _read(group, where, "observations").astype(np.float32)
            steps = len(_read(group, where, "rewards"))
            if len(obs) != steps + 1:
                raise OfflineDataError(f"{where}: observations has {len(obs)} rows, expected rewards + 1 = {steps + 1}")
            terminal = _read(group, where, "terminations").astype(bool)
            parts["observations"].append(obs[:-1])
            parts["next_observations"].append(obs[1:])
            parts["actions"].append(_read(group, where, "actions").astype(np.float32))
            parts["rewards"].append(_read(group, where, "rewards").astype(np.float32))
            parts["terminals"].append(terminal)
            parts["timeouts"].append(_read(group, where, "truncations").astype(bool) & ~terminal)
    data = {k: np.concatenate(v) for k, v in parts.items()}
    data["terminals"], data["timeouts"] = data["terminals"].astype(np.float32), data["timeouts"].astype(np.float32)
    return data, metadata


def read(path: str | Path) -> tuple[dict, dict]:
    """A D4RL file (`*.hdf5`) or a Minari dataset folder, whichever `path` is."""
    path = Path(path)
    if path.is_dir():
        return read_minari(path)
    if not path.exists():
        raise OfflineDataError(f"{path}: no such file or folder (a D4RL .hdf5 file or a Minari dataset folder)")
    return read_d4rl(path)


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def episode_returns(data: dict) -> np.ndarray:
    """The undiscounted return of each complete episode (one that ends in a terminal or a timeout)."""
    ends = np.flatnonzero((data["terminals"] > 0) | (data["timeouts"] > 0))
    sums = np.cumsum(data["rewards"], dtype=np.float64)
    totals = np.diff(np.concatenate([[0.0], sums[ends]]))
    return totals


def normalized_score(episode_return, random_return: float, expert_return: float):
    """D4RL's normalized score, 100 (R - R_random) / (R_expert - R_random): 0 is random, 100 expert."""
    return 100.0 * (np.asarray(episode_return) - random_return) / (expert_return - random_return)
