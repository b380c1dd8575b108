"""What both composition environments share: a single env and a vector env over one *batch*.

Each environment keeps the logic of ``B`` pieces composed side by side in a batch (the melody's
:class:`~musicgym.envs.melody.MelodyBatch`, the chorale's
:class:`~musicgym.envs.chorale.ChoraleBatch`; see :class:`CompositionBatch`). :class:`BatchedEnv`
is that batch at ``B = 1``, :class:`BatchedVectorEnv` at ``B = num_envs``, so both return the same
numbers: resets with seeds and options, steps, next-step or same-step autoreset, rendering, and
``get_state`` / ``set_state`` are written here once. A subclass parses its primers and actions
(:meth:`BatchedEnv.parse_primer`, :meth:`BatchedEnv.draw_primer`, :meth:`BatchedEnv.check_actions`)
and loads its prior on first use (:meth:`BatchedEnv.attach_prior`).

Both environments offer two observation modes (the ``observation`` argument): ``"plain"``, their
own flat ``Box``, and ``"prior"``, a ``Dict`` that adds what the frozen prior knows of the state
(:func:`prior_observation_space`): its summary φ(s) and ``log p(·|s)`` of every next action (and,
where some actions are invalid, their mask). An agent that builds on the prior (the RL Tuner, or
SB3's ``MultiInputPolicy``) reads them there instead of running the prior a second time.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, SupportsFloat, TypeVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv

from musicgym.checks import CORES
from musicgym.errors import EnvArgumentError
from musicgym.music import keys as music_keys
from musicgym.music.keys import Key

RENDER_MODES = ["ansi", "human", "rgb_array"]
OBSERVATION_MODES = ("plain", "prior")
"""The ``observation`` argument's values (see the module docstring)."""
LOG_PROB_FLOOR = -100.0
"""The lowest ``log p`` the ``"prior"`` observation shows: a smaller one (probability below
4e-44) and an invalid action's ``-inf`` read as this, so the observation space is bounded."""
SUMMARY_BOUND = 1.0
"""The prior's summary lies in ``[-1, 1]`` (a recurrent output, as both shipped models'): the
bound of the ``"prior"`` observation's ``"prior_summary"``."""


class CompositionBatch(Protocol):
    """``B`` pieces composed side by side; what :class:`BatchedEnv` and :class:`BatchedVectorEnv`
    need of a batch."""

    def reset(self, index: Sequence[int], primers: Sequence[Any], keys: Sequence[Key]) -> None:
        """Start new pieces in the slots ``index`` with their primers and keys."""
        ...

    def step(
        self, actions: np.ndarray, active: np.ndarray, score: bool = True
    ) -> list[dict[str, float]]:
        """Play ``actions[i]`` in every ``active`` slot; their reward parts (``{}`` elsewhere).
        ``score=False``: a :meth:`reset` follows at once and scores the next actions."""
        ...

    def ends(self, actions: np.ndarray, active: np.ndarray) -> np.ndarray:
        """``(B,)``: which ``active`` slots finish their piece by playing ``actions``."""
        ...

    def done(self, i: int) -> bool: ...

    def observation(self, i: int) -> np.ndarray: ...

    def observations(self) -> np.ndarray:
        """``(B, ...)``: every slot's observation."""
        ...

    def info(self, i: int, reward_parts: dict[str, float] | None = None) -> dict[str, Any]:
        """Slot ``i``'s ``info``: after a step, with its ``reward_parts``; without them, its
        reset's (the piece has just started)."""
        ...

    def prior_observations(self) -> dict[str, np.ndarray]:
        """``{"prior_summary": (B, K, H), "prior_log_probs": (B, A)}`` (and ``"action_mask"``
        ``(B, A)`` where actions can be invalid): what the prior knows of every slot's state."""
        ...

    def piece(self, i: int) -> Any:
        """Slot ``i``'s composition so far, as its environment's piece type."""
        ...

    def render_ansi(self, i: int) -> str: ...

    def render_rgb(self, i: int) -> np.ndarray: ...

    def get_state(self) -> dict[str, Any]: ...

    def set_state(self, state: dict[str, Any]) -> None: ...


def generator_state(generator: np.random.Generator) -> dict[str, Any]:
    return generator.bit_generator.state


def generator_from(state: dict[str, Any]) -> np.random.Generator:
    generator = seeding.np_random()[0]
    generator.bit_generator.state = state
    return generator


def parse_keys(key: str | Key | Sequence[str | Key], what: str = "key") -> tuple[Key, ...]:
    """The keys of a key argument (:func:`~musicgym.music.keys.parse_keys`), or one line naming
    ``what``."""
    try:
        return music_keys.parse_keys(key)
    except Exception as error:
        raise EnvArgumentError(f"{what}: {error}") from None


def draw_key(keys: tuple[Key, ...], rng: np.random.Generator) -> Key:
    """An episode's key: one of ``keys``, uniformly from ``rng`` (which one key leaves alone)."""
    return keys[0] if len(keys) == 1 else keys[int(rng.integers(len(keys)))]


def check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    options = dict(options or {})
    unknown = set(options) - {"primer", "key"}
    if unknown:
        raise EnvArgumentError(
            f"options: unknown reset option(s) {sorted(unknown)}; expected 'primer' and/or 'key'"
        )
    return options


def check_render_mode(render_mode: str | None) -> None:
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise EnvArgumentError(f"render_mode: expected one of {RENDER_MODES} or None")


def check_observation_mode(observation: str, prior: Any) -> str:
    """The ``observation`` argument checked; ``"prior"`` needs a prior."""
    if observation not in OBSERVATION_MODES:
        raise EnvArgumentError(
            f"observation: expected one of {OBSERVATION_MODES}, got {observation!r}"
        )
    if observation == "prior" and prior is None:
        raise EnvArgumentError("observation: 'prior' needs a prior (prior=None was given)")
    return observation


def check_threads(threads: Any) -> int | None:
    """The ``threads`` argument checked: ``None``, or a thread count 1 .. :data:`CORES`."""
    if threads is None:
        return None
    if (
        isinstance(threads, bool)
        or not isinstance(threads, (int, np.integer))
        or not 1 <= threads <= CORES
    ):
        raise EnvArgumentError(
            f"threads: expected a thread count 1..{CORES} (this machine's cores) or None "
            f"(torch's own setting), got {threads!r}"
        )
    return int(threads)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` torch threads and give the caller back its own count after it
    (``None``: leave torch alone). Setting the count costs about a microsecond: the environments
    wrap every reset and step in it, so a user's own thread setting holds outside them."""
    previous = torch.get_num_threads()
    if threads is None or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


Method = TypeVar("Method", bound=Callable[..., Any])


def on_env_threads(method: Method) -> Method:
    """``method`` of an environment run on the environment's ``threads``."""

    @functools.wraps(method)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        with torch_threads(self.threads):
            return method(self, *args, **kwargs)

    return wrapped  # type: ignore[return-value]


def check_prior_weight(prior_weight: Any) -> float:
    if (
        isinstance(prior_weight, bool)
        or not isinstance(prior_weight, (int, float, np.floating))
        or not 0 <= prior_weight < math.inf
    ):
        raise EnvArgumentError(f"prior_weight: expected a finite number >= 0, got {prior_weight!r}")
    return float(prior_weight)


def prior_observation_space(
    plain: spaces.Box, summary_shape: tuple[int, int], num_actions: int, masked: bool
) -> spaces.Dict:
    """The ``"prior"`` observation of one environment: ``"observation"`` (the ``plain`` one),
    ``"prior_summary"`` ``(K, H)``, ``"prior_log_probs"`` ``(A,)`` and, if ``masked``,
    ``"action_mask"`` ``(A,)`` (1: valid)."""
    parts: dict[str, spaces.Space] = {
        "observation": plain,
        "prior_summary": spaces.Box(-SUMMARY_BOUND, SUMMARY_BOUND, summary_shape, np.float32),
        "prior_log_probs": spaces.Box(LOG_PROB_FLOOR, 0.0, (num_actions,), np.float32),
    }
    if masked:
        parts["action_mask"] = spaces.MultiBinary(num_actions)
    return spaces.Dict(parts)


def shown_log_probs(log_probs: np.ndarray) -> np.ndarray:
    """``log p`` as the ``"prior"`` observation shows it: float32 in ``[LOG_PROB_FLOOR, 0]``."""
    return np.clip(log_probs, LOG_PROB_FLOOR, 0.0).astype(np.float32)


class _Composing:
    """The hooks a composition environment fills in (shared by the single and the vector env)."""

    primer: Any
    keys: tuple[Key, ...]
    """The keys of the rules, one drawn per episode (:func:`draw_key`)."""
    _batch: Any
    observation_mode: str = "plain"
    threads: int | None = 1
    """Torch threads of the environment's prior computations (see :func:`torch_threads`)."""

    def piece(self, i: int = 0) -> Any:
        """The composition so far (of sub-environment ``i``), as the environment's piece type: a
        melody's tokens, a chorale's :class:`~musicgym.music.notestate.NoteState`. After a
        terminating step (next-step autoreset) it is the finished piece until the next step."""
        return self._batch.piece(i)

    def _observed(self, plain: np.ndarray, index: int | None = None) -> Any:
        """The observation of the plain one ``plain`` (of slot ``index``, or of every slot): itself
        in the ``"plain"`` mode, with the prior's parts in the ``"prior"`` mode."""
        if self.observation_mode == "plain":
            return plain
        parts = self._batch.prior_observations()
        if index is not None:
            parts = {name: value[index] for name, value in parts.items()}
        return {"observation": plain, **parts}

    def parse_primer(self, primer: Any, what: str = "primer") -> Any:
        """The primer argument checked once (its kind is the environment's)."""
        raise NotImplementedError

    def draw_primer(self, primer: Any, key: Key, rng: np.random.Generator) -> Any:
        """One episode's primer (in ``key``) from a parsed primer argument, drawing from ``rng``
        if needed."""
        raise NotImplementedError

    def check_actions(self, actions: np.ndarray, active: np.ndarray, what: str) -> np.ndarray:
        """The actions of the ``active`` slots as integers, or one line naming the bad one."""
        raise NotImplementedError

    def attach_prior(self) -> None:
        """Give the batch its prior, if it has to be loaded first."""

    def _episode_options(self, options: dict[str, Any] | None) -> tuple[Any, tuple[Key, ...]]:
        """The primer and the keys an episode draws from: the reset ``options``', else the
        environment's."""
        options = check_options(options)
        primer = (
            self.parse_primer(options["primer"], "options['primer']")
            if "primer" in options
            else self.primer
        )
        keys = parse_keys(options["key"], "options['key']") if "key" in options else self.keys
        return primer, keys


class BatchedEnv(_Composing, gym.Env[np.ndarray, np.int64]):
    """A composition environment: its batch at ``B = 1`` (see the module docstring)."""

    render_mode: str | None

    @on_env_threads
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a piece; ``options`` may set this episode's ``"primer"`` and ``"key"``."""
        super().reset(seed=seed)
        primer, keys = self._episode_options(options)
        self.attach_prior()
        key = draw_key(keys, self.np_random)
        self._batch.reset([0], [self.draw_primer(primer, key, self.np_random)], [key])
        self._needs_reset = False
        if self.render_mode == "human":
            self.render()
        return self._observed(self._batch.observation(0), 0), self._batch.info(0)

    @on_env_threads
    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Play one action."""
        if self._needs_reset:
            raise ResetNeeded(
                "Cannot call env.step() before calling env.reset() or after the episode ended "
                "(terminated=True); call env.reset() first"
            )
        actions = self.check_actions(np.array([action], dtype=object), np.array([True]), "action")
        (parts,) = self._batch.step(actions, np.array([True]))
        terminated = self._batch.done(0)
        self._needs_reset = terminated
        if self.render_mode == "human":
            self.render()
        return (
            self._observed(self._batch.observation(0), 0),
            float(sum(parts.values())),
            terminated,
            False,
            self._batch.info(0, parts),
        )

    def observe(self) -> Any:
        """The observation of the current state: what the last :meth:`reset` or :meth:`step`
        returned (e.g. after :meth:`set_state`)."""
        return self._observed(self._batch.observation(0), 0)

    def render(self) -> str | np.ndarray | None:
        """The piece as text (``"ansi"``; ``"human"`` prints it) or a piano roll
        (``"rgb_array"``)."""
        if self.render_mode == "ansi":
            return self._batch.render_ansi(0)
        if self.render_mode == "human":
            print(self._batch.render_ansi(0))
        if self.render_mode == "rgb_array":
            return self._batch.render_rgb(0)
        return None

    def get_state(self) -> dict[str, Any]:
        """The episode in progress and the random generator, as tensors and lists: after
        :meth:`set_state` on an env made with the same arguments, every later reset and step
        returns what this env would have returned (a checkpoint's exact resume)."""
        return {
            "batch": self._batch.get_state(),
            "np_random": generator_state(self.np_random),
            "np_random_seed": self._np_random_seed,
            "needs_reset": self._needs_reset,
        }

    @on_env_threads
    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state`."""
        self.attach_prior()
        self._batch.set_state(state["batch"])
        self._np_random = generator_from(state["np_random"])
        self._np_random_seed = state["np_random_seed"]
        self._needs_reset = bool(state["needs_reset"])


class BatchedVectorEnv(_Composing, VectorEnv):
    """``num_envs`` copies of a :class:`BatchedEnv`, one batch for all of them (see the module
    docstring). Sub-environment ``i`` draws its primers from its own generator, seeded ``seed +
    i`` by ``reset(seed=seed)``, so it returns exactly what ``SyncVectorEnv`` of the single env
    returns for the same seeds and actions (up to the prior's own batch-size rounding).
    """

    render_mode: str | None

    def _start_vector(
        self, num_envs: int, autoreset_mode: AutoresetMode | str, render_mode: str | None
    ) -> None:
        """The vector env's own settings (call first in ``__init__``)."""
        if (
            isinstance(num_envs, bool)
            or not isinstance(num_envs, (int, np.integer))
            or num_envs < 1
        ):
            raise EnvArgumentError(f"num_envs: expected a positive integer, got {num_envs!r}")
        check_render_mode(render_mode)
        self.num_envs, self.render_mode = int(num_envs), render_mode
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self._generators = [seeding.np_random()[0] for _ in range(self.num_envs)]
        self._autoreset = np.zeros(self.num_envs, bool)
        self._needs_reset = True

    def _gather_infos(self, infos: dict[int, dict[str, Any]]) -> dict[str, Any]:
        """The vector env's infos from sub-environment ``i``'s ``infos[i]``: what
        ``VectorEnv._add_info`` builds one sub-environment after another (each key's array typed
        by the first sub-environment that has it, ``final_obs`` an object array, a ``_key`` mask
        beside every key, dicts gathered likewise), in one pass per key."""
        gathered: dict[str, Any] = {}
        keys = list(dict.fromkeys(key for info in infos.values() for key in info))
        for key in keys:
            having = {i: info[key] for i, info in infos.items() if key in info}
            first = next(iter(having.values()))
            if key != "final_obs" and isinstance(first, dict):
                gathered[key] = self._gather_infos(having)
            else:
                if key == "final_obs":
                    array = np.full(self.num_envs, fill_value=None, dtype=object)
                elif type(first) in (int, float, bool) or isinstance(first, np.number):
                    array = np.zeros(self.num_envs, dtype=type(first))
                elif isinstance(first, np.ndarray):
                    array = np.zeros((self.num_envs, *first.shape), dtype=first.dtype)
                else:
                    array = np.full(self.num_envs, fill_value=None, dtype=object)
                for i, value in having.items():
                    array[i] = value
                gathered[key] = array
            mask = np.zeros(self.num_envs, dtype=np.bool_)
            mask[list(having)] = True
            gathered[f"_{key}"] = mask
        return gathered

    def _observations(self) -> Any:
        return self._observed(self._batch.observations())

    def _reset_slots(self, index: Sequence[int], primer: Any, keys: tuple[Key, ...]) -> None:
        drawn = [draw_key(keys, self._generators[i]) for i in index]
        primers = [
            self.draw_primer(primer, key, self._generators[i]) for i, key in zip(index, drawn)
        ]
        self._batch.reset(index, primers, drawn)

    @on_env_threads
    def reset(
        self,
        *,
        seed: int | list[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-environment (or those of ``options["reset_mask"]``); seeds as
        ``SyncVectorEnv``: ``None``, an int (``seed + i``) or one per sub-environment."""
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(self.num_envs, bool)
        elif not (
            isinstance(mask, np.ndarray)
            and mask.dtype == np.bool_
            and mask.shape == (self.num_envs,)
        ):
            raise EnvArgumentError(
                f"options['reset_mask']: expected a bool array of shape ({self.num_envs},)"
            )
        primer, keys = self._episode_options(options)
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise EnvArgumentError(f"seed: expected {self.num_envs} seeds, got {len(seeds)}")
        self.attach_prior()
        index = np.flatnonzero(mask)
        for i in index:
            if seeds[i] is not None:
                self._generators[i] = seeding.np_random(seeds[i])[0]
        self._reset_slots(index.tolist(), primer, keys)
        self._autoreset[index] = False
        self._needs_reset = False
        infos = self._gather_infos({int(i): self._batch.info(i) for i in index})
        if self.render_mode == "human":
            self.render()
        return self._observations(), infos

    @on_env_threads
    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-environment; those that ended on the previous step are reset instead
        (next-step autoreset) and report reward 0."""
        if self._needs_reset:
            raise ResetNeeded("Cannot call step() before calling reset()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise EnvArgumentError(
                f"actions: expected shape ({self.num_envs},), got {actions.shape}"
            )
        resetting = self._autoreset.copy()
        active = ~resetting
        actions = self.check_actions(actions, active, "actions")
        if self.autoreset_mode == AutoresetMode.DISABLED and self._autoreset.any():
            raise ResetNeeded(
                f"sub-environments {np.flatnonzero(self._autoreset).tolist()} ended; reset them "
                "with reset(options={'reset_mask': ...}) (autoreset_mode=DISABLED)"
            )
        terminations = self._batch.ends(actions, active)
        same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
        ending = terminations if same_step else resetting
        parts = self._batch.step(actions, active, score=not ending.any())
        rewards = np.array([sum(p.values()) if p else 0.0 for p in parts], np.float64)
        finals: dict[int, dict[str, Any]] = {}
        if same_step:
            for i in np.flatnonzero(terminations):
                finals[int(i)] = {
                    "final_obs": self._observed(self._batch.observation(i), i),
                    "final_info": self._batch.info(i, parts[i]),
                }
        if ending.any():
            # as the single env's reset() without options: the constructor's primer and keys
            self._reset_slots(np.flatnonzero(ending).tolist(), self.primer, self.keys)
        each = {}
        for i in range(self.num_envs):
            reported = active[i] and not (same_step and terminations[i])
            each[i] = {**finals.get(i, {}), **self._batch.info(i, parts[i] if reported else None)}
        infos = self._gather_infos(each)
        self._autoreset = np.zeros(self.num_envs, bool) if same_step else terminations
        truncations = np.zeros(self.num_envs, bool)
        if self.render_mode == "human":
            self.render()
        return self._observations(), rewards, terminations, truncations, infos

    def observe(self) -> Any:
        """The observations of the current states: what the last :meth:`reset` or :meth:`step`
        returned (e.g. after :meth:`set_state`)."""
        return self._observations()

    def render(self) -> tuple[str, ...] | tuple[np.ndarray, ...] | None:
        """Every sub-environment's render (see :meth:`BatchedEnv.render`)."""
        if self.render_mode == "ansi":
            return tuple(self._batch.render_ansi(i) for i in range(self.num_envs))
        if self.render_mode == "human":
            for i in range(self.num_envs):
                print(f"{i}: {self._batch.render_ansi(i)}")
        if self.render_mode == "rgb_array":
            return tuple(self._batch.render_rgb(i) for i in range(self.num_envs))
        return None

    def get_state(self) -> dict[str, Any]:
        """The pieces in progress and every sub-environment's random generator (see
        :meth:`BatchedEnv.get_state`): restored by :meth:`set_state` on a vector env made with
        the same arguments, later steps and resets return the same as this one's."""
        return {
            "batch": self._batch.get_state(),
            "generators": [generator_state(g) for g in self._generators],
            "autoreset": self._autoreset.tolist(),
            "needs_reset": self._needs_reset,
        }

    @on_env_threads
    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state`."""
        self.attach_prior()
        self._batch.set_state(state["batch"])
        self._generators = [generator_from(g) for g in state["generators"]]
        self._autoreset = np.array(state["autoreset"], bool)
        self._needs_reset = bool(state["needs_reset"])
