"""The RL Tuner on ``ChoraleComposition-v0``: its features of a decision state and its replay.

* **Features.** A state is a decision inside a frame. Beside the prior's summary of the frames so
  far, the Q-network reads the notes decided in this frame, the lowest pitch still open (one-hot),
  the frame's place in the bar (one-hot), with ``piece_position`` its place in the piece
  (one-hot of the progress ``t / length`` over the piece's frames) and, where the environment
  draws each piece's key among several (``key="C major,A minor"``), that key (one-hot), all
  from the environment's plain observation.
* **Masks.** The invalid actions (pitches at or below the last one written in the frame) are left
  out of the max and the logsumexp of the targets, of the greedy choice and of exploration; the
  ``"prior"`` observation's ``"action_mask"`` gives them.
* **Discount per frame.** ``gamma`` discounts once per time step (frame), as in the melody env
  where a step is a 16th note: inside a frame the decisions are not discounted, so the rules,
  judged when a time step ends, reach back to every decision of their frame.
* **Replay.** Transitions are kept one by one (a frame takes a varying number of decisions): each
  state keeps its frame's index into a store of the frames' summaries (float16, one per frame, not
  per decision), its decided notes (bit-packed), its open pitch, its bar and piece positions, its
  key and its ``log p``. A frame summary overwritten by newer frames invalidates the old
  transitions that read it; batches draw among the valid ones. Each kept frame also knows its piece
  and time step, and the replay keeps those pieces' primers (each its own, read from the reset's
  ``info["primer"]``: with ``--phrases`` its chorale before the phrase) and the notes of their
  frames (bit-packed), so that checkpoints leave the summaries out (hundreds of MB) and
  ``--resume`` recomputes them with the frozen prior from each piece's primer and notes (a digest
  saved with the checkpoint checks them bit for bit), as the melody replay does from its tokens.
* **Endings.** With ``ending_share`` that share of each batch is drawn among the transitions of
  the pieces' last beats (marked when a piece ends), where the cadence rules pay.
* **Rule features.** With ``rule_features``, each action's value also adds a learned weight
  of each of its :data:`RULE_OUTCOMES` (:func:`action_outcomes`): the parallel fifths and
  octaves a note makes with the voices decided below it, given the frame before (read from the
  observation's frames before, and in the replay from the piece's notes and primer, judged once
  when a state is stored and again when a checkpoint is loaded); for "end",
  those of the frame it closes, its hidden perfects and voice crossing, a beat without four
  voices, and in the chorale's last beat, where the ending rules pay, the cadence's parts and
  the whole cadence (in the piece's key).
* **Phrases.** With ``--phrases`` the Tuner learns on phrase episodes (of varying lengths, up to
  ``bars`` bars, each with its own primer) and composes whole chorales.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from musicgym.agents.rl_tuner.config import RLTunerConfig
from musicgym.agents.rl_tuner.parts import Observations, Transitions, tensor
from musicgym.envs.decisions import BEATS_PER_BAR, end_action, parse_primer, valid_actions
from musicgym.errors import EnvArgumentError
from musicgym.music.harmony import FOUR_VOICES, MAX_STEP, PERFECT_INTERVALS, tonic_thirds
from musicgym.music.keys import ALL_KEYS, parse_keys, several_keys
from musicgym.prior import NoteAxisPrior

FRAMES_PER_TRANSITION = 4
"""The replay keeps one frame summary per this many transitions (a frame of four voices takes
five decisions)."""
PHRASE_PRIMER_BARS = 32
"""Bars a phrase episode's primer (its chorale before the phrase) takes at most, for the replay's
size estimate: Bach's longest chorale in 4/4 (bwv437) has 32."""


PERFECT = ("fifth", "octave")
"""The perfect intervals the parallel rules watch
(:data:`~musicgym.music.harmony.PERFECT_INTERVALS`)."""
SEMITONES = {name: semitones for semitones, name in PERFECT_INTERVALS.items()}
"""The interval class (semitones mod 12) of each of :data:`PERFECT`."""
PARALLELS = tuple(f"parallel {interval}s" for interval in PERFECT)
"""What a frame does to the voice-leading rules: parallel fifths, parallel octaves (or
unisons) with the frame before."""
CADENCE_PARTS = ("tonic in the bass", "tonic in the soprano", "tonic triad", "authentic cadence")
"""What the frame that ends a chorale does to the ending rules: each of
:func:`~musicgym.music.harmony.cadence_parts`, and all of them (the whole cadence, worth far
more than its parts)."""
VOICE_LEADING = ("hidden perfects", "voice crossing", "a beat without four voices")
"""What a frame does to ``hidden_perfects``, ``voice_crossing`` and ``four_voices``."""
RULE_OUTCOMES = (
    *(f"note: {outcome}" for outcome in PARALLELS),
    *(f"end: {outcome}" for outcome in PARALLELS + VOICE_LEADING + CADENCE_PARTS),
)
"""The outcomes of an action (:func:`action_outcomes`), each with its own weight: a note's
(the voice it adds), then those of "end" (the frame it closes)."""


def voices(notes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The sounding pitches ``(M, N)`` (indices on the pitch axis, low to high, then ``N``) of
    ``notes`` ``(M, N)`` (bool) and their number ``(M,)``."""
    N = notes.shape[1]
    pitches = torch.arange(N, device=notes.device)
    ranked = torch.where(notes, pitches, N + pitches).sort(1).values
    return ranked.clamp(max=N), notes.sum(1)


def top_voice(pitches: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``(M,)``: the highest of the :func:`voices` ``pitches`` (the lowest where none sound)."""
    return pitches.gather(1, (counts - 1).clamp(min=0)[:, None])[:, 0]


def parallels(
    low: tuple[torch.Tensor, torch.Tensor], high: tuple[torch.Tensor, torch.Tensor]
) -> list[torch.Tensor]:
    """Whether two voices, ``low`` and ``high`` ``(pitch before, pitch now)`` (tensors that
    broadcast), form parallel fifths, and parallel octaves (:data:`PARALLELS`), as
    :func:`~musicgym.music.harmony.parallel_perfects` judges a pair: both move in the same
    direction, between two equal perfect intervals."""
    direction = torch.sign(low[1] - low[0])
    interval = (high[1] - low[1]) % 12
    same = (direction != 0) & (torch.sign(high[1] - high[0]) == direction)
    same &= interval == (high[0] - low[0]) % 12
    return [same & (interval == SEMITONES[name]) for name in PERFECT]


def frame_parallels(
    before: tuple[torch.Tensor, torch.Tensor], now: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """``(M, 2)``: the :data:`PARALLELS` of frames ``now`` after frames ``before`` (each
    :func:`voices`), their voices matched as :func:`~musicgym.music.harmony.matched_voices`
    matches them: every voice by rank with as many in both, else the bass and the soprano."""
    (pitches_before, count_before), (pitches_now, count_now) = before, now
    most = max(int(count_now.max()) if len(count_now) else 0, 2)
    as_many = (count_before == count_now) & (count_now >= 2)
    outer = (count_before != count_now) & (count_before >= 2) & (count_now >= 2)
    ranks = torch.arange(most, device=count_now.device)
    # the pairs (i, j) of ranks i < j judged: all with as many voices, else bass and soprano
    pairs = (ranks[:, None] < ranks[None]) & (ranks[None, None] < count_now[:, None, None])
    pairs &= as_many[:, None, None]
    rows = torch.nonzero(outer)[:, 0]
    pairs[rows, 0, count_now[rows] - 1] = True
    upper_before = top_voice(pitches_before, count_before)[:, None]
    in_rank = torch.where(outer[:, None], upper_before, pitches_before[:, :most])
    in_rank[:, 0] = pitches_before[:, 0]  # the frame before's voices by the ranks of ``now``
    low = (in_rank[:, :, None], pitches_now[:, :most, None])
    high = (in_rank[:, None], pitches_now[:, None, :most])
    found = torch.stack(parallels(low, high), 3) & pairs[..., None]  # (M, V, V, 2)
    return found.flatten(1, 2).any(1)


def frame_voice_leading(
    before: tuple[torch.Tensor, torch.Tensor],
    now: tuple[torch.Tensor, torch.Tensor],
    on_beat: torch.Tensor,
) -> torch.Tensor:
    """``(M, 3)``: the :data:`VOICE_LEADING` of frames ``now`` after frames ``before`` (each
    :func:`voices`), as :func:`~musicgym.music.harmony.hidden_perfect`,
    :func:`~musicgym.music.harmony.voice_overlap` and ``four_voices`` judge them."""
    (pitches_before, count_before), (pitches_now, count_now) = before, now
    outer = (count_before >= 2) & (count_now >= 2)
    top_before, top_now = top_voice(*before), top_voice(*now)
    direction = torch.sign(pitches_now[:, 0] - pitches_before[:, 0])
    together = (direction != 0) & (torch.sign(top_now - top_before) == direction)
    interval_now = (top_now - pitches_now[:, 0]) % 12
    into = torch.isin(interval_now, torch.tensor(list(PERFECT_INTERVALS), device=on_beat.device))
    into &= interval_now != (top_before - pitches_before[:, 0]) % 12
    hidden = outer & together & into & ((top_now - top_before).abs() > MAX_STEP)
    most = max(int(count_now.max()) if len(count_now) else 0, 1)
    ranks = torch.arange(most, device=on_beat.device)
    ranked_now, ranked_before = pitches_now[:, :most], pitches_before[:, :most]
    has_above, has_below = ranks[None] + 1 < count_now[:, None], (ranks > 0)[None]  # (M, V)
    over = has_above & (ranked_now > ranked_before.roll(-1, 1))  # above the next voice's note
    under = has_below & (ranked_now < ranked_before.roll(1, 1))  # below the last voice's note
    crossing = (count_before == count_now) & (count_now >= 2) & (over | under).any(1)
    return torch.stack([hidden, crossing, on_beat & (count_now != FOUR_VOICES)], 1)


def action_outcomes(
    previous: torch.Tensor,
    decided: torch.Tensor,
    on_beat: torch.Tensor,
    in_last_beat: torch.Tensor,
    lowest_pitch: int,
    keys: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The :data:`RULE_OUTCOMES` of every action in ``M`` decision states, as ``(M, N, P)``
    bool, the :data:`PARALLELS` of a note at each pitch, and ``(M, E)`` bool, those of "end"
    (:func:`outcome_rows` spreads them over the actions): ``previous`` ``(M, N)``, the notes
    sounding in the frame before (none in the first); ``decided`` ``(M, N)``, those decided in
    this frame (all below the open pitch); ``on_beat`` and ``in_last_beat`` ``(M,)``, where the
    frame is; ``keys`` ``(M,)``, the :attr:`~musicgym.music.keys.Key.index` of each state's key.

    * A strike and a hold of a pitch do the same: the voice it adds, the next rank up, forms
      :data:`PARALLELS` with a voice below it, matched by rank with the frame before's voices
      as when the frame ends with as many voices as the frame before.
    * "End" has the :data:`PARALLELS` of the frame it closes (:func:`frame_parallels`,
      exactly what the parallel rules judge), its :data:`VOICE_LEADING` (hidden perfects, voice
      crossing and, on a beat of the bar, other than four voices:
      :func:`frame_voice_leading`) and, in the last beat, its :data:`CADENCE_PARTS`
      (:func:`ending_outcomes`)."""
    M, N = decided.shape
    before, now = voices(previous), voices(decided)
    (pitches_before, count_before), (pitches_now, count_now) = before, now
    candidates = torch.arange(N, device=decided.device)[None]
    rank = count_now.clamp(max=N - 1)[:, None]
    leader = (pitches_before.gather(1, rank)[:, :, None], candidates[:, None])  # (M, 1, N)
    matched = count_now < count_before  # the new voice has one before it
    most = max(int(count_now.max()) if M else 0, 1)  # the voices below a new one
    below = (pitches_before[:, :most, None], pitches_now[:, :most, None])  # (M, V, 1)
    found = torch.stack(parallels(below, leader), 3)  # (M, V, N, 2)
    judged = matched[:, None] & (torch.arange(most, device=decided.device) < count_now[:, None])
    notes = (found & judged[:, :, None, None]).any(1)  # (M, N, 2)
    cadence = ending_outcomes(decided, now, lowest_pitch, keys) & in_last_beat[:, None]
    leading = frame_voice_leading(before, now, on_beat)
    return notes, torch.cat([frame_parallels(before, now), leading, cadence], 1)


def outcome_rows(notes: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """``(M, 2N + 1, R)``: :func:`action_outcomes` ``notes`` and ``end`` as the outcomes of
    every action (a strike and a hold of a pitch alike, then "end"; 0 where an action has
    none)."""
    (M, N, _), notes, end = notes.shape, notes.float(), end.float()
    per_note = torch.cat([notes, notes.new_zeros(M, N, end.shape[1])], 2)
    end = torch.cat([end.new_zeros(M, len(PARALLELS)), end], 1)[:, None]
    return torch.cat([per_note, per_note, end], 1)


@functools.cache
def tonic_triads(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Of each of :data:`~musicgym.music.keys.ALL_KEYS` (by index): its tonic ``(24,)``, the
    pitch classes its tonic triad may hold ``(24, 12)`` (the tonic, the fifth and
    :func:`~musicgym.music.harmony.tonic_thirds`) and those that may be its third ``(24, 12)``."""
    tonics = torch.tensor([key.tonic for key in ALL_KEYS], device=device)
    thirds = torch.zeros(len(ALL_KEYS), 12, dtype=torch.bool, device=device)
    for key in ALL_KEYS:
        thirds[key.index, sorted(tonic_thirds(key))] = True
    triads = thirds.clone()
    rows = torch.arange(len(ALL_KEYS), device=device)
    triads[rows, tonics], triads[rows, (tonics + 7) % 12] = True, True
    return tonics, triads, thirds


def ending_outcomes(
    decided: torch.Tensor,
    now: tuple[torch.Tensor, torch.Tensor],
    lowest_pitch: int,
    keys: torch.Tensor,
) -> torch.Tensor:
    """``(M, 4)`` bool: the :data:`CADENCE_PARTS` of the frames ``decided`` ``(M, N)`` (their
    :func:`voices` ``now``), each in its key (``keys`` ``(M,)``, by index): the tonic in the
    bass, in the soprano, the tonic triad (:func:`~musicgym.music.harmony.cadence_parts`), all
    three."""
    M, N = decided.shape
    classes = (lowest_pitch + torch.arange(N, device=decided.device)) % 12
    bass, soprano = now[0][:, 0].clamp(max=N - 1), top_voice(*now).clamp(max=N - 1)
    sounding = now[1] > 0
    counted = torch.zeros(M, 12, dtype=torch.long, device=decided.device)
    present = counted.scatter_add_(1, classes.expand(M, N), decided.long()) > 0  # (M, 12)
    tonics, triads, thirds = (table[keys] for table in tonic_triads(decided.device))
    triad = (present & ~triads).sum(1).eq(0) & (present & thirds).sum(1).eq(1)
    parts = torch.stack(
        [
            sounding & (classes[bass] == tonics),
            sounding & (classes[soprano] == tonics),
            triad,
        ],
        1,
    )
    return torch.cat([parts, parts.all(1, keepdim=True)], 1)


def packed_frames(frames: np.ndarray) -> np.ndarray:
    """``(T, ceil(2 N / 8))``: the frames ``(T, N, 2)`` bit-packed, as the replay keeps notes."""
    return np.packbits(frames.reshape(len(frames), 2 * frames.shape[1]), 1)


def unpacked_frames(packed: np.ndarray, num_pitches: int) -> np.ndarray:
    """``(..., N, 2)``: frames bit-packed by :func:`packed_frames` (``(..., ceil(2 N / 8))``)
    as bits again."""
    bits = np.unpackbits(packed, -1)[..., : 2 * num_pitches]
    return bits.reshape(*packed.shape[:-1], num_pitches, 2)


def outcome_bytes(num_pitches: int) -> int:
    """Bytes of one state's :func:`action_outcomes` bit-packed by :func:`packed_outcomes`."""
    return (num_pitches * len(PARALLELS) + len(RULE_OUTCOMES) - len(PARALLELS) + 7) // 8


def packed_outcomes(notes: torch.Tensor, end: torch.Tensor) -> np.ndarray:
    """``(M, outcome_bytes(N))``: :func:`action_outcomes` ``notes`` ``(M, N, P)`` and ``end``
    ``(M, E)`` bit-packed, the notes' bits first."""
    return np.packbits(torch.cat([notes.flatten(1), end], 1).cpu().numpy(), 1)


def unpacked_outcomes(
    packed: np.ndarray, num_pitches: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`packed_outcomes` bits as :func:`action_outcomes`' ``(notes, end)`` again."""
    M, N, P = len(packed), num_pitches, len(PARALLELS)
    bits = tensor(np.unpackbits(packed, 1), device).bool()
    return bits[:, : N * P].view(M, N, P), bits[:, N * P : N * P + len(RULE_OUTCOMES) - P]


@dataclass
class ChoraleStates:
    """``M`` decision states as the Q-network reads them (tensors on one device)."""

    summary: torch.Tensor
    """``(M, K, H)``: the frozen prior's summary of the frames before this one."""
    log_probs: torch.Tensor
    """``(M, 2N + 1)``: the prior's ``log p(a | s)`` (invalid actions: any value)."""
    decided: torch.Tensor
    """``(M, N, 2)``: the (play, articulate) bits decided in this frame."""
    next_pitch: torch.Tensor
    """``(M,)``: the lowest pitch still open in this frame."""
    position: torch.Tensor
    """``(M,)``: the frame's position in its bar."""
    place: torch.Tensor
    """``(M,)``: the frame's place in its piece, ``t / length`` in the piece's frames (a whole
    chorale's time step ``t``)."""
    mask: torch.Tensor
    """``(M, 2N + 1)`` bool: the valid actions."""
    key: torch.Tensor
    """``(M,)``: the :attr:`~musicgym.music.keys.Key.index` of the piece's key."""
    outcomes: torch.Tensor | None = None
    """``(M, 2N + 1, R)``: each action's :func:`outcome_rows` (only with ``rule_features``)."""
    sounding = None


class ChoralePart:
    """The RL Tuner's part of ``ChoraleComposition-v0`` (see the module docstring)."""

    model_tag = "rl-tuner-chorale"
    resumable = True
    steps_together = False  # (a frame takes as many decisions as it has notes)

    def __init__(self, prior: NoteAxisPrior, config: RLTunerConfig) -> None:
        if config.train_readout:
            raise EnvArgumentError("train_readout: only on MusicComposition-v0")
        self.prior, self.config = prior, config
        self.rule_outcomes = len(RULE_OUTCOMES) if config.rule_features else 0
        self.keys = parse_keys(config.key)
        self.shows_key = several_keys(self.keys)
        """Whether the environment draws each piece's key (and shows it: a feature here)."""
        self.num_pitches = N = prior.num_pitches
        self.steps_per_bar = BEATS_PER_BAR * prior.resolution
        self.num_actions = end_action(N) + 1
        self.piece_length = config.bars * self.steps_per_bar
        """Frames per chorale (a phrase episode's: at most)."""
        self.feature_size = 2 * N + (N + 1) + self.steps_per_bar
        if config.piece_position:
            self.feature_size += self.piece_length
        if self.shows_key:
            self.feature_size += len(ALL_KEYS)

    def extra_features(self, states: ChoraleStates) -> torch.Tensor:
        open_pitch = F.one_hot(states.next_pitch, self.num_pitches + 1).float()
        position = F.one_hot(states.position % self.steps_per_bar, self.steps_per_bar).float()
        features = [states.decided.float().flatten(1), open_pitch, position]
        if self.config.piece_position:
            features.append(F.one_hot(states.place, self.piece_length).float())
        if self.shows_key:
            features.append(F.one_hot(states.key, len(ALL_KEYS)).float())
        return torch.cat(features, 1)

    def outcomes(
        self,
        previous: np.ndarray | None,
        decided: torch.Tensor,
        position: torch.Tensor,
        place: torch.Tensor,
        key: torch.Tensor,
        device: torch.device,
    ) -> torch.Tensor | None:
        """:func:`outcome_rows` of states (``None`` without ``rule_features``): the arguments
        of :meth:`outcome_bits`."""
        if not self.rule_outcomes:
            return None
        assert previous is not None, "rule outcomes need the frame before"
        return outcome_rows(*self.outcome_bits(previous, decided, position, place, key, device))

    def outcome_bits(
        self,
        previous: np.ndarray,
        decided: torch.Tensor,
        position: torch.Tensor,
        place: torch.Tensor,
        key: torch.Tensor,
        device: torch.device,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`action_outcomes` of states: ``previous`` and ``decided`` ``(M, N, 2)`` bits,
        ``position`` (in the bar), ``place`` (in the piece) and ``key`` (its index) ``(M,)``.
        The first frame has none before it (the rules judge the composition, not its
        primer)."""
        beat = self.prior.resolution
        where = position % beat == 0, place >= self.piece_length - beat  # on a beat, last beat
        before = (tensor(previous[..., 0], device) > 0) & (place > 0)[:, None]  # as the rules
        sounding = decided[..., 0] > 0  # see the frames: from the piece's first
        return action_outcomes(before, sounding, *where, self.prior.lowest_pitch, key)

    def decode(self, observations: Observations) -> dict[str, np.ndarray]:
        """The decided notes ``(M, N, 2)``, open pitches, bar positions, places in the piece
        and keys of the plain observations (their first ``3N + 1`` values, the bar one-hot, the
        progress ``t / length``, read in ``piece_length`` frames, and the key one-hot before
        the bar's, where the environment shows it); with ``rule_features`` also the notes of
        the frame before (``(M, N, 2)``, the next ``2N`` values)."""
        plain, N, bar = observations["observation"], self.num_pitches, self.steps_per_bar
        place = np.floor(plain[:, -1].astype(np.float64) * self.piece_length + 1e-3)
        if self.rule_outcomes:
            before = plain[:, 3 * N + 1 : 5 * N + 1].reshape(-1, N, 2).astype(np.uint8)
        key = np.full(len(plain), self.keys[0].index)
        if self.shows_key:
            key = plain[:, -bar - 1 - len(ALL_KEYS) : -bar - 1].argmax(1)
        return {
            "key": key,
            "decided": plain[:, : 2 * N].reshape(-1, N, 2).astype(np.uint8),
            "next_pitch": plain[:, 2 * N : 3 * N + 1].argmax(1),
            **({"previous": before} if self.rule_outcomes else {}),
            "position": plain[:, -bar - 1 : -1].argmax(1),
            "place": np.clip(place, 0, self.piece_length - 1).astype(np.int64),
        }

    def observed_states(self, observations: Observations, device: torch.device) -> ChoraleStates:
        decoded = self.decode(observations)
        decided, position, place, key = (
            tensor(decoded[name], device) for name in ("decided", "position", "place", "key")
        )
        return ChoraleStates(
            summary=tensor(observations["prior_summary"], device),
            log_probs=tensor(observations["prior_log_probs"], device),
            decided=decided.float(),
            next_pitch=tensor(decoded["next_pitch"], device),
            position=position,
            place=place,
            mask=tensor(observations["action_mask"].astype(bool), device),
            key=key,
            outcomes=self.outcomes(decoded.get("previous"), decided, position, place, key, device),
        )

    def make_replay(self, capacity: int, num_envs: int) -> ChoraleReplay:
        return ChoraleReplay(self, capacity, num_envs)

    def replay_bytes(self, capacity: int) -> int:
        (K, H), N = self.prior.summary_shape, self.num_pitches  # type: ignore[attr-defined]
        frames = max(1, capacity // FRAMES_PER_TRANSITION)
        packed = (2 * N + 7) // 8
        per_side = 8 * 5 + packed + 4 * (2 * N + 1)
        if self.config.phrases:  # (the shortest: 3/4 of a bar), primed by up to a chorale
            shortest, primer = self.steps_per_bar // 2, PHRASE_PRIMER_BARS * self.steps_per_bar
        else:
            shortest, primer = self.piece_length, len(self.primer())
        pieces = frames // shortest + 2 * self.config.num_envs
        per_piece = (self.piece_length + primer) * packed + 16
        if self.rule_outcomes:
            per_side += outcome_bytes(self.num_pitches)
        return frames * (2 * K * H + 16) + capacity * (2 * per_side + 14) + pieces * per_piece

    def primer(self) -> np.ndarray:
        """The frames ``(T, N, 2)`` the run's chorales start from without ``phrases`` (its
        ``primer``, read as the environment reads it; ``T = 0`` for none): those of every piece
        of a replay saved before each piece kept its own."""
        prior, N = self.prior, self.num_pitches
        frames = parse_primer(
            self.config.primer or None, prior.lowest_pitch, N, prior.resolution, "primer"
        )
        return np.zeros((0, N, 2), np.uint8) if frames is None else frames


class ChoraleReplay:
    """Transitions of chorale decisions, and the summaries of their frames (see the module
    docstring). ``capacity`` transitions, ``F = capacity / FRAMES_PER_TRANSITION`` frames.

    Frames are numbered in the order they start (``frames_written`` so far); frame ``g`` is kept
    in slot ``g % F``, where the newer frames overwrite it. Each kept frame knows its piece (a row
    of ``piece_frames``) and its time step ``t`` there: its summary is the prior's after the
    piece's primer and its frames ``0 .. t - 1``, which ``piece_primers`` and ``piece_frames``
    keep (packed) as long as a kept frame or an environment's current frame is of that piece. So
    it keeps at most ``F // piece_length + 2 num_envs`` whole chorales: those begun and finished
    since the oldest kept frame (``piece_length`` frames each), and per environment the piece it
    was composing then and the one it composes now. Phrases are shorter: the replay adds rows of
    pieces when too few are free, and widens ``piece_primers`` to the longest primer so far. A
    new piece takes the lowest free row, so the rows in use do not depend on how many there are.
    """

    def __init__(self, part: ChoralePart, capacity: int, num_envs: int) -> None:
        self.part, self.capacity, self.num_pitches = part, capacity, part.num_pitches
        self.gamma = part.config.gamma
        self.frame_capacity = F = max(1, capacity // FRAMES_PER_TRANSITION)
        summary_shape = part.prior.summary_shape  # type: ignore[attr-defined]
        self.summaries = np.zeros((F, *summary_shape), np.float16)
        self.frame_pieces = np.zeros(F, np.int64)
        """The piece row of the frame in each slot."""
        self.frame_steps = np.zeros(F, np.int64)
        """The time step of the frame in each slot, in its piece."""
        self.frames_written = 0
        packed = (2 * self.num_pitches + 7) // 8
        judged = outcome_bytes(self.num_pitches) if part.rule_outcomes else 0
        pieces = F // part.piece_length + 2 * num_envs
        self.piece_frames = np.zeros((pieces, part.piece_length - 1, packed), np.uint8)
        """The notes of each frame of each piece (bit-packed) that a later frame follows."""
        self.piece_last = np.full(pieces, -1, np.int64)
        """The newest frame of each piece (-1: none); a piece is free once it is no longer kept."""
        self.piece_primers = np.zeros((pieces, 0, packed), np.uint8)
        """The frames each piece was primed with (bit-packed; as many as the longest primer)."""
        self.primer_lengths = np.zeros(pieces, np.int64)
        """The frames of each piece's primer."""
        self.sides: dict[str, dict[str, np.ndarray]] = {
            side: {
                "frame": np.zeros(capacity, np.int64),
                "decided": np.zeros((capacity, packed), np.uint8),
                "next_pitch": np.zeros(capacity, np.int64),
                "position": np.zeros(capacity, np.int64),
                "place": np.zeros(capacity, np.int64),
                "key": np.zeros(capacity, np.int64),
                "log_probs": np.zeros((capacity, part.num_actions), np.float32),
            }
            | ({"outcomes": np.zeros((capacity, judged), np.uint8)} if judged else {})
            for side in ("state", "next")
        }
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.dones = np.zeros(capacity, bool)
        self.last_frames = np.zeros(capacity, bool)
        """Whether each transition is of its piece's last beat (``ending_share``)."""
        self.count = 0
        """Transitions written so far (the oldest are overwritten past ``capacity``)."""
        self.frames = np.zeros(num_envs, np.int64)
        """Each environment's current frame (its number)."""
        self.pieces = np.zeros(num_envs, np.int64)
        """Each environment's piece row."""
        self.steps = np.zeros(num_envs, np.int64)
        """Each environment's current time step in its piece."""
        self.current: dict[str, np.ndarray] = {}
        """The record of each environment's current state."""

    def __len__(self) -> int:
        return min(self.count, self.capacity)

    def _oldest_frame(self) -> int:
        """The number of the oldest frame whose summary is kept."""
        return max(0, self.frames_written - self.frame_capacity)

    def _add_frames(
        self, slots: np.ndarray, observations: Observations, new: np.ndarray, infos: dict[str, Any]
    ) -> None:
        """Keep the summaries of the frames that the environments ``slots`` start: the next
        frame of their piece, or the first of a new one where ``new`` (its primer is the reset's
        ``infos["primer"]``)."""
        frames = self.frames_written + np.arange(len(slots))
        self.frames_written += len(slots)
        self.steps[slots] += 1
        starting = slots[new]
        in_use = self.piece_last >= self._oldest_frame()  # a kept frame is of it
        in_use[self.pieces[np.setdiff1d(np.arange(len(self.pieces)), starting)]] = True
        self.pieces[starting] = self._free_pieces(in_use, len(starting))
        self.steps[starting], self.piece_frames[self.pieces[starting]] = 0, 0
        self._keep_primers(self.pieces[starting], [infos["primer"][i].matrix for i in starting])
        kept = frames % self.frame_capacity
        self.summaries[kept] = observations["prior_summary"][slots].astype(np.float16)
        self.frame_pieces[kept], self.frame_steps[kept] = self.pieces[slots], self.steps[slots]
        self.piece_last[self.pieces[slots]] = frames
        self.frames[slots] = frames

    def _free_pieces(self, in_use: np.ndarray, count: int) -> np.ndarray:
        """The ``count`` lowest rows of pieces not ``in_use``; rows are added where too few are
        free (phrases shorter than ``piece_length``)."""
        free = np.flatnonzero(~in_use)
        missing = count - len(free)
        if missing > 0:
            rows = len(in_use)
            self._add_piece_rows(max(missing, rows // 2))
            free = np.concatenate([free, rows + np.arange(missing)])
        return free[:count]

    def _add_piece_rows(self, count: int) -> None:
        """``count`` more rows of pieces, free."""
        for name in ("piece_frames", "piece_last", "piece_primers", "primer_lengths"):
            values, fill = getattr(self, name), -1 if name == "piece_last" else 0
            added = np.full((count, *values.shape[1:]), fill, values.dtype)
            setattr(self, name, np.concatenate([values, added]))

    def _keep_primers(self, pieces: np.ndarray, primers: list[np.ndarray]) -> None:
        """Keep the primer frames ``(T_i, N, 2)`` of the new ``pieces`` (widening every row to
        the longest primer so far)."""
        self._widen_primers(max((len(primer) for primer in primers), default=0))
        self.piece_primers[pieces] = 0
        for piece, primer in zip(pieces, primers):
            self.primer_lengths[piece] = len(primer)
            self.piece_primers[piece, : len(primer)] = packed_frames(primer)

    def _widen_primers(self, frames: int) -> None:
        """Room for primers of ``frames`` frames in every row of ``piece_primers``."""
        more = frames - self.piece_primers.shape[1]
        if more > 0:
            self.piece_primers = np.pad(self.piece_primers, ((0, 0), (0, more), (0, 0)))

    def _record(self, observations: Observations) -> dict[str, np.ndarray]:
        """One side of every environment's transition: its frame number, decided bits (packed),
        open pitch, bar and piece positions, key and ``log p``; with ``rule_features`` its
        :func:`action_outcomes` (packed), judged once here rather than at every draw."""
        decoded = self.part.decode(observations)
        record = {
            "frame": self.frames.copy(),
            "decided": packed_frames(decoded["decided"]),
            "next_pitch": decoded["next_pitch"],
            "position": decoded["position"],
            "place": decoded["place"],
            "key": decoded["key"],
            "log_probs": observations["prior_log_probs"],
        }
        return record | ({"outcomes": self._judge(record)} if self.part.rule_outcomes else {})

    def _judge(self, record: dict[str, np.ndarray]) -> np.ndarray:
        """:func:`packed_outcomes` of the states of ``record`` (one side's fields); the frame
        before each from the pieces' notes and primers."""
        cpu = torch.device("cpu")
        decided = unpacked_frames(record["decided"], self.num_pitches)
        before = self._frames_before(record["frame"] % self.frame_capacity)
        fields = (tensor(record[name], cpu) for name in ("position", "place", "key"))
        return packed_outcomes(*self.part.outcome_bits(before, tensor(decided, cpu), *fields, cpu))

    def begin(self, observations: Observations, infos: dict[str, Any]) -> None:
        everyone = np.arange(len(self.frames))
        self._add_frames(everyone, observations, np.ones(len(everyone), bool), infos)
        self.current = self._record(observations)

    def store(
        self,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
        stepped: np.ndarray,
        next_observations: Observations,
        infos: dict[str, Any],
    ) -> None:
        rows = np.flatnonzero(stepped)
        before = {name: values[rows] for name, values in self.current.items()}
        ended = stepped & (actions == self.part.num_actions - 1) & ~terminations
        ending = np.flatnonzero(ended)  # their frame's notes: those decided before "end"
        self.piece_frames[self.pieces[ending], self.steps[ending]] = self.current["decided"][ending]
        starting = np.flatnonzero(ended | ~stepped)
        self._add_frames(starting, next_observations, ~stepped[starting], infos)
        self.current = self._record(next_observations)
        after = {name: values[rows] for name, values in self.current.items()}
        slots = (self.count + np.arange(len(rows))) % self.capacity
        for side, record in (("state", before), ("next", after)):
            for name, values in record.items():
                self.sides[side][name][slots] = values
        self.actions[slots], self.rewards[slots] = actions[rows], rewards[rows]
        self.dones[slots] = terminations[rows]
        self.last_frames[slots] = False
        self.count += len(rows)
        self._mark_last_frames(before["frame"][terminations[rows]])

    def _mark_last_frames(self, frames: np.ndarray) -> None:
        """Mark the transitions of the last beat of the pieces that ``frames`` ended (where the
        ending rules pay): among the newest (a frame takes at most one decision per action of
        each environment)."""
        if len(frames):
            beat = self.part.prior.resolution
            window = min(len(self), self.part.num_actions * len(self.frames) * beat)
            slots = (self.count - 1 - np.arange(window)) % self.capacity
            read = self.sides["state"]["frame"][slots]
            kept = read % self.frame_capacity
            ends = frames % self.frame_capacity
            ending = (self.frame_pieces[kept][:, None] == self.frame_pieces[ends][None]) & (
                self.frame_steps[kept][:, None] > self.frame_steps[ends][None] - beat
            )
            current = read >= self._oldest_frame()
            self.last_frames[slots[ending.any(1) & current]] = True

    def _valid(self, slots: np.ndarray) -> np.ndarray:
        """Whether the frames both sides of ``slots`` read are still kept."""
        oldest = self._oldest_frame()
        return (self.sides["state"]["frame"][slots] >= oldest) & (
            self.sides["next"]["frame"][slots] >= oldest
        )

    def states(self, slots: np.ndarray, side: str, device: torch.device) -> ChoraleStates:
        """The ``"state"`` or ``"next"`` states of the transitions ``slots``."""
        kept, N = self.sides[side], self.num_pitches
        frames = kept["frame"][slots] % self.frame_capacity
        decided = tensor(unpacked_frames(kept["decided"][slots], N), device)
        position, place, key = (
            tensor(kept[name][slots], device) for name in ("position", "place", "key")
        )
        outcomes = None
        if self.part.rule_outcomes:
            outcomes = outcome_rows(*unpacked_outcomes(kept["outcomes"][slots], N, device))
        return ChoraleStates(
            summary=tensor(self.summaries[frames], device),
            log_probs=tensor(kept["log_probs"][slots], device),
            decided=decided.float(),
            next_pitch=tensor(kept["next_pitch"][slots], device),
            position=position,
            place=place,
            mask=tensor(valid_actions(kept["next_pitch"][slots], N), device),
            key=key,
            outcomes=outcomes,
        )

    def _frames_before(self, kept: np.ndarray) -> np.ndarray:
        """``(M, N, 2)``: the notes of the frame before each of the frames in slots ``kept``
        (its piece's frame before, or its primer's last; zeros for none), as the environment's
        observation shows them."""
        pieces, steps = self.frame_pieces[kept], self.frame_steps[kept]
        in_piece = self.piece_frames[pieces, np.maximum(steps - 1, 0)]
        primed, in_primer = self.primer_lengths[pieces], np.zeros_like(in_piece)
        if self.piece_primers.shape[1]:  # some piece was primed
            last = self.piece_primers[pieces, np.maximum(primed - 1, 0)]
            in_primer = np.where((primed > 0)[:, None], last, 0)
        packed = np.where((steps > 0)[:, None], in_piece, in_primer)
        return unpacked_frames(packed, self.num_pitches)

    def sample(
        self, batch_size: int, rng: np.random.Generator, device: torch.device
    ) -> Transitions:
        """``batch_size`` transitions drawn uniformly among the valid ones (with
        ``ending_share``, that share of them among those of the pieces' last beats)."""
        share, last = self.part.config.ending_share, np.zeros(0, np.int64)
        if share:
            last = np.flatnonzero(self.last_frames[: len(self)])
            last = last[self._valid(last)]
        endings = round(share * batch_size) if len(last) else 0
        chosen = rng.integers(0, len(self), batch_size - endings)
        for _ in range(100):
            stale = ~self._valid(chosen)
            if not stale.any():
                break
            chosen[stale] = rng.integers(0, len(self), stale.sum())
        if endings:
            chosen = np.concatenate([chosen, last[rng.integers(0, len(last), endings)]])
        actions = tensor(self.actions[chosen], device)
        ends_frame = actions == self.part.num_actions - 1
        return Transitions(
            states=self.states(chosen, "state", device),
            actions=actions,
            rewards=tensor(self.rewards[chosen], device),
            dones=tensor(self.dones[chosen], device),
            next_states=self.states(chosen, "next", device),
            gamma=torch.where(ends_frame, self.gamma, 1.0),
        )

    # ----------------------------------------------------------------------------- checkpoint
    def nbytes(self) -> int:
        return sum(values.nbytes for values, _ in self._arrays().values())

    def _arrays(self) -> dict[str, tuple[np.ndarray, int]]:
        """Every array a checkpoint keeps (all but the summaries and the outcomes, which
        loading computes again) by name, and its rows in use (the others are as new)."""
        transitions, frames = len(self), min(self.frames_written, self.frame_capacity)
        pieces = int(np.union1d(self.frame_pieces[:frames], self.pieces).max()) + 1
        arrays = {
            f"{side}_{name}": (values, transitions)
            for side, kept in self.sides.items()
            for name, values in kept.items()
            if name != "outcomes"
        }
        arrays |= {name: (getattr(self, name), transitions) for name in ("actions", "rewards")}
        arrays |= {name: (getattr(self, name), transitions) for name in ("dones", "last_frames")}
        arrays |= {name: (getattr(self, name), frames) for name in ("frame_pieces", "frame_steps")}
        arrays |= {
            name: (getattr(self, name), pieces)
            for name in ("piece_frames", "piece_last", "piece_primers", "primer_lengths")
        }
        arrays |= {name: (getattr(self, name), len(self.frames)) for name in ("frames", "pieces")}
        arrays |= {"steps": (self.steps, len(self.frames))}
        current = {name: v for name, v in self.current.items() if name != "outcomes"}
        return arrays | {f"current_{name}": (v, len(v)) for name, v in current.items()}

    def state_dict(self) -> dict[str, Any]:
        """Everything but the summaries, which :meth:`load_state_dict` recomputes from the
        pieces' notes; only the rows in use (a short run's checkpoint holds its own transitions,
        not the whole capacity)."""
        arrays = self._arrays().items()
        saved = {name: torch.from_numpy(values[:used].copy()) for name, (values, used) in arrays}
        return saved | {"count": self.count, "frames_written": self.frames_written}

    def load_state_dict(self, state: dict[str, Any], prior: Any, device: torch.device) -> None:
        """Restore a :meth:`state_dict` (one saved before each piece kept its own primer: every
        piece primed with the run's primer; before the places in the piece: all 0; before the
        last frames were marked: none; before the keys were kept: the run's one key) and
        recompute the summaries (and the outcomes)."""
        if "primer_lengths" not in state:
            state = state | self._run_primers(len(state["piece_last"]))
        if "state_place" not in state:  # saved before piece_position (such a run has it off)
            sides = ("state", "next", "current")
            state = state | {f"{s}_place": torch.zeros_like(state[f"{s}_position"]) for s in sides}
        if "last_frames" not in state:
            state = state | {"last_frames": torch.zeros_like(state["dones"])}
        if "state_key" not in state:  # saved before the keys (such a run has one key)
            sides, index = ("state", "next", "current"), self.part.keys[0].index
            state = state | {
                f"{s}_key": torch.full_like(state[f"{s}_position"], index) for s in sides
            }
        self.current = {
            name.removeprefix("current_"): values.numpy().copy()
            for name, values in state.items()
            if name.startswith("current_")
        }
        pieces, primer_frames = state["piece_primers"].shape[:2]
        if pieces > len(self.piece_last):  # the run had added rows
            self._add_piece_rows(pieces - len(self.piece_last))
        self._widen_primers(primer_frames)
        for name, (values, _) in self._arrays().items():
            saved = state[name].numpy()
            values[tuple(map(slice, saved.shape))] = saved
        self.count, self.frames_written = int(state["count"]), int(state["frames_written"])
        if self.part.rule_outcomes:  # judged again from the pieces' notes, as when stored
            self.current["outcomes"] = self._judge(self.current)
            for kept in self.sides.values():
                for begin in range(0, len(self), 4096):
                    rows = slice(begin, begin + 4096)
                    kept["outcomes"][rows] = self._judge({n: v[rows] for n, v in kept.items()})
        self._recompute_summaries(prior, device)

    def _run_primers(self, pieces: int) -> dict[str, torch.Tensor]:
        """``piece_primers`` and ``primer_lengths`` of ``pieces`` pieces, each primed with the
        run's primer."""
        primer = self.part.primer()
        return {
            "piece_primers": torch.from_numpy(np.repeat(packed_frames(primer)[None], pieces, 0)),
            "primer_lengths": torch.full((pieces,), len(primer), dtype=torch.int64),
        }

    @torch.no_grad()
    def _recompute_summaries(self, prior: Any, device: torch.device, chunk: int = 256) -> None:
        """Play every kept piece's primer and notes through the frozen prior again, as the
        environment played them, and keep the summaries of the kept frames."""
        kept = self.frame_pieces[: min(self.frames_written, self.frame_capacity)]  # by slot
        pieces = np.unique(kept)
        for begin in range(0, len(pieces), chunk):
            batch = pieces[begin : begin + chunk]
            slots = np.flatnonzero(np.isin(kept, batch))
            which = np.searchsorted(batch, kept[slots])  # each slot's piece in `batch`
            played = self.primer_lengths[kept[slots]] + self.frame_steps[slots]  # frames before
            frames = self._played_frames(batch)
            state = prior.initial_state(len(batch))
            for t in range(int(played.max()) + 1):
                now = played == t
                if now.any():
                    summaries = prior.summary(state).to("cpu", torch.float32).numpy()
                    self.summaries[slots[now]] = summaries[which[now]].astype(np.float16)
                if t < played.max():
                    notes = torch.as_tensor(frames[:, t], dtype=torch.float32, device=device)
                    state = prior.advance(state, notes)

    def _played_frames(self, pieces: np.ndarray) -> np.ndarray:
        """``(P, T, N, 2)`` bits: each piece's primer, then its frames (zeros after)."""
        lengths, (_, frames, packed) = self.primer_lengths[pieces], self.piece_frames.shape
        played = np.zeros((len(pieces), lengths.max() + frames, packed), np.uint8)
        for row, (piece, length) in enumerate(zip(pieces, lengths)):
            played[row, :length] = self.piece_primers[piece, :length]
            played[row, length : length + frames] = self.piece_frames[piece]
        return unpacked_frames(played, self.num_pitches)

    def digest(self) -> str:
        """A hash of the kept frames' summaries."""
        kept = min(self.frames_written, self.frame_capacity)
        return hashlib.blake2b(self.summaries[:kept].tobytes(), digest_size=16).hexdigest()
