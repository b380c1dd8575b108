"""``ChoraleComposition-v0``: compose four-part chorales note by note, along the prior's own
factorisation of a frame.

The decisions are played into the prior by :class:`~musicgym.envs.decisions.DecisionStepper`
(the one place where decisions meet a :class:`~musicgym.prior.NoteAxisPrior`, which the agents and
the statistics use too). :class:`ChoraleBatch` is ``B`` chorales composed side by side (frames,
rules, observations); :class:`ChoraleCompositionEnv` is that batch at ``B = 1`` and
:class:`ChoraleCompositionVectorEnv` at ``B = num_envs``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from musicgym.checks import check_device
from musicgym.config import CHORALE_DEFAULTS
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
from musicgym.envs.decisions import (
    BEATS_PER_BAR,
    PITCH_AXIS,
    RESOLUTION,
    DecisionStepper,
    PrimerArgument,
    PriorArgument,
    check_voice_ranges,
    describe_action,
    end_action,
    load_note_axis_prior,
    parse_primer,
)
from musicgym.envs.phrases import (
    Opening,
    PhraseEpisodes,
    chorale_phrase_episodes,
    corpus_phrase_episodes,
)
from musicgym.errors import EnvArgumentError
from musicgym.music.harmony import Sonority, sonority, soprano_token, soprano_tokens
from musicgym.music.keys import ALL_KEYS, Key, pitch_name, several_keys
from musicgym.music.notestate import NoteState
from musicgym.prior import NoteAxisPrior
from musicgym.rules import ChoraleContext, RulesArgument, WeightedRule, resolve_rules, rule_rewards

HISTORY = 8
"""Frames the observation shows by default (half a bar of 16th notes)."""
INVALID_ACTIONS = ("raise", "end")
INVALID_ACTION_PENALTY = 10.0
"""What the reward part ``"invalid_action"`` takes off when ``invalid_action="end"`` replaces an
invalid action by "end the time step"."""


# -------------------------------------------------------------------------------------- batch
class ChoraleBatch:
    """``B`` chorales composed side by side: their frames, rule rewards and prior scores.

    Each chorale is its primer (fed to the prior, shown in the observation, never judged) followed
    by its composition, ``bars`` 4/4 bars of frames (a phrase episode's
    :class:`~musicgym.envs.phrases.Opening` sets its own length, and where in the bar it starts).
    The decisions go through a
    :class:`DecisionStepper`; the ``log p`` of every next action of every chorale is computed once
    per step, in one prior call, and cached. The rules judge each frame when its time step ends.

    Args:
        num_chorales: ``B``.
        bars: bars per finished composition.
        weighted_rules: from :func:`musicgym.rules.resolve_rules`, judging chorales.
        c: the divisor of the rule rewards.
        prior: a loaded note-axis prior, or ``None`` (the prior part of the reward is then 0).
        pitch_axis: ``(lowest MIDI pitch, N)``: the prior's, or the actions' without one.
        resolution: frames per quarter note (the prior's).
        history: frames the observation shows.
        invalid_action: ``"end"`` to end the time step instead (with a penalty), or ``"raise"``.
        device: where the prior's tensors live.
        prior_weight: the weight of the prior's ``log p`` in the reward.
        shows_key: whether the observation shows each chorale's key (an environment that draws
            its episodes' keys among several).
    """

    def __init__(
        self,
        num_chorales: int,
        bars: int,
        weighted_rules: list[WeightedRule],
        c: float,
        prior: NoteAxisPrior | None,
        pitch_axis: tuple[int, int],
        resolution: int,
        history: int,
        invalid_action: str = "end",
        device: str | torch.device = "cpu",
        prior_weight: float = 1.0,
        shows_key: bool = False,
    ) -> None:
        self.num_chorales, self.c, self.history = num_chorales, c, history
        self.prior_weight, self.shows_key = prior_weight, shows_key
        self.lowest_pitch, self.num_pitches = pitch_axis
        self.resolution, self.steps_per_bar = resolution, BEATS_PER_BAR * resolution
        self.length = bars * self.steps_per_bar
        """Frames per finished chorale (of an episode whose opening sets no other)."""
        self.lengths = np.full(num_chorales, self.length)
        """``(B,)``: frames of each chorale's composition, when finished."""
        self.bar_positions = np.zeros(num_chorales, np.int64)
        """``(B,)``: where in its bar each composition starts (frames)."""
        self.weighted_rules, self.invalid_action = weighted_rules, invalid_action
        self.prior = prior
        self.stepper = DecisionStepper(self.num_pitches, num_chorales, prior, device)
        self.primers = [np.zeros((0, self.num_pitches, 2), np.uint8)] * num_chorales
        self.compositions: list[list[np.ndarray]] = [[] for _ in range(num_chorales)]
        self.sonorities: list[list[Sonority]] = [[] for _ in range(num_chorales)]
        self.keys = [Key()] * num_chorales
        self.log_probs = np.zeros((num_chorales, self.num_actions))  # (B, 2N + 1)
        self.recent = np.zeros((num_chorales, history, self.num_pitches, 2), np.uint8)
        """``(B, K, N, 2)``: each chorale's last ``K`` frames, most recent first."""
        self.sopranos: list[list[int]] = [[] for _ in range(num_chorales)]
        """Each chorale's soprano line as melody tokens (for the soprano rules)."""
        self._no_judgement = {rule.name: 0.0 for rule, _ in weighted_rules}

    @property
    def num_actions(self) -> int:
        return 2 * self.num_pitches + 1

    @property
    def observation_size(self) -> int:
        N, key = self.num_pitches, len(ALL_KEYS) if self.shows_key else 0
        return 2 * N + (N + 1) + self.history * 2 * N + key + self.steps_per_bar + 1

    # ------------------------------------------------------------------------------ episodes
    def reset(self, index: Sequence[int], openings: Sequence[Opening], keys: Sequence[Key]) -> None:
        """Start new chorales in the slots ``index`` from their openings (primer, length, place
        in the bar), and score every chorale's next action."""
        for i, opening, key in zip(index, openings, keys, strict=True):
            self.primers[i], self.keys[i] = opening.primer, key
            self.lengths[i], self.bar_positions[i] = opening.length, opening.bar_position
            self.compositions[i], self.sonorities[i], self.sopranos[i] = [], [], []
            self.recent[i] = self._recent_frames(i)
        if len(index):
            self.stepper.restart(index, [opening.primer for opening in openings])
            self._score()

    def done(self, i: int) -> bool:
        return len(self.compositions[i]) >= int(self.lengths[i])

    def ends(self, actions: np.ndarray, active: np.ndarray) -> np.ndarray:
        """``(B,)``: the ``active`` chorales whose action ends their last frame (an invalid
        action too, under ``invalid_action="end"``)."""
        frames = np.array([len(c) for c in self.compositions])
        ending = self._played(np.asarray(actions, np.int64), active) == end_action(self.num_pitches)
        return active & ending & (frames + 1 >= self.lengths)

    def _played(self, actions: np.ndarray, active: np.ndarray) -> np.ndarray:
        """The actions as played: an invalid one as "end" (``invalid_action="end"``; with
        ``"raise"`` the env has refused it already)."""
        invalid = active & ~self.valid_actions()[np.arange(self.num_chorales), actions]
        return np.where(invalid, end_action(self.num_pitches), actions)

    def _score(self) -> None:
        if self.prior is not None:
            self.log_probs = self.stepper.action_log_probs().cpu().numpy()

    def valid_actions(self) -> np.ndarray:
        return self.stepper.valid_actions()

    def step(
        self, actions: np.ndarray, active: np.ndarray, score: bool = True
    ) -> list[dict[str, float]]:
        """Take ``actions[i]`` in every ``active`` chorale (invalid ones as "end" under
        ``invalid_action="end"``); their reward parts (``{}`` for inactive ones)."""
        asked = np.asarray(actions, np.int64)
        actions = self._played(asked, active)
        invalid = actions != asked
        prior_parts = self.log_probs[np.arange(self.num_chorales), actions]
        ended = self.stepper.decide(actions, active)
        parts: list[dict[str, float]] = []
        for i in range(self.num_chorales):
            if not active[i]:
                parts.append({})
                continue
            scored = self.prior is not None and self.prior_weight
            part = {"prior": self.prior_weight * float(prior_parts[i]) if scored else 0.0}
            if self.invalid_action == "end":
                part["invalid_action"] = -INVALID_ACTION_PENALTY * float(invalid[i])
            part.update(self._judge(i, ended.get(i)))
            parts.append(part)
        if score:
            self._score()
        return parts

    def _judge(self, i: int, frame: np.ndarray | None) -> dict[str, float]:
        """The rules' parts: of the frame that chorale ``i`` has just ended (0 when none)."""
        if frame is None:
            return dict(self._no_judgement)
        chord = sonority(frame, self.lowest_pitch)
        chords = self.sonorities[i]
        self.sopranos[i].append(soprano_token(chord, chords[-1] if chords else None))
        context = ChoraleContext(
            tuple(chords),
            chord,
            int(self.lengths[i]),
            self.keys[i],
            self.resolution,
            tuple(self.sopranos[i]),
        )
        self.compositions[i].append(frame)
        self.recent[i, 1:], self.recent[i, 0] = self.recent[i, :-1], frame
        chords.append(chord)
        return rule_rewards(self.weighted_rules, context, self.c)

    # --------------------------------------------------------------------------------- state
    def get_state(self) -> dict[str, Any]:
        """Everything the chorales' future depends on, as tensors and lists (for ``torch.save``
        with ``weights_only`` loading); :meth:`set_state` restores it bit for bit."""
        return {
            "primers": [torch.from_numpy(p.copy()) for p in self.primers],
            "compositions": [
                torch.from_numpy(np.array(c, np.uint8).reshape(-1, self.num_pitches, 2))
                for c in self.compositions
            ],
            "keys": [key.name for key in self.keys],
            "lengths": torch.from_numpy(self.lengths.copy()),
            "bar_positions": torch.from_numpy(self.bar_positions.copy()),
            "log_probs": torch.from_numpy(self.log_probs.copy()),
            "stepper": self.stepper.state_dict(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` of a batch of the same size and prior."""
        if len(state["primers"]) != self.num_chorales:
            raise EnvArgumentError(
                f"state: {len(state['primers'])} chorales, this batch has {self.num_chorales}"
            )
        self.primers = [p.numpy().copy() for p in state["primers"]]
        self.compositions = [list(c.numpy().copy()) for c in state["compositions"]]
        self.sonorities = [[sonority(f, self.lowest_pitch) for f in c] for c in self.compositions]
        self.sopranos = [list(soprano_tokens(chords)) for chords in self.sonorities]
        self.recent = np.stack([self._recent_frames(i) for i in range(self.num_chorales)])
        self.keys = [Key.parse(name) for name in state["keys"]]
        # a state saved before phrase episodes: every chorale of the batch's length, from a bar
        self.lengths = np.full(self.num_chorales, self.length)
        self.bar_positions = np.zeros(self.num_chorales, np.int64)
        if "lengths" in state:
            self.lengths = state["lengths"].numpy().copy()
            self.bar_positions = state["bar_positions"].numpy().copy()
        self.log_probs = state["log_probs"].numpy().copy()
        self.stepper.load_state_dict(state["stepper"])

    # ---------------------------------------------------------------------------- observation
    def _recent_frames(self, i: int) -> np.ndarray:
        """``(K, N, 2)``: chorale ``i``'s last ``K`` frames, most recent first (its primer's
        before its composition's), zeros before the start."""
        frames = self.compositions[i][-self.history :][::-1]
        if len(frames) < self.history:
            frames += list(self.primers[i][::-1][: self.history - len(frames)])
        recent = np.zeros((self.history, self.num_pitches, 2), np.uint8)
        if frames:
            recent[: len(frames)] = np.stack(frames)
        return recent

    def observations(self) -> np.ndarray:
        """``(B, observation_size)``: every chorale's observation (see
        :class:`ChoraleCompositionEnv`), in one pass over the batch."""
        B, N = self.num_chorales, self.num_pitches
        positions = np.array([len(c) for c in self.compositions])
        parts = [
            self.stepper.frame.reshape(B, 2 * N),
            np.eye(N + 1, dtype=np.uint8)[self.stepper.next_pitch],
            self.recent.reshape(B, -1),
            *([np.eye(len(ALL_KEYS), dtype=np.uint8)[self.key_indices]] if self.shows_key else []),
            np.eye(self.steps_per_bar, dtype=np.uint8)[
                (self.bar_positions + positions) % self.steps_per_bar
            ],
        ]
        progress = (positions / self.lengths)[:, None]
        return np.concatenate([*parts, progress], 1).astype(np.float32)

    @property
    def key_indices(self) -> np.ndarray:
        """``(B,)``: each chorale's key's :attr:`~musicgym.music.keys.Key.index`."""
        return np.array([key.index for key in self.keys])

    def observation(self, i: int) -> np.ndarray:
        """The observation of chorale ``i``."""
        return self.observations()[i]

    def prior_observations(self) -> dict[str, np.ndarray]:
        """The prior's summary of every chorale's frames so far, ``log p`` of its next actions
        and their mask."""
        assert self.prior is not None, "the 'prior' observation needs a prior"
        return {
            "prior_summary": self.stepper.summary().to("cpu", torch.float32).numpy().copy(),
            "prior_log_probs": shown_log_probs(self.log_probs),
            "action_mask": self.valid_actions().astype(np.int8),
        }

    def piece(self, i: int) -> NoteState:
        """Chorale ``i``'s frames composed so far (its primer not included)."""
        return self.note_state(i)

    def info(self, i: int, reward_parts: dict[str, float] | None = None) -> dict[str, Any]:
        """``info`` of chorale ``i``: its valid actions, frames composed, key, and after a step
        its reward parts, else (a reset's) its primer."""
        info: dict[str, Any] = {
            "action_mask": self.valid_actions()[i].copy(),
            "frames": len(self.compositions[i]),
            "key": self.keys[i].name,
        }
        if reward_parts is not None:
            info["rewards"] = reward_parts
        else:
            info["primer"] = self.primer(i)
        return info

    def primer(self, i: int) -> NoteState:
        """Chorale ``i``'s primer: the frames fed to the prior before its composition."""
        return NoteState(self.primers[i], self.lowest_pitch, self.resolution, "primer")

    def note_state(self, i: int, include_primer: bool = False) -> NoteState:
        """Chorale ``i``'s frames composed so far (after its primer, if ``include_primer``)."""
        frames = list(self.compositions[i])
        if include_primer:
            frames = list(self.primers[i]) + frames
        matrix = np.array(frames, np.uint8).reshape(-1, self.num_pitches, 2)
        return NoteState(matrix, self.lowest_pitch, self.resolution, "ChoraleComposition-v0")

    def render_ansi(self, i: int) -> str:
        """One line per frame: its step (``|`` at a bar), its notes low to high (``~`` held), and
        the current frame's notes so far."""

        def notes(frame: np.ndarray) -> str:
            index = np.flatnonzero(frame[:, 0])
            names = [pitch_name(self.lowest_pitch + n) for n in index]
            words = [name + ("" if frame[n, 1] else "~") for name, n in zip(names, index)]
            return " ".join(words) or "."

        bar = self.steps_per_bar
        lines = [
            f"{t:4d}{'|' if (self.bar_positions[i] + t) % bar == 0 else ' '} {notes(frame)}"
            for t, frame in enumerate(self.compositions[i])
        ]
        if not self.done(i):
            lines.append(f"{len(self.compositions[i]):4d}> {notes(self.stepper.frame[i])} ...")
        return "\n".join(lines)

    def render_rgb(self, i: int) -> np.ndarray:
        """The composition as a four-voice piano roll (voices coloured, bass to soprano), of the
        whole chorale's length from the first step on (the frames to come silent)."""
        from musicgym.music.pianoroll import piano_roll_rgb  # matplotlib only when rendering

        return piano_roll_rgb(self.note_state(i), voices=True, steps=int(self.lengths[i]))


# ------------------------------------------------------------------------------ environments
def _check_arguments(bars: Any, c: Any, history: Any, invalid_action: Any, phrases: Any) -> None:
    if isinstance(bars, bool) or not isinstance(bars, (int, np.integer)) or bars < 1:
        raise EnvArgumentError(f"bars: expected a positive integer, got {bars!r}")
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < math.inf:
        raise EnvArgumentError(f"c: expected a positive number, got {c!r}")
    if isinstance(history, bool) or not isinstance(history, (int, np.integer)) or history < 1:
        raise EnvArgumentError(f"history: expected a positive integer, got {history!r}")
    if invalid_action not in INVALID_ACTIONS:
        raise EnvArgumentError(
            f"invalid_action: expected one of {INVALID_ACTIONS}, got {invalid_action!r}"
        )
    if not isinstance(phrases, (bool, np.bool_)):
        raise EnvArgumentError(f"phrases: expected True or False, got {phrases!r}")


class _Chorales:
    """What the single and the vector chorale env share: their arguments and their hooks."""

    _batch: ChoraleBatch

    def _setup(
        self,
        num_chorales: int,
        bars: int,
        key: str | Key | Sequence[str | Key],
        prior: PriorArgument,
        rules: RulesArgument,
        c: float,
        primer: PrimerArgument,
        device: str | torch.device,
        history: int,
        invalid_action: str,
        observation: str,
        prior_weight: float,
        phrases: bool,
    ) -> tuple[spaces.Discrete, spaces.Space]:
        """Check and keep the arguments, make the batch; the action and observation spaces of
        one chorale."""
        _check_arguments(bars, c, history, invalid_action, phrases)
        check_device(device, error=EnvArgumentError)
        self.observation_mode = check_observation_mode(observation, prior)
        self.prior_weight = check_prior_weight(prior_weight)
        self.bars, self.c, self.phrases = int(bars), float(c), bool(phrases)
        self.keys = parse_keys(key)
        self.weighted_rules = resolve_rules(rules, ChoraleContext)
        loaded = load_note_axis_prior(prior, device)
        axis = PITCH_AXIS if loaded is None else (loaded.lowest_pitch, loaded.num_pitches)
        resolution = RESOLUTION if loaded is None else loaded.resolution
        check_voice_ranges(*axis)
        self._batch = ChoraleBatch(
            num_chorales,
            self.bars,
            self.weighted_rules,
            self.c,
            loaded,
            axis,
            resolution,
            int(history),
            invalid_action,
            device,
            self.prior_weight,
            shows_key=several_keys(self.keys),
        )
        self.primer = self.parse_primer(primer)
        if isinstance(self.primer, PhraseEpisodes):
            for each in dict.fromkeys(self.keys):
                self.primer.check(each)
        self.num_pitches, self.lowest_pitch = self._batch.num_pitches, self._batch.lowest_pitch
        actions = self._batch.num_actions
        plain = spaces.Box(0.0, 1.0, (self._batch.observation_size,), np.float32)
        if self.observation_mode == "plain":
            return spaces.Discrete(actions), plain
        assert loaded is not None
        summary_shape = tuple(loaded.summary_shape)  # type: ignore[attr-defined]
        space = prior_observation_space(plain, summary_shape, actions, masked=True)  # type: ignore[arg-type]
        return spaces.Discrete(actions), space

    def parse_primer(
        self, primer: PrimerArgument, what: str = "primer"
    ) -> np.ndarray | PhraseEpisodes | None:
        """The primer's frames, or with ``phrases`` the phrases to draw: of the whole corpus
        (``None``) or of one chorale (``"chorale:NAME"``)."""
        batch = self._batch
        if not self.phrases:
            return parse_primer(
                primer, batch.lowest_pitch, batch.num_pitches, batch.resolution, what
            )
        axis = (batch.resolution, batch.lowest_pitch, batch.num_pitches)
        if primer is None:
            return corpus_phrase_episodes(self.bars, *axis)
        if isinstance(primer, str) and primer.startswith("chorale:"):
            return chorale_phrase_episodes(primer.removeprefix("chorale:"), self.bars, *axis, what)
        given = f"a {type(primer).__name__}" if isinstance(primer, NoteState) else repr(primer)
        raise EnvArgumentError(
            f"{what}: phrase episodes are primed by the chorale before their phrase: give None "
            f"(any corpus chorale) or 'chorale:NAME' (that chorale's phrases), not {given}"
        )

    def draw_primer(
        self, primer: np.ndarray | PhraseEpisodes | None, key: Key, rng: np.random.Generator
    ) -> Opening:
        """The episode's opening: a phrase drawn from ``rng``, or the primer (none: silence)
        before ``bars`` bars."""
        if isinstance(primer, PhraseEpisodes):
            return primer.draw(key, rng)
        if primer is None:
            primer = np.zeros((0, self._batch.num_pitches, 2), np.uint8)
        return Opening(primer, self._batch.length)

    def check_actions(self, actions: np.ndarray, active: np.ndarray, what: str) -> np.ndarray:
        """Integers in the action space, and valid where ``active`` unless
        ``invalid_action="end"``; one line naming the first bad one."""
        batch, checked = self._batch, np.zeros(len(actions), np.int64)
        valid = batch.valid_actions()
        for i, action in enumerate(actions):
            name = what if what == "action" else f"{what}[{i}]"
            if isinstance(action, np.ndarray) and action.shape == ():
                action = action[()]
            if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
                raise EnvArgumentError(f"{name}: expected an integer action, got {action!r}")
            if not 0 <= action < batch.num_actions:
                raise EnvArgumentError(
                    f"{name}: {action} is outside the action space 0..{batch.num_actions - 1}"
                )
            if active[i] and not valid[i, action] and batch.invalid_action == "raise":
                lowest = pitch_name(batch.lowest_pitch + int(batch.stepper.next_pitch[i]))
                meaning = describe_action(action, batch.num_pitches, batch.lowest_pitch)
                raise EnvArgumentError(
                    f"{name}: {action} ({meaning}) is not valid now: this time step's notes go up "
                    f"from {lowest} (info['action_mask'] and action_masks() give the valid ones)"
                )
            checked[i] = action
        return checked

    def action_masks(self) -> np.ndarray:
        """The valid actions (sb3-contrib's ``MaskablePPO`` convention): ``(2 N + 1,)`` bool for
        the single env, ``(num_envs, 2 N + 1)`` for the vector env."""
        masks = self._batch.valid_actions().copy()
        return masks[0] if isinstance(self, BatchedEnv) else masks

    def action_log_probs(self) -> np.ndarray:
        """The prior's ``log p(a | s)`` of every action (``-inf`` for the invalid ones; zeros
        without a prior): ``(2 N + 1,)`` for the single env, ``(num_envs, 2 N + 1)`` for the
        vector env."""
        log_probs = self._batch.log_probs.copy()
        return log_probs[0] if isinstance(self, BatchedEnv) else log_probs

    def note_state(self, i: int = 0, include_primer: bool = False) -> NoteState:
        """The chorale composed so far (of sub-environment ``i``), as a note-state."""
        return self._batch.note_state(i, include_primer)

    def to_midi(self, path: str | os.PathLike, include_primer: bool = False, i: int = 0) -> None:
        """Write the chorale composed so far (after its primer if ``include_primer``; of
        sub-environment ``i``) to a MIDI file."""
        from musicgym.music.midi import write_midi

        write_midi(self.note_state(i, include_primer), path)


class ChoraleCompositionEnv(_Chorales, BatchedEnv):
    """Compose a four-part chorale note by note, rewarded by a prior and by four-part writing.

    ## Description

    An agent writes a chorale of ``bars`` 4/4 bars of 16th-note frames (four by default). It
    writes each frame (time step) the way the Bi-axial LSTM prior decides one: note by note from
    the lowest pitch up. One action names the next sounding pitch above the last one written in
    this time step, struck or held, or ends the time step; a time step takes as many actions as
    it has notes, plus one. So the frozen prior's ``log p(a | s)`` of every action is exact and
    normalised, and the decisions of a time step add up to the prior's log-likelihood of its
    frame. The four-part-writing rules (``docs/spec/chorale-rules.md``) judge each frame when its
    time step ends, so an agent learns to write Bach-like four-part harmony while staying close to
    what the prior finds likely.

    ## Action Space

    ``Discrete(2 N + 1)`` over the prior's pitch axis of ``N`` pitches from MIDI ``lowest`` up
    (``bach16``: ``N = 48``, MIDI 36..83, 97 actions):

    | action          | meaning |
    |-----------------|---------|
    | ``p < N``       | strike pitch ``lowest + p`` (articulated) |
    | ``N + p``       | hold pitch ``lowest + p`` (played on, not struck again) |
    | ``2 N``         | end this time step: the pitches not written are silent |

    Only pitches above the last one written in this time step are valid ("end" always is):
    ``info["action_mask"]`` and :meth:`action_masks` give the valid actions (sb3-contrib's
    ``MaskablePPO`` reads the latter). An invalid action plays as "end" (it ends the time step)
    with the reward part ``"invalid_action"`` of ``-INVALID_ACTION_PENALTY``, so that any RL code,
    masking or not, runs on the default env (SB3's ``check_env`` passes).
    ``invalid_action="raise"`` makes an invalid action raise ``EnvArgumentError`` instead (for
    debugging an agent that should mask).

    ## Observation Space

    A flat ``Box(0, 1, (2N + (N + 1) + 2NK [+ 24] + 16 + 1,), float32)``, ``K = history``
    (default 8):

    | part                   | size      | content                                          |
    |------------------------|-----------|--------------------------------------------------|
    | this time step's notes | ``2 N``   | (play, articulate) of each pitch written so far  |
    | next pitch             | ``N + 1`` | one-hot of the lowest pitch still open (``N``:   |
    |                        |           | none)                                            |
    | the frames before      | ``2 N K`` | (play, articulate) of the last ``K`` frames,     |
    |                        |           | most recent first, the primer's included (zeros  |
    |                        |           | before the start)                                |
    | the key (only where    | 24        | one-hot of the episode's key's                   |
    | ``key`` names several) |           | :attr:`~musicgym.music.keys.Key.index`           |
    | position in the bar    | 16        | one-hot of ``t mod 16`` of this frame ``t``      |
    |                        |           | (a phrase: of its frame in the chorale)          |
    | progress               | 1         | ``t / (16 bars)`` (a phrase: ``t / its length``) |

    With ``observation="prior"``, a ``Dict`` of that observation (``"observation"``) and what
    the frozen prior knows of the state (:func:`musicgym.envs.batched.prior_observation_space`):
    ``"prior_summary"``, ``Box(-1, 1, (K', H), float32)``, its summary φ(s) of the frames so far
    (``bach16``: the time-axis output, ``(48, H)``); ``"prior_log_probs"``, ``Box(-100, 0,
    (2N + 1,), float32)``, ``log p(a | s)`` of every action (-100 for the invalid ones); and
    ``"action_mask"``, ``MultiBinary(2N + 1)``, the valid actions. An agent built on the prior
    (the RL Tuner; SB3's ``MultiInputPolicy``) reads them there: the prior runs once per step.

    ## Rewards

    ``prior_weight * log p(a | s) + sum_i w_i r_i / c``, a Python ``float``.

    * ``log p(a | s)`` (part ``"prior"``) under the frozen prior, a
      :class:`musicgym.prior.NoteAxisPrior` fed the primer and the frames so far: striking or
      holding pitch ``p`` is the sum of ``log P(not played)`` over the open pitches below ``p`` and
      ``log P(played, struck or held)`` at ``p``; "end" the sum of ``log P(not played)`` over the
      open pitches (:func:`decision_log_probs`; :meth:`action_log_probs` gives all of them, one
      note-axis pass). 0 when ``prior=None``.
    * ``r_i`` are the rules (:mod:`musicgym.rules.chorale`), by default the preset
      ``"chorale"``; each judges the frame when its time step ends (the "end" action), so their
      parts are 0 on the other steps. They see the composition only, not the primer.

    ``info["rewards"]`` holds every part by name (they sum to the reward); ``info["action_mask"]``
    the valid actions; ``info["frames"]`` the frames composed; ``info["key"]`` the key. A reset's
    ``info["primer"]`` (a vector env's too, where a sub-environment starts over) is the episode's
    primer as a :class:`~musicgym.music.notestate.NoteState`: the frames the prior was fed before
    the first decision (with ``phrases=True``, its chorale before the phrase), so that an agent
    can play the episode through the prior again.

    ## Starting State

    An empty chorale at the start of a bar. The primer, if any, is fed to the prior and shown in
    the observation: ``None``, a :class:`~musicgym.music.notestate.NoteState`, a MIDI file, or
    ``"chorale:NAME"``, the first bar of a chorale of music21's corpus (e.g.
    ``"chorale:bwv269"``); its notes must lie on the prior's pitch axis, at its resolution.

    With ``phrases=True`` an episode is one of Bach's phrases instead
    (:mod:`musicgym.envs.phrases`): each reset draws from the env's random generator (seeded by
    ``reset(seed=...)``) a chorale of music21's corpus (``primer=None``; or the one of
    ``primer="chorale:NAME"``) and one of its phrases after the first. Its primer is the chorale
    from its start up to the phrase, transposed into the rules' ``key``, and the episode starts
    where the phrase does in its bar (often on the fourth beat). The chorales drawn have four
    voices, are in 4/4, end in the key their signature tells, in the mode of ``key``, and have a
    phrase after the first of at most ``bars`` bars: with ``bars=4``, 290 chorales (157 in major,
    152 of which fit the pitch axis in C major; 133 in minor) with 1,488 phrases of 0.75 to 4
    bars, two bars in two cases of three. The corpus is converted once (about a minute) and
    cached (:func:`musicgym.music.corpus.corpus_phrases`).

    ## Episode End

    The episode terminates when the last frame's time step ends (``16 * bars`` frames; with
    ``phrases=True``, the phrase's frames, up to where its fermata's note ends: the end-of-piece
    rules, ``cadence`` and ``perfect_cadence``, judge that frame). A time step takes at most
    ``N + 1`` actions, so an episode at most ``16 * bars * (N + 1)``. There is no truncation.
    ``step`` after the end, or before ``reset``, raises ``gymnasium.error.ResetNeeded``.

    ## Arguments

    ```python
    gym.make("ChoraleComposition-v0", bars=4, key="C major", prior="bach16", rules="chorale",
             c=0.5, primer=None, render_mode=None, device="cpu", history=8,
             invalid_action="end", observation="plain", prior_weight=1.0, threads=1,
             phrases=False)
    ```

    The defaults are :data:`musicgym.config.CHORALE_DEFAULTS`.

    * ``bars``: 4/4 bars per chorale.
    * ``key``: the key of the rules (any name :meth:`musicgym.music.keys.Key.parse` reads), or
      several (a list, or names separated by commas: ``"C major, A minor"``), of which each
      episode draws one uniformly (a key named twice, twice as often) and the observation shows
      it; per episode with ``reset(options={"key": ...})``.
    * ``prior``: a shipped prior name, a checkpoint path, a loaded ``NoteAxisPrior`` (its pitch
      axis must hold the voices' ranges, MIDI 40..79), or ``None`` for a rules-only env (whose
      action axis is :data:`PITCH_AXIS`). It is loaded when the env is made: the action space
      depends on its pitch axis.
    * ``rules``: a preset name, rule names, a dict name -> weight, or rule objects judging
      chorales (:func:`musicgym.rules.resolve_rules`).
    * ``c``: divisor of the rule rewards.
    * ``primer``: see Starting State; per episode with ``reset(options={"primer": ...})``.
    * ``render_mode``: ``"ansi"`` (one line per frame), ``"human"`` (that text printed after every
      reset and step) or ``"rgb_array"`` (a four-voice piano roll, voices coloured).
    * ``device``: where the prior runs.
    * ``history``: frames shown in the observation.
    * ``invalid_action``: ``"end"`` (play an invalid action as "end", with a penalty) or
      ``"raise"`` (see Action Space).
    * ``observation``: ``"plain"`` or ``"prior"`` (see Observation Space; it needs a prior).
    * ``prior_weight``: the weight of ``log p(a | s)`` in the reward (0: the rules alone, the
      prior still observed).
    * ``threads``: the torch threads the prior's computations use, set around every ``reset``
      and ``step`` and restored after it; ``None`` leaves torch's setting alone (see
      :class:`~musicgym.envs.melody.MusicCompositionEnv`).
    * ``phrases``: episodes of Bach's phrases (see Starting State), so that an ending is rewarded
      every two bars or so, not once per chorale: an option for training; evaluate on whole
      chorales (the agents' ``compose`` and ``bench chorales`` do). ``primer`` is then ``None``
      or ``"chorale:NAME"``.

    ## Version History

    * v0: initial version; ``observation="prior"`` and ``prior_weight`` added later (the
      defaults give the same numbers as before); ``threads`` added later (default 1;
      ``threads=None`` is the earlier behaviour); several keys added later (one key gives the
      same numbers as before). Since 0.1.0 the default ``invalid_action`` is
      ``"end"`` (it was ``"raise"``; an agent that masks sees no difference), and ``rgb_array``
      frames keep one size for the whole episode. ``phrases`` added later (default ``False``:
      the same numbers as before); then a reset's ``info["primer"]``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": RENDER_MODES, "render_fps": 16}

    def __init__(
        self,
        bars: int = CHORALE_DEFAULTS.bars,
        key: str | Key | Sequence[str | Key] = CHORALE_DEFAULTS.key,
        prior: PriorArgument = CHORALE_DEFAULTS.prior,
        rules: RulesArgument = CHORALE_DEFAULTS.rules,
        c: float = CHORALE_DEFAULTS.c,
        primer: PrimerArgument = None,
        render_mode: str | None = None,
        device: str | torch.device = "cpu",
        history: int = HISTORY,
        invalid_action: str = "end",
        observation: str = "plain",
        prior_weight: float = 1.0,
        threads: int | None = 1,
        phrases: bool = False,
    ) -> None:
        check_render_mode(render_mode)
        self.render_mode = render_mode
        self.threads = check_threads(threads)
        arguments = (bars, key, prior, rules, c, primer, device, history, invalid_action)
        self.action_space, self.observation_space = self._setup(
            1, *arguments, observation, prior_weight, phrases
        )
        self._needs_reset = True


class ChoraleCompositionVectorEnv(_Chorales, BatchedVectorEnv):
    """``num_envs`` copies of :class:`ChoraleCompositionEnv` scored together: one batched prior
    call per step for all of them. Same arguments as the single env, plus ``num_envs`` and
    ``autoreset_mode`` (default next-step, Gymnasium 1.x); it returns exactly what
    ``SyncVectorEnv`` of the single env returns for the same seeds and actions (up to the prior's
    own batch-size rounding)."""

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": RENDER_MODES,
        "render_fps": 16,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        bars: int = CHORALE_DEFAULTS.bars,
        key: str | Key | Sequence[str | Key] = CHORALE_DEFAULTS.key,
        prior: PriorArgument = CHORALE_DEFAULTS.prior,
        rules: RulesArgument = CHORALE_DEFAULTS.rules,
        c: float = CHORALE_DEFAULTS.c,
        primer: PrimerArgument = None,
        render_mode: str | None = None,
        device: str | torch.device = "cpu",
        history: int = HISTORY,
        invalid_action: str = "end",
        observation: str = "plain",
        prior_weight: float = 1.0,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        threads: int | None = 1,
        phrases: bool = False,
    ) -> None:
        self._start_vector(num_envs, autoreset_mode, render_mode)
        self.threads = check_threads(threads)
        arguments = (bars, key, prior, rules, c, primer, device, history, invalid_action)
        single_action, single_observation = self._setup(
            self.num_envs, *arguments, observation, prior_weight, phrases
        )
        self.single_action_space, self.single_observation_space = single_action, single_observation
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
