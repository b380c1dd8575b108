"""``MusicComposition-v0``: compose a melody one 16th note at a time.

:class:`MelodyBatch` holds the logic of ``B`` melodies composed side by side (tokens, rule rewards,
candidate frames, one batched prior call per step). :class:`MusicCompositionEnv` is that logic at
``B = 1``; :class:`MusicCompositionVectorEnv` at ``B = num_envs``, so both return the same numbers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from musicgym.checks import check_device
from musicgym.config import DEFAULTS
from musicgym.envs.stepper import TokenStepper, check_prior_range
from musicgym.errors import EnvArgumentError
from musicgym.music.keys import Key, pitch_name
from musicgym.music.tokens import (
    NO_EVENT,
    NOTE_OFF,
    NUM_TOKENS,
    TokenError,
    token_to_pitch,
    tokens_to_note_state,
    validate_tokens,
)
from musicgym.prior import MelodyPrior, resolve_prior
from musicgym.rules import RuleContext, RulesArgument, resolve_rules, rule_rewards

STEPS_PER_BAR = 16
"""16th notes in a 4/4 bar: the size of the bar-position one-hot."""
RENDER_MODES = ["ansi", "human", "rgb_array"]

PriorArgument = str | os.PathLike | MelodyPrior | None
PrimerArgument = str | os.PathLike | Sequence[int] | None


def parse_primer(primer: PrimerArgument, what: str = "primer") -> str | tuple[int, ...] | None:
    """A primer argument checked once: ``None``, ``"random_note"``, or its tokens (a token list, or
    a MIDI file read with :func:`musicgym.music.midi.read_melody`)."""
    if primer is None or (isinstance(primer, str) and primer == "random_note"):
        return primer
    if isinstance(primer, (str, os.PathLike)):
        path = Path(primer)
        if not path.is_file():
            raise EnvArgumentError(
                f"{what}: {str(primer)!r} is neither 'random_note' nor an existing MIDI file"
            )
        from musicgym.music.midi import read_melody  # mido only when a MIDI primer is used

        return tuple(read_melody(path))
    if isinstance(primer, (bytes, dict)) or not isinstance(primer, (Sequence, np.ndarray)):
        raise EnvArgumentError(
            f"{what}: expected None, 'random_note', a token list or a MIDI file; got {primer!r}"
        )
    try:
        return tuple(validate_tokens(primer, what))
    except TokenError as error:
        raise EnvArgumentError(str(error)) from None


def draw_primer(primer: str | tuple[int, ...] | None, rng: np.random.Generator) -> list[int]:
    """The primer tokens of one episode; ``"random_note"`` draws, as the original does, one token
    uniformly from 0..36 (NOTE_OFF and NO_EVENT included, the top pitch token 37 excluded)."""
    if primer is None:
        return []
    if primer == "random_note":
        return [int(rng.integers(0, NUM_TOKENS - 1))]
    return list(primer)


class MelodyBatch:
    """``B`` melodies composed side by side: their tokens, rule rewards and prior scores.

    Each melody is its primer (fed to the prior, shown in the observation, never scored by the
    rules) followed by its composition (the tokens the agent plays; what the rules and ``info``
    see). The prior plays them through a :class:`~musicgym.envs.stepper.TokenStepper`; the
    log-probabilities of the 38 actions of every melody are computed once per step, in one prior
    call, right after the previous action, and cached.

    Args:
        num_melodies: ``B``.
        length: tokens per finished composition.
        weighted_rules: from :func:`musicgym.rules.resolve_rules`.
        c: the divisor of the rule rewards.
        prior: a loaded melody prior, or ``None`` (the prior part of the reward is then 0).
        history: how many recent tokens the observation shows.
        device: where the prior's tensors live.
    """

    def __init__(
        self,
        num_melodies: int,
        length: int,
        weighted_rules: list,
        c: float,
        prior: MelodyPrior | None,
        history: int,
        device: str | torch.device = "cpu",
    ) -> None:
        self.num_melodies, self.length, self.c, self.history = num_melodies, length, c, history
        self.weighted_rules = weighted_rules
        self.device = torch.device(device)
        self.primers: list[list[int]] = [[] for _ in range(num_melodies)]
        self.compositions: list[list[int]] = [[] for _ in range(num_melodies)]
        self.keys = [Key()] * num_melodies
        self.log_probs = np.zeros((num_melodies, NUM_TOKENS))  # (B, 38) of the next action
        self.stepper: TokenStepper | None = None
        self.set_prior(prior)

    @property
    def observation_size(self) -> int:
        return self.history * NUM_TOKENS + STEPS_PER_BAR + 1

    def set_prior(self, prior: MelodyPrior | None) -> None:
        """Use ``prior`` (its pitch range checked), its state at the start of every melody."""
        if prior is not None:
            self.stepper = TokenStepper(prior, self.num_melodies, device=self.device)

    # ------------------------------------------------------------------------------ episodes
    def reset(
        self, index: Sequence[int], primers: Sequence[list[int]], keys: Sequence[Key]
    ) -> None:
        """Start new melodies in the slots ``index`` with their primers and keys, and score every
        melody's next action (one prior call)."""
        for i, primer, key in zip(index, primers, keys, strict=True):
            self.primers[i], self.compositions[i], self.keys[i] = list(primer), [], key
        if self.stepper is not None and len(index):
            self.stepper.restart(index, primers, keys)
            self._score()

    def done(self, i: int) -> bool:
        return len(self.compositions[i]) >= self.length

    def _score(self) -> None:
        """Cache ``log p(a | s)`` of the 38 actions of every melody (one prior call; ``exp`` of
        the 38 values sums to 1 in every state)."""
        assert self.stepper is not None
        self.log_probs = self.stepper.action_log_probs().to("cpu", torch.float64).numpy()

    def step(
        self, actions: np.ndarray, active: np.ndarray, score: bool = True
    ) -> list[dict[str, float]]:
        """Play ``actions[i]`` in every ``active`` melody; returns their reward parts (``{}`` for
        inactive ones). Inactive slots play NOTE_OFF and must be reset before they are read
        again. ``score=False`` leaves the scoring of the next actions to a :meth:`reset` that
        follows, so a step costs one prior call either way."""
        parts: list[dict[str, float]] = []
        for i in range(self.num_melodies):
            if not active[i]:
                parts.append({})
                continue
            action = int(actions[i])
            composition = self.compositions[i]
            context = RuleContext(tuple(composition), action, self.length, self.keys[i])
            parts.append(
                {
                    "prior": float(self.log_probs[i, action]) if self.stepper is not None else 0.0,
                    **rule_rewards(self.weighted_rules, context, self.c),
                }
            )
        if self.stepper is not None:
            self.stepper.play(torch.as_tensor(np.where(active, actions, NOTE_OFF)))
        for i in np.flatnonzero(active):
            self.compositions[i].append(int(actions[i]))
        if self.stepper is not None and score:
            self._score()
        return parts

    # --------------------------------------------------------------------------------- state
    def get_state(self) -> dict[str, Any]:
        """Everything the melodies' future depends on, as tensors and lists (for ``torch.save``
        with ``weights_only`` loading); :meth:`set_state` restores it bit for bit."""
        return {
            "primers": [list(p) for p in self.primers],
            "compositions": [list(c) for c in self.compositions],
            "keys": [key.name for key in self.keys],
            "log_probs": torch.from_numpy(self.log_probs.copy()),
            "stepper": None if self.stepper is None else self.stepper.state_dict(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` of a batch of the same size and prior."""
        if len(state["primers"]) != self.num_melodies:
            raise EnvArgumentError(
                f"state: {len(state['primers'])} melodies, this batch has {self.num_melodies}"
            )
        self.primers = [list(p) for p in state["primers"]]
        self.compositions = [list(c) for c in state["compositions"]]
        self.keys = [Key.parse(name) for name in state["keys"]]
        self.log_probs = state["log_probs"].numpy().copy()
        saved = state.get("stepper")  # None: saved before the prior was loaded (no reset)
        if self.stepper is not None and saved is not None:
            self.stepper.load_state_dict(saved)

    # ---------------------------------------------------------------------------- observation
    def observation(self, i: int) -> np.ndarray:
        """The observation of melody ``i`` (see :class:`MusicCompositionEnv`)."""
        observation = np.zeros(self.observation_size, np.float32)
        composition = self.compositions[i]
        recent = (self.primers[i] + composition)[-self.history :][::-1]
        observation[np.arange(len(recent)) * NUM_TOKENS + np.asarray(recent, dtype=np.int64)] = 1.0
        step = len(composition)
        bar_position = self.history * NUM_TOKENS + step % STEPS_PER_BAR
        observation[bar_position] = 1.0
        observation[-1] = step / self.length
        return observation

    def info(self, i: int, reward_parts: dict[str, float] | None = None) -> dict[str, Any]:
        """``info`` of melody ``i``: its composition, its primer, its key and (after a step) reward
        parts."""
        info: dict[str, Any] = {
            "tokens": list(self.compositions[i]),
            "primer": list(self.primers[i]),
            "key": self.keys[i].name,
        }
        if reward_parts is not None:
            info["rewards"] = reward_parts
        return info

    def render_ansi(self, i: int) -> str:
        """The melody as text: the primer in brackets, pitch names, ``-`` held, ``.`` rest, ``|``
        every bar."""

        def word(token: int) -> str:
            if token == NOTE_OFF:
                return "."
            if token == NO_EVENT:
                return "-"
            return pitch_name(token_to_pitch(token))

        words = []
        for t, token in enumerate(self.compositions[i]):
            if t and t % STEPS_PER_BAR == 0:
                words.append("|")
            words.append(word(token))
        primer = " ".join(map(word, self.primers[i]))
        return (f"[{primer}] " if primer else "") + " ".join(words)

    def render_rgb(self, i: int) -> np.ndarray:
        """The composition as a piano roll image (``musicgym.music.pianoroll.piano_roll_rgb``)."""
        from musicgym.music.pianoroll import piano_roll_rgb  # matplotlib only when rendering

        tokens = self.compositions[i] or [NO_EVENT]  # one silent step for an empty melody
        return piano_roll_rgb(tokens_to_note_state(tokens))


def _generator_state(generator: np.random.Generator) -> dict[str, Any]:
    return generator.bit_generator.state


def _generator_from(state: dict[str, Any]) -> np.random.Generator:
    generator = seeding.np_random()[0]
    generator.bit_generator.state = state
    return generator


def _check_length_c_history(length: int, c: float, history: int | None) -> int:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise EnvArgumentError(f"length: expected a positive integer, got {length!r}")
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < math.inf:
        raise EnvArgumentError(f"c: expected a positive number, got {c!r}")
    history = int(length) if history is None else history
    if isinstance(history, bool) or not isinstance(history, (int, np.integer)) or history < 1:
        raise EnvArgumentError(f"history: expected a positive integer, got {history!r}")
    return int(history)


def _parse_key(key: str | Key, what: str = "key") -> Key:
    try:
        return Key.parse(key)
    except Exception as error:
        raise EnvArgumentError(f"{what}: {error}") from None


def _check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    options = dict(options or {})
    unknown = set(options) - {"primer", "key"}
    if unknown:
        raise EnvArgumentError(
            f"options: unknown reset option(s) {sorted(unknown)}; expected 'primer' and/or 'key'"
        )
    return options


def _check_action(action: Any, what: str = "action") -> int:
    if isinstance(action, np.ndarray) and action.shape == ():
        action = action[()]
    if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
        raise EnvArgumentError(f"{what}: expected an integer token 0..37, got {action!r}")
    if not 0 <= action < NUM_TOKENS:
        raise EnvArgumentError(f"{what}: {action} is outside the action space 0..37")
    return int(action)


class _PriorLoader:
    """Turns the ``prior`` argument into a loaded prior on first use (so ``gym.make`` stays cheap
    and a shipped checkpoint is read only when an episode starts)."""

    def __init__(self, prior: PriorArgument, device: str | torch.device) -> None:
        if prior is not None and not isinstance(prior, (str, os.PathLike, MelodyPrior)):
            raise EnvArgumentError(
                f"prior: expected a shipped name, a checkpoint path, a MelodyPrior or None; "
                f"got {prior!r}"
            )
        if isinstance(prior, MelodyPrior):
            check_prior_range(prior)
        self.argument, self.device = prior, device
        self.attached = prior is None  # a rules-only env has nothing to attach

    def attach(self, batch: MelodyBatch) -> None:
        """Give ``batch`` the loaded prior, on the first call only."""
        if not self.attached:
            batch.set_prior(self.load())
            self.attached = True

    def load(self) -> MelodyPrior | None:
        if self.argument is None or isinstance(self.argument, MelodyPrior):
            return self.argument
        return resolve_prior(self.argument, self.device)


class MusicCompositionEnv(gym.Env[np.ndarray, np.int64]):
    """Compose a melody one 16th note at a time, rewarded by a prior and by music theory.

    ## Description

    The RL Tuner task of Jaques et al. (2017): an agent writes a melody of ``length`` tokens (two
    4/4 bars of 16th notes by default). Each action is a melody token; the reward is the frozen
    prior's log-probability of the action plus music-theory rules (``spec/melody-rules.md``), so
    an agent learns to follow the rules while staying close to what the prior finds likely.

    ## Action Space

    ``Discrete(38)``:

    | token | meaning |
    |-------|---------|
    | 0     | NOTE_OFF: silence from this step on (a rest) |
    | 1     | NO_EVENT: nothing new; a sounding note is held, a rest goes on |
    | 2..37 | strike MIDI pitch ``46 + token`` (48 = C3 ... 83 = B5) |

    ## Observation Space

    A flat ``Box(0, 1, (history * 38 + 17,), float32)``, with ``K = history`` (default ``length``):

    | index                 | observation                                                    |
    |-----------------------|----------------------------------------------------------------|
    | ``38 j .. 38 j + 37`` | one-hot of the ``j``-th most recent token, ``j = 0 .. K - 1``  |
    |                       | (``j = 0`` the last played; primer tokens included; all zero   |
    |                       | where the melody is shorter than ``j + 1``)                    |
    | ``38 K .. 38 K + 15`` | one-hot of ``t mod 16``, the next step's position in the bar   |
    | ``38 K + 16``         | progress ``t / length``                                        |

    ``t`` is the number of tokens composed so far (the primer not counted).

    ## Rewards

    ``log p(a | s) + sum_i w_i r_i(s, a) / c``, a Python ``float``.

    * ``log p(a | s)`` (part ``"prior"``) is exact under the frozen prior, a
      :class:`musicgym.prior.MelodyPrior` fed the primer and the melody so far, all 38 actions
      scored in one batched call; ``exp`` of the 38 values sums to 1 (:meth:`action_log_probs`
      gives them). 0 when ``prior=None``. Under a model of frames (the Bi-axial LSTM) the 38
      candidate next frames the tokens produce (NOTE_OFF: silence; NO_EVENT: the sounding note
      held, or silence; a pitch: that note struck) are scored and renormalised over the distinct
      frames: when nothing sounds, NOTE_OFF and NO_EVENT produce the same silent frame and share
      its probability equally (:class:`musicgym.envs.actions.FrameMelodyPrior`). A model of
      tokens (the Note RNN) gives every token its own probability.
    * ``r_i`` are the rules (:mod:`musicgym.rules`), by default the preset ``"jaques2017"``; they
      see the composition only, not the primer.

    ``info["rewards"]`` holds every part by name (``"prior"`` and each rule's ``w_i r_i / c``;
    they sum to the reward); ``info["tokens"]`` the composition so far; ``info["primer"]`` its
    primer; ``info["key"]`` its key.

    ## Starting State

    An empty composition at the start of a bar. The primer, if any, is fed to the prior and shown
    in the observation: ``None``; ``"random_note"``, one token drawn from ``self.np_random`` as in
    the original (uniformly from 0..36); a token list; or a MIDI file (its melody tokens).

    ## Episode End

    The episode terminates after ``length`` actions. There is no truncation (wrap in
    ``TimeLimit`` for one). ``step`` after the end, or before ``reset``, raises
    ``gymnasium.error.ResetNeeded``.

    ## Arguments

    ```python
    gym.make("MusicComposition-v0", length=32, key="C major", prior="melody16c",
             rules="jaques2017", c=0.5, primer=None, render_mode=None, device="cpu")
    ```

    The defaults are :data:`musicgym.config.DEFAULTS`.

    * ``length``: tokens per melody.
    * ``key``: the key of the rules (any name :meth:`musicgym.music.keys.Key.parse` reads); per
      episode with ``reset(options={"key": ...})``.
    * ``prior``: a shipped prior name, a checkpoint path, a loaded ``MelodyPrior`` (its pitch range
      must cover MIDI 48..83, moved into C first for a key-normalised prior: the melody in any
      ``key`` is transposed into C major / A minor before such a prior scores it), or ``None``
      for a rules-only env. Names and paths load on the first reset.
    * ``rules``: a preset name, rule names, a dict name -> weight, or rule objects
      (:func:`musicgym.rules.resolve_rules`).
    * ``c``: divisor of the rule rewards (0.5 in both papers).
    * ``primer``: see Starting State; per episode with ``reset(options={"primer": ...})``.
    * ``render_mode``: ``"ansi"`` (the melody as text), ``"human"`` (that text printed after
      every reset and step) or ``"rgb_array"`` (a piano roll; wrap it in gymnasium's
      ``HumanRendering`` for a pygame window).
    * ``device``: where the prior runs.
    * ``history``: tokens shown in the observation (default ``length``).

    ## Version History

    * v0: initial version. The default prior is ``melody16c`` (key-normalised Essen melodies;
      it was ``bach16`` before the RL Tuner's benchmark chose it); pass ``prior="bach16"`` for
      the earlier rewards.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": RENDER_MODES, "render_fps": 8}

    def __init__(
        self,
        length: int = DEFAULTS.length,
        key: str | Key = DEFAULTS.key,
        prior: PriorArgument = DEFAULTS.prior,
        rules: RulesArgument = DEFAULTS.rules,
        c: float = DEFAULTS.c,
        primer: PrimerArgument = None,
        render_mode: str | None = None,
        device: str | torch.device = "cpu",
        history: int | None = None,
    ) -> None:
        history = _check_length_c_history(length, c, history)
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise EnvArgumentError(f"render_mode: expected one of {RENDER_MODES} or None")
        check_device(device, error=EnvArgumentError)
        self.length, self.c, self.render_mode = int(length), float(c), render_mode
        self.key = _parse_key(key)
        self.primer = parse_primer(primer)
        self.weighted_rules = resolve_rules(rules)
        self._prior_loader = _PriorLoader(prior, device)
        self._batch = MelodyBatch(
            1, self.length, self.weighted_rules, self.c, None, history, device
        )
        self._needs_reset = True
        self.action_space = spaces.Discrete(NUM_TOKENS)
        self.observation_space = spaces.Box(0.0, 1.0, (self._batch.observation_size,), np.float32)

    @property
    def tokens(self) -> list[int]:
        """The composition so far."""
        return list(self._batch.compositions[0])

    def action_log_probs(self) -> np.ndarray:
        """``log p(a | s)`` of the 38 actions in the current state (zeros without a prior)."""
        return self._batch.log_probs[0].copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a melody; ``options`` may set this episode's ``"primer"`` and ``"key"``."""
        super().reset(seed=seed)
        options = _check_options(options)
        primer = (
            parse_primer(options["primer"], "options['primer']")
            if "primer" in options
            else self.primer
        )
        key = _parse_key(options["key"], "options['key']") if "key" in options else self.key
        self._prior_loader.attach(self._batch)
        self._batch.reset([0], [draw_primer(primer, self.np_random)], [key])
        self._needs_reset = False
        if self.render_mode == "human":
            self.render()
        return self._batch.observation(0), self._batch.info(0)

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Play one token."""
        if self._needs_reset:
            raise ResetNeeded(
                "Cannot call env.step() before calling env.reset() or after the episode ended "
                "(terminated=True); call env.reset() first"
            )
        action = _check_action(action)
        (parts,) = self._batch.step(np.array([action]), np.array([True]))
        terminated = self._batch.done(0)
        self._needs_reset = terminated
        reward = sum(parts.values())
        if self.render_mode == "human":
            self.render()
        return (
            self._batch.observation(0),
            float(reward),
            terminated,
            False,
            self._batch.info(0, parts),
        )

    def render(self) -> str | np.ndarray | None:
        """The melody as text (``"ansi"``; ``"human"`` prints it) or a piano roll
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
            "np_random": _generator_state(self.np_random),
            "np_random_seed": self._np_random_seed,
            "needs_reset": self._needs_reset,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state`."""
        self._prior_loader.attach(self._batch)
        self._batch.set_state(state["batch"])
        self._np_random = _generator_from(state["np_random"])
        self._np_random_seed = state["np_random_seed"]
        self._needs_reset = bool(state["needs_reset"])

    def to_midi(self, path: str | os.PathLike, include_primer: bool = False) -> None:
        """Write the composition (after the primer if ``include_primer``) to a MIDI file."""
        from musicgym.music.midi import write_melody

        tokens = self._batch.compositions[0]
        if include_primer:
            tokens = self._batch.primers[0] + tokens
        write_melody(tokens, path)


class MusicCompositionVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`MusicCompositionEnv` scored together: one batched prior
    call per step for all of them. Same arguments as the single env, plus ``num_envs`` and
    ``autoreset_mode`` (default next-step, Gymnasium 1.x). Sub-environment ``i`` draws its primers
    from its own generator, seeded ``seed + i`` by ``reset(seed=seed)``, so it returns exactly what
    ``SyncVectorEnv`` of the single env returns for the same seeds and actions (up to the prior's
    own batch-size rounding).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": RENDER_MODES,
        "render_fps": 8,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        length: int = DEFAULTS.length,
        key: str | Key = DEFAULTS.key,
        prior: PriorArgument = DEFAULTS.prior,
        rules: RulesArgument = DEFAULTS.rules,
        c: float = DEFAULTS.c,
        primer: PrimerArgument = None,
        render_mode: str | None = None,
        device: str | torch.device = "cpu",
        history: int | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    ) -> None:
        if (
            isinstance(num_envs, bool)
            or not isinstance(num_envs, (int, np.integer))
            or num_envs < 1
        ):
            raise EnvArgumentError(f"num_envs: expected a positive integer, got {num_envs!r}")
        history = _check_length_c_history(length, c, history)
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise EnvArgumentError(f"render_mode: expected one of {RENDER_MODES} or None")
        check_device(device, error=EnvArgumentError)
        self.num_envs, self.length, self.c = int(num_envs), int(length), float(c)
        self.render_mode = render_mode
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.key = _parse_key(key)
        self.primer = parse_primer(primer)
        self.weighted_rules = resolve_rules(rules)
        self._prior_loader = _PriorLoader(prior, device)
        self._batch = MelodyBatch(
            self.num_envs, self.length, self.weighted_rules, self.c, None, history, device
        )
        self.single_action_space = spaces.Discrete(NUM_TOKENS)
        self.single_observation_space = spaces.Box(
            0.0, 1.0, (self._batch.observation_size,), np.float32
        )
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._generators = [seeding.np_random()[0] for _ in range(self.num_envs)]
        self._autoreset = np.zeros(self.num_envs, bool)
        self._needs_reset = True

    def action_log_probs(self) -> np.ndarray:
        """``(num_envs, 38)`` ``log p(a | s)`` of every sub-environment's next action."""
        return self._batch.log_probs.copy()

    def _observations(self) -> np.ndarray:
        return np.stack([self._batch.observation(i) for i in range(self.num_envs)])

    def _reset_slots(
        self, index: Sequence[int], primer: str | tuple[int, ...] | None, key: Key
    ) -> None:
        primers = [draw_primer(primer, self._generators[i]) for i in index]
        self._batch.reset(index, primers, [key] * len(index))

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
        options = _check_options(options)
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise EnvArgumentError(f"seed: expected {self.num_envs} seeds, got {len(seeds)}")
        primer = (
            parse_primer(options["primer"], "options['primer']")
            if "primer" in options
            else self.primer
        )
        key = _parse_key(options["key"], "options['key']") if "key" in options else self.key
        self._prior_loader.attach(self._batch)
        index = np.flatnonzero(mask)
        for i in index:
            if seeds[i] is not None:
                self._generators[i] = seeding.np_random(seeds[i])[0]
        self._reset_slots(index.tolist(), primer, key)
        self._autoreset[index] = False
        self._needs_reset = False
        infos: dict[str, Any] = {}
        for i in index:
            infos = self._add_info(infos, self._batch.info(i), i)
        if self.render_mode == "human":
            self.render()
        return self._observations(), infos

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
        for i, action in enumerate(actions):
            _check_action(action, f"actions[{i}]")
        if self.autoreset_mode == AutoresetMode.DISABLED and self._autoreset.any():
            raise ResetNeeded(
                f"sub-environments {np.flatnonzero(self._autoreset).tolist()} ended; reset them "
                "with reset(options={'reset_mask': ...}) (autoreset_mode=DISABLED)"
            )
        resetting = self._autoreset.copy()
        active = ~resetting
        lengths = np.array([len(c) for c in self._batch.compositions])
        terminations = active & (lengths + 1 >= self.length)
        same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
        ending = terminations if same_step else resetting
        parts = self._batch.step(actions, active, score=not ending.any())
        rewards = np.array([sum(p.values()) if p else 0.0 for p in parts], np.float64)
        infos: dict[str, Any] = {}
        if same_step:
            for i in np.flatnonzero(terminations):
                final = {
                    "final_obs": self._batch.observation(i),
                    "final_info": self._batch.info(i, parts[i]),
                }
                infos = self._add_info(infos, final, i)
        if ending.any():
            # as the single env's reset() without options: the constructor's primer and key
            self._reset_slots(np.flatnonzero(ending).tolist(), self.primer, self.key)
        for i in range(self.num_envs):
            reported = active[i] and not (same_step and terminations[i])
            infos = self._add_info(infos, self._batch.info(i, parts[i] if reported else None), i)
        self._autoreset = np.zeros(self.num_envs, bool) if same_step else terminations
        truncations = np.zeros(self.num_envs, bool)
        if self.render_mode == "human":
            self.render()
        return self._observations(), rewards, terminations, truncations, infos

    def render(self) -> tuple[str, ...] | tuple[np.ndarray, ...] | None:
        """Every sub-environment's render (see :meth:`MusicCompositionEnv.render`)."""
        if self.render_mode == "ansi":
            return tuple(self._batch.render_ansi(i) for i in range(self.num_envs))
        if self.render_mode == "human":
            for i in range(self.num_envs):
                print(f"{i}: {self._batch.render_ansi(i)}")
        if self.render_mode == "rgb_array":
            return tuple(self._batch.render_rgb(i) for i in range(self.num_envs))
        return None

    def get_state(self) -> dict[str, Any]:
        """The melodies in progress and every sub-environment's random generator (see
        :meth:`MusicCompositionEnv.get_state`): restored by :meth:`set_state` on a vector env
        made with the same arguments, later steps and resets return the same as this one's."""
        return {
            "batch": self._batch.get_state(),
            "generators": [_generator_state(g) for g in self._generators],
            "autoreset": self._autoreset.tolist(),
            "needs_reset": self._needs_reset,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state`."""
        self._prior_loader.attach(self._batch)
        self._batch.set_state(state["batch"])
        self._generators = [_generator_from(g) for g in state["generators"]]
        self._autoreset = np.array(state["autoreset"], bool)
        self._needs_reset = bool(state["needs_reset"])
