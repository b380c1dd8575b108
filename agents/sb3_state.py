"""What a Stable-Baselines3 run keeps on disk, read back without unpickling anything.

SB3's own ``load`` unpickles the ``data`` entry of a ``model.zip`` and ``load_replay_buffer`` a
pickle: a crafted run folder would run code. Here a model made anew from the run's settings reads
only the zip's tensors (:func:`weights_into`), SB3's counters and last observations are kept as
tensors and lists (:func:`model_state`), the replay buffer as an ``.npz`` of arrays
(:func:`save_replay`), and so are the generators, the environments' states and the LSTM states
of a resume point (:class:`ResumePoint`, :func:`resume_point`: a manifest of files and their
SHA-256, written last). :func:`load_pickled_model` is SB3's own load, for ``--trust-folder``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from musicgym.agents.common import warn
from musicgym.errors import CheckpointError
from musicgym.fileio import atomic_output, file_in, load_checkpoint_file

MODEL_FILE = "model.zip"
CHECKPOINTS = "checkpoints"


REPLAY_FILE = "replay_buffer.pkl"
"""The replay buffer of runs of older versions (now in the resume points), a pickle."""


MODEL_STATE = (
    "num_timesteps",
    "_n_updates",
    "_n_calls",
    "_episode_num",
    "_current_progress_remaining",
    "exploration_rate",
    "_last_obs",
    "_last_episode_starts",
    "_last_original_obs",
    "ep_info_buffer",
    "ep_success_buffer",
    "kl_coef",  # PPOKL's adaptive beta
)
"""What SB3 keeps of a run in ``model.zip``'s pickled ``data`` beside its settings (which the
model rebuilt from our settings has anyway): counters, schedules' progress, the last
observations and the episode records. A resume point keeps them as tensors and lists."""


MANIFEST = re.compile(r"^manifest_(\d+)_steps\.json$")


def weights_into(model: BaseAlgorithm, path: Path) -> BaseAlgorithm:
    """``model`` with the weights and optimizer states of the zip ``path`` (its ``.pth``
    entries, read with ``weights_only``; its pickled ``data`` is never read)."""
    try:
        model.set_parameters(str(path), exact_match=True, device="cpu")
    except Exception as error:  # zipfile.BadZipFile, missing entries, size mismatches, ...
        what = f"{type(model).__name__} model ({type(error).__name__})"
        raise CheckpointError(f"{path}: not a readable {what}") from None
    return model


def load_pickled_model(algorithm: type[BaseAlgorithm], path: Path, **kwargs: Any) -> Any:
    """SB3's own ``load`` (it unpickles): only for ``--trust-folder``."""
    try:
        return algorithm.load(path, device="cpu", **kwargs)
    except Exception as error:  # zipfile.BadZipFile, pickle errors, size mismatches, ...
        what = f"{algorithm.__name__} model ({type(error).__name__})"
        raise CheckpointError(f"{path}: not a readable {what}") from None


def model_state(model: BaseAlgorithm) -> dict[str, Any]:
    """:data:`MODEL_STATE` of ``model`` as tensors, lists and numbers."""
    return {name: _as_tensors(getattr(model, name)) for name in MODEL_STATE if hasattr(model, name)}


def set_model_state(model: BaseAlgorithm, saved: dict[str, Any]) -> None:
    for name, value in saved.items():
        current = getattr(model, name, None)
        if name in ("ep_info_buffer", "ep_success_buffer") and current is not None:
            current.clear()
            current.extend(value)
        else:
            setattr(model, name, _as_numpy(value))


def _as_tensors(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"array": torch.from_numpy(value.copy()), "dtype": str(value.dtype)}
    if isinstance(value, dict):
        return {"dict": {k: _as_tensors(v) for k, v in value.items()}}
    if isinstance(value, deque):
        return [dict(item) if isinstance(item, dict) else item for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _as_numpy(value: Any) -> Any:
    if isinstance(value, dict) and "array" in value:
        return value["array"].numpy().astype(value["dtype"])
    if isinstance(value, dict) and "dict" in value:
        return {k: _as_numpy(v) for k, v in value["dict"].items()}
    return value


def save_replay(buffer: Any, path: Path) -> None:
    """An SB3 replay buffer's arrays and position as ``.npz`` (no pickles), atomically: the rows
    written so far only (and the one after, which holds the last next observation when SB3
    stores observations once), the rest being the zeros a new buffer has."""
    rows = buffer.buffer_size if buffer.full else min(buffer.pos + 1, buffer.buffer_size)
    arrays = {name: value for name, value in vars(buffer).items() if isinstance(value, np.ndarray)}
    for name, value in vars(buffer).items():
        if isinstance(value, dict):
            arrays.update({f"{name}/{key}": array for key, array in value.items()})
    arrays = {
        name: array[:rows] if array.ndim and len(array) == buffer.buffer_size else array
        for name, array in arrays.items()
    }
    arrays["pos/"] = np.array(buffer.pos)
    arrays["full/"] = np.array(buffer.full)
    with atomic_output(path) as temporary, temporary.open("wb") as file:
        np.savez(file, **arrays)


def load_replay(buffer: Any, path: Path) -> None:
    """Fill ``buffer`` (made with the run's settings) from :func:`save_replay`'s file, read
    without pickles; one line if it does not fit."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            for name in saved.files:
                attribute, _, key = name.partition("/")
                value = saved[name]
                if attribute in ("pos", "full"):
                    setattr(buffer, attribute, value.item())
                    continue
                target = getattr(buffer, attribute)
                target = target[key] if key else target
                fits = target.shape[1:] == value.shape[1:] and len(value) <= len(target)
                if not fits or target.dtype != value.dtype:
                    raise ValueError(f"{name} is {value.dtype}{value.shape}")
                target[: len(value)] = value
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as error:
        first = (str(error).splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"{path}: not the replay buffer of this run ({first})") from None


@dataclass
class ResumePoint:
    """The files of one resume point (see the module docstring)."""

    step: int
    model: Path
    replay: Path | None
    state: dict[str, Any] | None
    """``None`` for a run of an older version (a model alone, from ``checkpoints/``)."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_point(folder: Path, manifest: Path) -> ResumePoint:
    """The resume point a manifest names; :class:`CheckpointError` if a file is missing or its
    SHA-256 differs."""
    try:
        files = json.loads(manifest.read_text())["files"]
        for name, digest in files.values():
            if sha256(file_in(folder, name, "manifest's file")) != digest:
                raise CheckpointError(f"{folder / name}: damaged (its SHA-256 differs)")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{manifest}: incomplete ({type(error).__name__})") from None
    state = load_checkpoint_file(folder / files["state"][0])
    replay = folder / files["replay"][0] if "replay" in files else None
    return ResumePoint(int(state["step"]), folder / files["model"][0], replay, state)


def resume_point(out: Path) -> ResumePoint:
    """The newest complete, undamaged resume point in ``out/checkpoints`` (each damaged newer one
    reported); for a run of an older version, its newest model."""
    folder = out / CHECKPOINTS
    manifests = sorted(
        (int(match[1]), path)
        for path in folder.glob("manifest_*_steps.json")
        if (match := MANIFEST.match(path.name))
    )
    for _, manifest in reversed(manifests):
        try:
            return _read_point(folder, manifest)
        except CheckpointError as error:
            warn(f"{error}; trying the resume point before it")
    if manifests:
        raise CheckpointError(f"{folder}: no undamaged resume point left")
    saved = [*folder.glob("model_*_steps.zip"), out / MODEL_FILE]
    saved = [path for path in saved if path.is_file()]
    if not saved:
        raise CheckpointError(f"{out}: no {CHECKPOINTS}/ and no {MODEL_FILE} to resume from")
    newest = max(saved, key=lambda path: path.stat().st_mtime_ns)
    replay = out / REPLAY_FILE
    return ResumePoint(-1, newest, replay if replay.is_file() else None, None)


def numpy_state() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    assert kind == "MT19937"
    keys = torch.from_numpy(keys.astype(np.int64))
    return {"keys": keys, "pos": int(position), "has_gauss": has_gauss, "cached": cached}


def set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["pos"], state["has_gauss"], state["cached"]))


MONITOR_FIELDS = ("rewards", "needs_reset", "episode_returns", "episode_lengths", "total_steps")


def vec_env_state(envs: DummyVecEnv) -> dict[str, Any]:
    """Every sub-environment's state (:meth:`MusicCompositionEnv.get_state`) and ``Monitor``
    counts, and the seeds of the vector env's next reset."""
    states = []
    for env in envs.envs:
        monitor = env if isinstance(env, Monitor) else None
        states.append(
            {
                "env": env.unwrapped.get_state(),  # type: ignore[attr-defined]
                "monitor": {
                    name: [float(x) for x in value] if isinstance(value, list) else value
                    for name in MONITOR_FIELDS
                    if monitor is not None and (value := getattr(monitor, name)) is not None
                },
            }
        )
    return {"seeds": list(envs._seeds), "envs": states}


def set_vec_env_state(envs: DummyVecEnv, state: dict[str, Any]) -> None:
    envs.reset()  # the wrappers' own flags (reset done), then the saved state over it
    for env, saved in zip(envs.envs, state["envs"], strict=True):
        env.unwrapped.set_state(saved["env"])  # type: ignore[attr-defined]
        for name, value in saved["monitor"].items():
            setattr(env, name, list(value) if isinstance(value, list) else value)
    envs._seeds = list(state["seeds"])


def lstm_states(model: BaseAlgorithm) -> list[list[torch.Tensor]] | None:
    """RecurrentPPO's LSTM states at the last observation (its save leaves them out)."""
    states = getattr(model, "_last_lstm_states", None)
    return None if states is None else [[t.detach().cpu().clone() for t in pair] for pair in states]


def set_lstm_states(model: BaseAlgorithm, saved: list[list[torch.Tensor]] | None) -> None:
    states = getattr(model, "_last_lstm_states", None)
    if states is not None and saved is not None:
        model._last_lstm_states = type(states)(  # type: ignore[attr-defined]
            *(tuple(t.to(model.device) for t in pair) for pair in saved)
        )
