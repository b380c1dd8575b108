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
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from musicgym.checks import check_device
from musicgym.config import DEFAULTS
from musicgym.envs.batched import (
    RENDER_MODES,
    BatchedEnv,
    BatchedVectorEnv,
    check_observation_mode,
    check_prior_weight,
    check_render_mode,
    check_threads,
    parse_keys,
    prior_observation_space,
    shown_log_probs,
)
from musicgym.envs.stepper import TokenStepper, check_prior_range
from musicgym.errors import CheckpointError, EnvArgumentError
from musicgym.music.keys import Key, pitch_name, several_keys
from musicgym.music.tokens import (
    NO_EVENT,
    NOTE_OFF,
    NUM_TOKENS,
    TokenError,
    token_to_pitch,
    tokens_to_note_state,
    validate_tokens,
)
from musicgym.prior import MelodyPrior, checkpoint_path, resolve_prior
from musicgym.rules import RuleContext, RulesArgument, resolve_rules, rule_rewards

STEPS_PER_BAR = 16
"""16th notes in a 4/4 bar: the size of the bar-position one-hot."""

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
        prior_weight: the weight of the prior's ``log p`` in the reward.
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
        prior_weight: float = 1.0,
    ) -> None:
        self.num_melodies, self.length, self.c, self.history = num_melodies, length, c, history
        self.weighted_rules, self.prior_weight = weighted_rules, prior_weight
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

    def ends(self, actions: np.ndarray, active: np.ndarray) -> np.ndarray:
        """``(B,)``: the ``active`` melodies that end with their next token."""
        lengths = np.array([len(c) for c in self.compositions])
        return active & (lengths + 1 >= self.length)

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
            scored = self.stepper is not None and self.prior_weight
            log_p = self.prior_weight * float(self.log_probs[i, action]) if scored else 0.0
            parts.append({"prior": log_p, **rule_rewards(self.weighted_rules, context, self.c)})
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

    def observations(self) -> np.ndarray:
        """``(B, observation_size)``: every melody's observation."""
        return np.stack([self.observation(i) for i in range(self.num_melodies)])

    def prior_observations(self) -> dict[str, np.ndarray]:
        """The prior's summary of every melody and ``log p`` of its 38 next tokens (every token
        is valid: no mask)."""
        assert self.stepper is not None, "the 'prior' observation needs a prior"
        return {
            "prior_summary": self.stepper.summary().to("cpu", torch.float32).numpy().copy(),
            "prior_log_probs": shown_log_probs(self.log_probs),
        }

    def piece(self, i: int) -> list[int]:
        """Melody ``i``'s tokens so far (its primer not included)."""
        return list(self.compositions[i])

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
        """The composition as a piano roll image (``musicgym.music.pianoroll.piano_roll_rgb``),
        of the whole melody's length from the first step on (the steps to come silent)."""
        from musicgym.music.pianoroll import piano_roll_rgb  # matplotlib only when rendering

        tokens = self.compositions[i] or [NO_EVENT]  # one silent step for an empty melody
        return piano_roll_rgb(tokens_to_note_state(tokens), steps=self.length)


def _check_length_c_history(length: int, c: float, history: int | None) -> int:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise EnvArgumentError(f"length: expected a positive integer, got {length!r}")
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < math.inf:
        raise EnvArgumentError(f"c: expected a positive number, got {c!r}")
    history = int(length) if history is None else history
    if isinstance(history, bool) or not isinstance(history, (int, np.integer)) or history < 1:
        raise EnvArgumentError(f"history: expected a positive integer, got {history!r}")
    return int(history)


def _check_actions(actions: np.ndarray, what: str) -> np.ndarray:
    """Every action an integer token 0..37 (``what[i]`` named when one is not)."""
    if len(actions) == 1 and what == "action":
        return np.array([_check_action(actions[0], what)])
    return np.array([_check_action(a, f"{what}[{i}]") for i, a in enumerate(actions)])


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
    and a shipped checkpoint is read only when an episode starts); a name that is not shipped or
    a missing file fails at once, at ``gym.make``, without reading the weights."""

    def __init__(self, prior: PriorArgument, device: str | torch.device) -> None:
        if prior is not None and not isinstance(prior, (str, os.PathLike, MelodyPrior)):
            raise EnvArgumentError(
                f"prior: expected a shipped name, a checkpoint path, a MelodyPrior or None; "
                f"got {prior!r}"
            )
        if isinstance(prior, MelodyPrior):
            check_prior_range(prior)
        elif prior is not None and not checkpoint_path(prior).is_file():
            raise CheckpointError(f"{checkpoint_path(prior)}: no such checkpoint file")
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


class _Melodies:
    """What the single and the vector melody env share: their hooks and the prior's scores."""

    _batch: MelodyBatch
    _prior_loader: _PriorLoader

    parse_primer = staticmethod(parse_primer)

    def draw_primer(
        self, primer: str | tuple[int, ...] | None, key: Key, rng: np.random.Generator
    ) -> list[int]:
        return draw_primer(primer, rng)  # a melody's primer is the same in every key

    def check_actions(self, actions: np.ndarray, active: np.ndarray, what: str) -> np.ndarray:
        return _check_actions(actions, what)

    def attach_prior(self) -> None:
        self._prior_loader.attach(self._batch)

    def _setup(
        self,
        num_melodies: int,
        length: int,
        key: str | Key,
        prior: PriorArgument,
        rules: RulesArgument,
        c: float,
        primer: PrimerArgument,
        device: str | torch.device,
        history: int | None,
        observation: str,
        prior_weight: float,
    ) -> tuple[spaces.Discrete, spaces.Space]:
        """Check and keep the arguments, make the batch; the action and observation spaces of
        one melody. The ``"prior"`` observation loads the prior now (its space has the prior's
        summary shape)."""
        history = _check_length_c_history(length, c, history)
        check_device(device, error=EnvArgumentError)
        self.observation_mode = check_observation_mode(observation, prior)
        self.length, self.c = int(length), float(c)
        self.prior_weight = check_prior_weight(prior_weight)
        self.keys = parse_keys(key)
        if several_keys(self.keys):
            raise EnvArgumentError(
                f"key: MusicComposition-v0 composes in one key (its observation does not show "
                f"one), got several: {key!r}"
            )
        self.primer = parse_primer(primer)
        self.weighted_rules = resolve_rules(rules, RuleContext)
        self._prior_loader = _PriorLoader(prior, device)
        self._batch = MelodyBatch(
            num_melodies,
            self.length,
            self.weighted_rules,
            self.c,
            None,
            history,
            device,
            self.prior_weight,
        )
        plain = spaces.Box(0.0, 1.0, (self._batch.observation_size,), np.float32)
        if self.observation_mode == "plain":
            return spaces.Discrete(NUM_TOKENS), plain
        self.attach_prior()
        assert self._batch.stepper is not None
        summary_shape = tuple(self._batch.stepper.prior.summary_shape)
        space = prior_observation_space(plain, summary_shape, NUM_TOKENS, masked=False)  # type: ignore[arg-type]
        return spaces.Discrete(NUM_TOKENS), space

    def action_log_probs(self) -> np.ndarray:
        """``log p(a | s)`` of the 38 actions in the current state (zeros without a prior):
        ``(38,)`` for the single env, ``(num_envs, 38)`` for the vector env."""
        log_probs = self._batch.log_probs.copy()
        return log_probs[0] if isinstance(self, BatchedEnv) else log_probs

    def action_masks(self) -> np.ndarray:
        """Every token is valid in every state (sb3-contrib's ``MaskablePPO`` convention):
        ``(38,)`` or ``(num_envs, 38)``."""
        masks = np.ones((self._batch.num_melodies, NUM_TOKENS), bool)
        return masks[0] if isinstance(self, BatchedEnv) else masks


class MusicCompositionEnv(_Melodies, BatchedEnv):
    """Compose a melody one 16th note at a time, rewarded by a prior and by music theory.

    ## Description

    The RL Tuner task of Jaques et al. (2017): an agent writes a melody of ``length`` tokens (two
    4/4 bars of 16th notes by default). Each action is a melody token; the reward is the frozen
    prior's log-probability of the action plus music-theory rules
    (``docs/spec/melody-rules.md``), so an agent learns to follow the rules while staying
    close to what the prior finds likely.

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

    With ``observation="prior"``, a ``Dict`` of that observation and what the frozen prior knows
    of the state (:func:`musicgym.envs.batched.prior_observation_space`):

    | key                   | space                                       | content            |
    |-----------------------|---------------------------------------------|--------------------|
    | ``"observation"``     | the ``Box`` above                           | as above           |
    | ``"prior_summary"``   | ``Box(-1, 1, (K', H), float32)``            | the prior's summary|
    |                       |                                             | φ(s) (its          |
    |                       |                                             | ``summary_shape``) |
    | ``"prior_log_probs"`` | ``Box(-100, 0, (38,), float32)``            | ``log p(a | s)``   |
    |                       |                                             | of the 38 tokens   |

    An agent built on the prior (the RL Tuner; SB3's ``MultiInputPolicy``) reads φ(s) and
    ``log p`` there: the prior runs once per step, in the environment.

    ## Rewards

    ``prior_weight * log p(a | s) + sum_i w_i r_i(s, a) / c``, a Python ``float``.

    * ``log p(a | s)`` (part ``"prior"``) is exact under the frozen prior, a
      :class:`musicgym.prior.MelodyPrior` fed the primer and the melody so far, all 38 actions
      scored in one batched call; ``exp`` of the 38 values sums to 1 (:meth:`action_log_probs`
      gives them). 0 when ``prior=None``. Under a model of frames (the Bi-axial LSTM) the 38
      candidate next frames the tokens produce (NOTE_OFF: silence; NO_EVENT: the sounding note
      held, or silence; a pitch: that note struck) are scored and renormalised over the distinct
      frames: when nothing sounds, NOTE_OFF and NO_EVENT produce the same silent frame and share
      its probability equally (:class:`musicgym.prior_frames.FrameMelodyPrior`). A model of
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
             rules="jaques2017", c=0.5, primer=None, render_mode=None, device="cpu",
             history=None, observation="plain", prior_weight=1.0, threads=1)
    ```

    The defaults are :data:`musicgym.config.DEFAULTS`.

    * ``length``: tokens per melody.
    * ``key``: the key of the rules (any name :meth:`musicgym.music.keys.Key.parse` reads); per
      episode with ``reset(options={"key": ...})``.
    * ``prior``: a shipped prior name, a checkpoint path, a loaded ``MelodyPrior`` (its pitch range
      must cover MIDI 48..83, moved into C first for a key-normalised prior: the melody in any
      ``key`` is transposed into C major / A minor before such a prior scores it), or ``None``
      for a rules-only env. Names and paths load on the first reset; a name that is not shipped
      or a missing file fails at once, when the env is made.
    * ``rules``: a preset name, rule names, a dict name -> weight, or rule objects
      (:func:`musicgym.rules.resolve_rules`).
    * ``c``: divisor of the rule rewards (0.5 in both papers).
    * ``primer``: see Starting State; per episode with ``reset(options={"primer": ...})``.
    * ``render_mode``: ``"ansi"`` (the melody as text), ``"human"`` (that text printed after
      every reset and step) or ``"rgb_array"`` (a piano roll of the whole melody's length, one
      size for the episode; wrap it in gymnasium's ``HumanRendering`` for a pygame window).
    * ``device``: where the prior runs.
    * ``history``: tokens shown in the observation (default ``length``).
    * ``observation``: ``"plain"`` or ``"prior"`` (see Observation Space; it needs a prior, and
      loads it when the env is made).
    * ``prior_weight``: the weight of ``log p(a | s)`` in the reward (0: the rules alone, the
      prior still observed).
    * ``threads``: the torch threads the prior's computations use, set around every ``reset``
      and ``step`` and restored after it (the process' own setting holds outside them); ``None``
      leaves torch's setting alone. One is fastest for one env on a shared machine: with torch's
      default (every core) and one other busy process, an env ran 2.8x to 30x slower.

    ## Version History

    * v0: initial version. The default prior is ``melody16c`` (key-normalised Essen melodies;
      it was ``bach16`` before the RL Tuner's benchmark chose it); pass ``prior="bach16"`` for
      the earlier rewards. The ``observation="prior"`` mode and ``prior_weight`` were added
      later; the defaults give the same numbers as before. ``threads`` was added later (default
      1: the prior's calls run on one torch thread; ``threads=None`` is the earlier behaviour).
      Since 0.1.0 ``rgb_array`` frames keep one size for the whole episode, and a ``prior`` that
      is not there fails at ``gym.make``.
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
        observation: str = "plain",
        prior_weight: float = 1.0,
        threads: int | None = 1,
    ) -> None:
        check_render_mode(render_mode)
        self.render_mode = render_mode
        self.threads = check_threads(threads)
        arguments = (length, key, prior, rules, c, primer, device, history, observation)
        self.action_space, self.observation_space = self._setup(1, *arguments, prior_weight)
        self._needs_reset = True

    @property
    def tokens(self) -> list[int]:
        """The composition so far."""
        return list(self._batch.compositions[0])

    def to_midi(self, path: str | os.PathLike, include_primer: bool = False) -> None:
        """Write the composition (after the primer if ``include_primer``) to a MIDI file."""
        from musicgym.music.midi import write_melody

        tokens = self._batch.compositions[0]
        if include_primer:
            tokens = self._batch.primers[0] + tokens
        write_melody(tokens, path)


class MusicCompositionVectorEnv(_Melodies, BatchedVectorEnv):
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
        observation: str = "plain",
        prior_weight: float = 1.0,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        threads: int | None = 1,
    ) -> None:
        self._start_vector(num_envs, autoreset_mode, render_mode)
        self.threads = check_threads(threads)
        arguments = (length, key, prior, rules, c, primer, device, history, observation)
        single = self._setup(self.num_envs, *arguments, prior_weight)
        self.single_action_space, self.single_observation_space = single
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
