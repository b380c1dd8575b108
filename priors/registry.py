"""The priors this package trains and ships, by model tag: one table, and their checkpoints.

:data:`MODELS` maps a checkpoint's ``"model"`` tag to the class that reads it; ``musicgym prior
train --model TAG`` builds from it, and :func:`load_model` (registered for every tag in the
entry-point group ``musicgym.prior_loaders``, see ``pyproject.toml``) loads from it. A model
class has a ``config_class`` (a dataclass of its shape, whose fields ``lowest_pitch``,
``num_pitches``, ``resolution`` and ``key_normalised`` the data sets), a ``model_tag``, and
``log_likelihood(note_states)`` for the trainer. Adding a prior is its file, one line here and
one entry point.

A checkpoint is a plain dict: ``model`` (the tag), ``config``, ``state_dict`` and what the trainer
adds (optimizer, step, data description, ...). The shipped ones are in ``priors/checkpoints``
(:func:`shipped_priors`, the ``musicgym.shipped_priors`` entry point).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from musicgym.errors import CheckpointError
from musicgym.fileio import load_checkpoint_file, save_checkpoint_file
from musicgym.prior import checkpoint_path
from musicgym.priors.model import BiaxialLSTM
from musicgym.priors.note_rnn import NoteRNN
from musicgym.tasks import REPORTED_SPLIT

MODELS: dict[str, type[nn.Module]] = {
    BiaxialLSTM.model_tag: BiaxialLSTM,
    NoteRNN.model_tag: NoteRNN,
}
"""Every prior this package trains, by model tag."""
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"


def shipped_priors() -> dict[str, Path]:
    """The checkpoints shipped in ``priors/checkpoints``, by name."""
    return {path.stem: path for path in sorted(CHECKPOINT_DIR.glob("*.pt"))}


def model_class(tag: Any, where: str | os.PathLike = "") -> type[nn.Module]:
    """The class of model ``tag``; one line naming ``where`` and the known tags otherwise."""
    if tag not in MODELS:
        what = f"model {tag!r}" if isinstance(tag, str) else "no model tag"
        raise CheckpointError(f"{where or 'checkpoint'}: {what}; known: {', '.join(MODELS)}")
    return MODELS[tag]


def build_model(tag: str, **settings: Any) -> nn.Module:
    """A fresh model ``tag`` whose config takes ``settings`` (those of its config's fields)."""
    cls = model_class(tag)
    known = {f.name for f in fields(cls.config_class)}
    return cls(cls.config_class(**{k: v for k, v in settings.items() if k in known}))


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike = "") -> nn.Module:
    """The model of a checkpoint dict, its class chosen by the dict's tag."""
    cls = model_class(checkpoint.get("model"), path)
    try:
        model = build_model(checkpoint["model"], **checkpoint["config"])
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{path}: weights do not fit the {cls.model_tag} config ({first})"
        ) from None
    return model


def load_model(
    checkpoint: dict[str, Any], path: str | os.PathLike = "", device: str | torch.device = "cpu"
) -> nn.Module:
    """The ``musicgym.prior_loaders`` entry point of every tag of :data:`MODELS`."""
    return model_from_checkpoint(checkpoint, path).to(device)


def read_checkpoint(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint dict of a shipped name or a path, of a model of :data:`MODELS`."""
    path = checkpoint_path(name_or_path)
    checkpoint = load_checkpoint_file(path)
    model_class(checkpoint.get("model"), path)
    return checkpoint


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    best_valid: float | None = None,
    train_config: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    **extra: Any,
) -> None:
    """Write the checkpoint dict of ``model`` atomically: its tag, config and weights (float32
    on the CPU, so that it loads anywhere), the optimizer's state, the step, the best validation
    score, the training config, the data description and ``extra``."""
    checkpoint = {
        "model": model.model_tag,
        "config": asdict(model.config),
        "state_dict": {k: v.detach().float().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": step,
        "best_valid": best_valid,
        "train_config": train_config or {},
        "data": data or {},
        **extra,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint_file(checkpoint, path)


def data_pieces(
    config: Any, split: str = REPORTED_SPLIT, progress: bool = False
) -> tuple[str, list[Any]]:
    """``(dataset name, pieces)``: ``split`` of the data the prior of ``config`` (an
    :class:`~musicgym.config.EnvConfig`) was trained on (its checkpoint's ``"data"``, with its
    pitch range and key normalisation), cut as the environment composes
    (:meth:`musicgym.tasks.Task.reference_pieces`); the data character is measured against: the
    test split for results, the validation split to choose settings on.

    Raises:
        MusicgymError: the checkpoint names no dataset (and the task has none of its own), or
            it cannot be loaded or cut; OSError: its files cannot be read.
    """
    from musicgym.errors import MusicgymError
    from musicgym.priors.data import load_dataset
    from musicgym.tasks import task_of

    task = task_of(config.env)
    data = read_checkpoint(config.prior).get("data") or {}
    name = data.get("name", task.dataset)
    if name is None:
        raise MusicgymError(f"prior {config.prior}: its checkpoint names no dataset")
    dataset = load_dataset(
        name,
        resolution=data.get("resolution"),
        lowest_pitch=data.get("lowest_pitch"),
        num_pitches=data.get("num_pitches"),
        key_normalise=bool(data.get("key_normalised", False)),
        progress=progress,
    )
    return name, task.reference_pieces(dataset, config, split)


TEST_HISTOGRAMS = "test_histograms"
"""The model card's entry of its test pieces' summed histograms, by window (``"32 tokens"``)."""


def test_histograms(config: Any, convert: bool = True) -> dict[str, np.ndarray] | None:
    """The summed histograms (:meth:`musicgym.tasks.Task.reference_histograms`) of the test
    pieces (:func:`data_pieces`) of ``config``'s prior: from the shipped model card where it
    records them for ``config``'s windows, else (``convert``) from the data, converting it once
    (minutes for Essen; cached). ``None`` where the task has no such histograms, or they are not
    recorded and ``convert`` is false.

    Raises:
        MusicgymError, OSError: as :func:`data_pieces`.
    """
    from musicgym.tasks import task_of

    task = task_of(config.env)
    window = _window(config)
    if window is None:
        return None
    card = _model_card(config.prior)
    recorded = card.get(TEST_HISTOGRAMS, {}).get(window)
    if isinstance(recorded, dict):
        return {name: np.asarray(counts, dtype=float) for name, counts in recorded.items()}
    if not convert:
        return None
    return task.reference_histograms(data_pieces(config)[1])


def record_test_histograms(config: Any) -> Path:
    """Write :func:`test_histograms` of ``config``'s shipped prior (converted from the data) into
    its model card, so that the demo and training read them without converting the data:
    ``python -c "from musicgym.config import EnvConfig; from musicgym.priors.registry import
    record_test_histograms as r; r(EnvConfig(prior='melody16c'))"``."""
    from musicgym.fileio import write_text
    from musicgym.tasks import task_of

    path = checkpoint_path(config.prior).with_suffix(".json")
    card = _model_card(config.prior)
    histograms = task_of(config.env).reference_histograms(data_pieces(config)[1])
    entry = {name: counts.tolist() for name, counts in (histograms or {}).items()}
    card.setdefault(TEST_HISTOGRAMS, {})[_window(config)] = entry
    write_text(path, json.dumps(card, indent=2) + "\n")
    return path


def _window(config: Any) -> str | None:
    from musicgym.config import ENV_DEFAULTS, ENV_ID

    size = ENV_DEFAULTS[config.env].size
    return f"{getattr(config, size)} tokens" if config.env == ENV_ID else None


def _model_card(prior: str | os.PathLike) -> dict[str, Any]:
    """The model card beside a prior's checkpoint (``{}`` where there is none or it is not a
    JSON object)."""
    path = checkpoint_path(prior).with_suffix(".json")
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}
