"""What every agent shares: the environment options, the prior, the run folder's ``agent.json``,
and the rules of ``--resume``."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import gymnasium as gym
import torch

import musicgym  # noqa: F401  (registers the environments)
from musicgym.checks import NON_NEGATIVE, POSITIVE_INT, THREADS, check_numbers
from musicgym.config import EnvConfig, run_rules
from musicgym.errors import CheckpointError, RunFolderError
from musicgym.fileio import write_text
from musicgym.prior import MelodyPrior, resolve_prior

AGENT_INFO = "agent.json"
"""The file in a run folder that says which algorithm made it and with which environment."""
RUN_FILES = (
    AGENT_INFO,
    "agent.pt",
    "replay.pt",
    "model.zip",
    "best_model.zip",
    "replay_buffer.pkl",
    "evaluations.npz",
    "checkpoints",
    "events.out.tfevents.*",
)
"""What ``agent train`` writes into a run folder (glob patterns): a folder holding any of them
holds a run, which only ``--resume`` continues and only ``--overwrite`` deletes."""


@dataclass
class RunConfig(EnvConfig):
    """The environment and the budget of one training run; what ``--resume`` may change."""

    steps: int = 50_000
    """Environment steps to train for (all sub-environments together)."""
    max_minutes: float = 0.0
    """Stop this run after so many minutes of training, checkpointed, even short of --steps (0: no
    limit); --resume continues it."""
    threads: int = 1
    """CPU threads for torch (0: torch's default). One is fastest here: the tensors are small, and
    two threads on a busy 2-core machine wait on each other (4x slower measured)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_numbers(
            self, {"steps": POSITIVE_INT, "max_minutes": NON_NEGATIVE, "threads": THREADS}
        )
        # the run keeps its rules as they resolve now: a preset changed later changes nothing
        self.rules = run_rules(self.rules, self.env)


SESSION_FIELDS = ("steps", "max_minutes", "threads")
"""The :class:`RunConfig` fields that a resumed run takes from the new call, not the checkpoint;
every other setting must be the run's (``--resume`` refuses a change)."""


def prior_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of a prior's weights: a resumed run checks that its prior is the run's."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def check_same_prior(out: str | os.PathLike, saved: str | None, model: torch.nn.Module) -> None:
    """One line if ``model`` is not the prior (by :func:`prior_fingerprint`) the run started on."""
    if saved is not None and prior_fingerprint(model) != saved:
        raise RunFolderError(
            f"{out}: --resume with another prior than the run's (its weights differ); resume "
            "with the run's --prior, or start a new run"
        )


def load_prior(prior: str | os.PathLike | MelodyPrior) -> MelodyPrior:
    """The frozen prior a shipped name or a checkpoint path names, or ``prior`` itself, frozen
    (:func:`musicgym.prior.resolve_prior`)."""
    model = resolve_prior(prior)
    if isinstance(model, torch.nn.Module):
        model.eval()
        model.requires_grad_(False)
    return model


def training_reference(config: EnvConfig) -> dict[str, Any] | None:
    """The data's histograms a run logs its pieces' KL to, where the prior's model card records
    them (a run never converts the data)."""
    from musicgym.errors import MusicgymError
    from musicgym.priors.registry import test_histograms

    try:
        return test_histograms(config, convert=False)
    except (MusicgymError, OSError):
        return None


def make_vector_env(
    config: EnvConfig,
    prior: MelodyPrior | None,
    num_envs: int,
    with_prior: bool = True,
    observation: str = "plain",
    training: bool = False,
) -> gym.vector.VectorEnv:
    """The batched vector env of ``config.env`` (one prior call per step for all ``num_envs``
    pieces; ``observation`` and ``training``: see
    :meth:`musicgym.config.EnvConfig.env_kwargs`)."""
    return gym.make_vec(
        config.env,
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        **config.env_kwargs(prior, with_prior, observation, training),
    )


Piece_co = TypeVar("Piece_co", covariant=True)
"""The piece type of a composer's task: melody tokens or a chorale's note-state."""


@runtime_checkable
class Composer(Protocol[Piece_co]):
    """What :func:`musicgym.agents.load` returns for every kind of agent: ``Composer[list[int]]``
    for melodies, ``Composer[NoteState]`` for chorales."""

    @property
    def config(self) -> EnvConfig:
        """The environment it composes for; its task (``musicgym.tasks.task_of(config.env)``)
        says what its pieces are and how to write and measure them."""
        ...

    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[Piece_co]:
        """``n`` pieces of the task's piece type; the same ``seed`` gives the same pieces."""
        ...


def write_agent_info(folder: str | os.PathLike, algo: str, **info: Any) -> None:
    """Write ``agent.json`` (algorithm, environment, files) into a run folder, atomically."""
    path = Path(folder) / AGENT_INFO
    for key, value in info.items():
        if hasattr(value, "__dataclass_fields__"):
            info[key] = asdict(value)
    write_text(path, json.dumps({"algo": algo, **info}, indent=2) + "\n")


def read_agent_info(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``agent.json`` of a run folder."""
    path = Path(folder) / AGENT_INFO
    if not path.is_file():
        raise CheckpointError(
            f"{folder}: no {AGENT_INFO}; not a folder made by `musicgym agent train`"
        )
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not readable ({type(error).__name__})") from None
    if not isinstance(info, dict) or "algo" not in info:
        raise CheckpointError(f"{path}: not an {AGENT_INFO} of `musicgym agent train`")
    return info


def warn(message: str) -> None:
    """Print ``musicgym: warning: MESSAGE`` on stderr."""
    print(f"musicgym: warning: {message}", file=sys.stderr)


def set_torch_threads(threads: int) -> None:
    """Use ``threads`` CPU threads in torch (0 leaves torch's default)."""
    if threads > 0:
        torch.set_num_threads(threads)
