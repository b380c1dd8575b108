"""The Bi-axial LSTM prior (Johnson 2017), one self-contained file in the style of nanoGPT.

A piece is a note-state ``(T, N, 2)`` of play/articulate bits (see ``musicgym.music.notestate``).
The model predicts frame ``t`` from frames ``< t``:

* an **input kernel** turns frame ``t - 1`` into per-note features (position, pitch class,
  the (play, articulate) bits of the vicinity ``n - 12 .. n + 12``, per-pitch-class counts
  rotated to the note, and the bar position of frame ``t``);
* a **time axis**: a stack of LSTMs run along time, one sequence per note, weights tied across
  notes (all notes of all pieces are one batch);
* a **note axis**: a stack of LSTMs run from the lowest to the highest pitch inside frame ``t``;
  its input at note ``n`` is the time-axis output for ``n`` and the true (training) or sampled
  (sampling) ``(play, articulate)`` of note ``n - 1``;
* a linear head: logits of P(play) and P(articulate | play) per note.

Alignment: ``forward(x)`` with ``x`` of shape ``(B, T, N, 2)`` returns logits ``(B, T, N, 2)``;
``logits[:, t]`` scores frame ``x[:, t]`` given ``x[:, :t]``. Frame 0 is scored conditioned on one
silent frame before it (the time axis starts from a zero state and reads silence), so every frame
of a piece is scored, and a piece's log-likelihood is the sum over all its frames.

Differences from the original, and why:

* the vicinity reads 0 outside the keyboard (the original wraps negative indices to the top);
* the position feature is normalised, ``(pitch - 64) / 32``, instead of the raw note index;
* the beat feature (binary digits of the step, ``t mod 2, 4, 8, 16``) is that of the frame being
  predicted, not of the input frame; the silent frame before frame 0 then needs no step of its own;
* the always-zero spare feature is dropped (79 features instead of 80);
* dropout draws one mask per sequence, shared along it (variational dropout), not one per step;
* default sizes are smaller, for CPU training (see :class:`BiaxialConfig`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from musicgym.music.notestate import NoteState
from musicgym.prior_frames import FrameMelodyPrior

MODEL_TAG = "biaxial-lstm"
FEATURES = ("position", "pitch_class", "vicinity", "context", "beat")
SCORE_GROUPS = 6
"""Candidate frames are scored in this many groups by their lowest sounding note (see
:meth:`BiaxialLSTM.score_candidates`); more groups skip more shared work but make more calls."""
SHARED_SCORING_MIN_CANDIDATES = 256
"""Below this many candidates in one call with autograd, :meth:`BiaxialLSTM.score_candidates`
scores densely."""
WAVE_SCORING_MIN_CANDIDATES = 64
"""Below this many candidates in one call without autograd, :meth:`BiaxialLSTM.score_candidates`
scores densely: one env's 38 candidates score ~1.8x faster in two ``nn.LSTM`` calls (layer 0's
time-axis input selected by note, :meth:`BiaxialLSTM._note_axis_selecting`) than in the waves of
:meth:`BiaxialLSTM._score_in_waves` (whose ~10 operations per note cost more than the arithmetic
they skip), 76 candidates alike, 256 ~1.7x slower."""
CHUNK_STEPS = 8
"""On large inputs (training batches, evaluation) both axes run each LSTM over this many steps
per call, each call going on from the state where the last ended: oneDNN keeps a whole call's
gates for the backward pass, and those of 10 segments x 48 notes x 128 steps outgrow the cache.
Calls of 8 steps train ~1.2x faster than one call per segment (``bench prior``, 1 thread); 4 or
16 steps are slower than 8, and so are larger batches."""
CHUNK_MIN_ROWS = 16_384
"""Calls of at most this many rows (sequences x steps) run whole: for the small batches of
incremental scoring the per-call overhead of chunks costs more than the cache saves."""


@dataclass
class BiaxialConfig:
    """Shape of a :class:`BiaxialLSTM`.

    The default size (time axis 2 x 128, note axis 64, 32) is the one that trains well in an hour
    on one CPU core: about 0.3 M parameters and ~30 MFLOP per 48-pitch frame forward (~1/9 of the
    original's), so an hour sees ~1 M training frames, tens of epochs of JSB Chorales. The
    original's 300, 300 / 100, 50 is :attr:`ORIGINAL`.
    """

    lowest_pitch: int = 36
    """MIDI pitch of note index 0."""
    num_pitches: int = 48
    """Number of pitches N; the model covers lowest_pitch .. lowest_pitch + N - 1."""
    resolution: int = 4
    """Time steps per quarter note (4 = 16th notes, 1 = quarter notes)."""
    time_sizes: tuple[int, ...] = (128, 128)
    """Hidden sizes of the time-axis LSTM stack."""
    note_sizes: tuple[int, ...] = (64, 32)
    """Hidden sizes of the note-axis LSTM stack."""
    dropout: float = 0.5
    """Dropout probability on the output of every LSTM layer except the last one; one mask per
    sequence, shared along it (variational dropout)."""
    vicinity: int = 12
    """The vicinity feature reads notes n - vicinity .. n + vicinity."""
    beat_bits: int = 4
    """Binary digits of the step index in the beat feature (4: t mod 2, 4, 8, 16)."""
    features: tuple[str, ...] = FEATURES
    """Which input features to use, a subset of position, pitch_class, vicinity, context, beat."""
    key_normalised: bool = False
    """Trained on music transposed to C major / A minor: music in another key is transposed into
    C before it is scored (see ``musicgym.music.keys.Key.shift_to_c``)."""

    ORIGINAL: ClassVar[BiaxialConfig]
    """Johnson's sizes and pitch range (MIDI 24..101)."""

    def __post_init__(self) -> None:
        self.time_sizes = tuple(self.time_sizes)
        self.note_sizes = tuple(self.note_sizes)
        self.features = tuple(self.features)
        unknown = set(self.features) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown input features {sorted(unknown)}; known: {FEATURES}")
        if not self.time_sizes or not self.note_sizes:
            raise ValueError("time_sizes and note_sizes need at least one layer each")

    @property
    def feature_sizes(self) -> dict[str, int]:
        """Width of each input feature in use, in kernel order."""
        sizes = {
            "position": 1,
            "pitch_class": 12,
            "vicinity": 2 * (2 * self.vicinity + 1),
            "context": 12,
            "beat": self.beat_bits,
        }
        return {name: sizes[name] for name in FEATURES if name in self.features}

    @property
    def num_features(self) -> int:
        return sum(self.feature_sizes.values())

    def flops_per_frame(self) -> int:
        """Multiply-add FLOPs (2 per MAC) of the forward pass for one frame: the LSTM and head
        matrix products, which dominate; element-wise work is left out."""
        per_note, width = 0, self.num_features
        for size in self.time_sizes:
            per_note += 2 * 4 * size * (width + size)
            width = size
        width += 2
        for size in self.note_sizes:
            per_note += 2 * 4 * size * (width + size)
            width = size
        per_note += 2 * 2 * width
        return per_note * self.num_pitches


BiaxialConfig.ORIGINAL = BiaxialConfig(
    lowest_pitch=24, num_pitches=78, time_sizes=(300, 300), note_sizes=(100, 50)
)


def frame_log_likelihood(
    logits: torch.Tensor, frames: torch.Tensor, play_only: bool = False
) -> torch.Tensor:
    """Log-likelihood of each frame, ``(...,)`` from logits and 0/1 frames ``(..., N, 2)``.

    Play is scored for every note; articulate only where the frame plays the note (an
    articulation of a silent note is not an event). ``play_only`` drops the articulate terms.
    """
    frames = frames.to(logits.dtype)
    bits = -F.binary_cross_entropy_with_logits(logits, frames, reduction="none")  # (..., N, 2)
    ll = bits[..., 0].sum(-1)
    if not play_only:
        ll = ll + (bits[..., 1] * frames[..., 0]).sum(-1)
    return ll


def _lstm_in_chunks(
    lstm: nn.LSTM, x: torch.Tensor, start: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """``lstm(x, start)`` for batch-first ``x`` ``(S, L, F)``, run :data:`CHUNK_STEPS` steps per
    call where ``x`` has more than :data:`CHUNK_MIN_ROWS` rows: the same outputs and final
    state."""
    S, L, _ = x.shape
    if S * L <= CHUNK_MIN_ROWS or L <= CHUNK_STEPS:
        return lstm(x, start)
    outputs, state = [], start
    for part in x.split(CHUNK_STEPS, 1):
        output, state = lstm(part, state)
        outputs.append(output)
    return torch.cat(outputs, 1), state


@dataclass
class BiaxialState:
    """Recurrent state of ``B`` streams between frames.

    ``hidden[i]`` is the (h, c) of time-axis layer ``i``, each ``(B, N, H_i)``; ``time_out``
    ``(B, N, H)`` is the time-axis output from which the next frame is scored; ``step`` ``(B,)``
    is the index of that next frame.
    """

    hidden: list[tuple[torch.Tensor, torch.Tensor]]
    time_out: torch.Tensor
    step: torch.Tensor


@dataclass
class NoteAxis:
    """Where ``B`` streams stand inside their next frame, decided from the lowest pitch up:
    ``next_pitch`` ``(B,)``, each stream's lowest undecided pitch (``N``: all decided), and
    ``decided`` ``(B, N, 2)``, the (play, articulate) bits decided so far (zeros above)."""

    next_pitch: torch.Tensor
    decided: torch.Tensor


class BiaxialLSTM(nn.Module, FrameMelodyPrior):
    """The Bi-axial LSTM; implements ``musicgym.prior.NoteAxisPrior`` (a ``FramePrior`` that
    also decides a frame note by note, through its note axis), and through
    ``musicgym.prior_frames.FrameMelodyPrior`` ``musicgym.prior.MelodyPrior`` (its summary of a
    stream is the time-axis output ``(N, H)`` from which the next frame is scored).

    Incremental use::

        state = model.initial_state(B)                  # before frame 0
        scores = model.score_frames(state, candidates)  # (B, C) from (B, C, N, 2)
        state = model.advance(state, chosen)            # chosen frames (B, N, 2)
    """

    model_tag: ClassVar[str] = MODEL_TAG
    config_class: ClassVar[type] = BiaxialConfig

    def __init__(self, config: BiaxialConfig) -> None:
        super().__init__()
        self.config = config
        self.lowest_pitch = config.lowest_pitch
        self.key_normalised = config.key_normalised
        self.num_pitches = config.num_pitches
        self.resolution = config.resolution
        pitch = torch.arange(config.lowest_pitch, config.lowest_pitch + config.num_pitches)
        # Derived from the config, so not part of the weights.
        self.register_buffer("position", (pitch.float() - 64.0) / 32.0, persistent=False)  # (N,)
        self.register_buffer(
            "pitch_class_onehot", F.one_hot(pitch % 12, 12).float(), persistent=False
        )  # (N, 12)
        self.register_buffer(
            "context_index", (pitch[:, None] + torch.arange(12)) % 12, persistent=False
        )  # (N, 12)
        self.time_lstms = nn.ModuleList()
        width = config.num_features
        for size in config.time_sizes:
            self.time_lstms.append(nn.LSTM(width, size, batch_first=True))
            width = size
        self.note_lstms = nn.ModuleList()
        width += 2
        for size in config.note_sizes:
            self.note_lstms.append(nn.LSTM(width, size, batch_first=True))
            width = size
        self.head = nn.Linear(width, 2)
        with torch.no_grad():  # start from sparse frames (~8% of notes play), not from P = 0.5
            self.head.bias[0] = -2.5

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    @property
    def summary_shape(self) -> tuple[int, int]:
        return self.num_pitches, self.config.time_sizes[-1]

    def summary(self, state: BiaxialState) -> torch.Tensor:
        """The time-axis output ``(B, N, H)`` from which each stream's next frame is scored."""
        return state.time_out

    def readout_parameters(self) -> list[nn.Parameter]:
        """The weights above the summary: the note axis and the head."""
        return [*self.note_lstms.parameters(), *self.head.parameters()]

    # ----------------------------------------------------------------------------- input kernel
    def input_features(self, frames: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """Per-note features ``(B, T, N, F)`` of input frames ``(B, T, N, 2)``.

        ``steps`` ``(B, T)`` are the indices of the frames being predicted (for the beat feature).
        """
        cfg = self.config
        frames = frames.float()
        B, T, N, _ = frames.shape
        parts = []
        if "position" in cfg.features:
            parts.append(self.position.expand(B, T, N).unsqueeze(-1))
        if "pitch_class" in cfg.features:
            parts.append(self.pitch_class_onehot.expand(B, T, N, 12))
        if "vicinity" in cfg.features:
            v = cfg.vicinity
            padded = F.pad(frames, (0, 0, v, v))  # (B, T, N + 2v, 2), zeros beyond the edges
            window = padded.unfold(2, 2 * v + 1, 1)  # (B, T, N, 2, 2v + 1)
            # entry 2 * (o + v) + k: bit k of note n + o
            parts.append(window.transpose(-1, -2).reshape(B, T, N, 2 * (2 * v + 1)))
        if "context" in cfg.features:
            counts = frames[..., 0] @ self.pitch_class_onehot  # (B, T, 12) notes per pitch class
            parts.append(counts[:, :, self.context_index])  # (B, T, N, 12) k semitones above n
        if "beat" in cfg.features:
            digits = torch.arange(cfg.beat_bits, device=steps.device)
            bits = (steps.unsqueeze(-1) >> digits) & 1  # (B, T, bits)
            parts.append(bits.float().unsqueeze(2).expand(B, T, N, cfg.beat_bits))
        return torch.cat(parts, -1)

    # -------------------------------------------------------------------------------- the axes
    def _time_axis(
        self,
        features: torch.Tensor,
        hidden: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Time-axis outputs ``(B, T, N, H)`` of features ``(B, T, N, F)``, and the final state."""
        B, T, N, _ = features.shape
        x = features.permute(0, 2, 1, 3).reshape(B * N, T, -1)  # one sequence per note
        final = []
        for i, lstm in enumerate(self.time_lstms):
            start = None
            if hidden is not None:
                h, c = hidden[i]
                start = (h.reshape(1, B * N, -1).contiguous(), c.reshape(1, B * N, -1).contiguous())
            x, (h, c) = _lstm_in_chunks(lstm, x, start)
            x = self._shared_dropout(x)
            final.append((h.reshape(B, N, -1), c.reshape(B, N, -1)))
        return x.reshape(B, N, T, -1).permute(0, 2, 1, 3), final

    def _note_axis(self, time_out: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Logits ``(M, N, 2)`` of frames ``(M, N, 2)`` (teacher-forced) given ``(M, N, H)``."""
        below = F.pad(frames.float()[:, :-1], (0, 0, 1, 0))  # (M, N, 2): note n - 1, 0 below
        x = torch.cat([time_out, below], -1)
        for i, lstm in enumerate(self.note_lstms):
            x, _ = _lstm_in_chunks(lstm, x)
            if i < len(self.note_lstms) - 1:
                x = self._shared_dropout(x)
        return self.head(x)

    def _shared_dropout(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout of LSTM outputs ``(S, L, H)`` with one mask per sequence, shared by its ``L``
        steps (Gal and Ghahramani's variational dropout): one Bernoulli draw per sequence and
        unit instead of one per step, which made ~9% of a training step's time."""
        p = self.config.dropout
        if not self.training or p == 0:
            return x
        keep = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - p)  # (S, 1, H)
        return x * keep.div_(1 - p)

    def forward(self, note_states: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, N, 2)`` of (play, articulate | play); ``[:, t]`` scores frame ``t``
        of ``note_states`` ``(B, T, N, 2)`` given frames ``< t`` (and silence before frame 0)."""
        x = note_states.float()
        B, T, N, _ = x.shape
        previous = F.pad(x[:, :-1], (0, 0, 0, 0, 1, 0))  # (B, T, N, 2): frame t - 1
        steps = torch.arange(T, device=x.device).expand(B, T)
        time_out, _ = self._time_axis(self.input_features(previous, steps))  # (B, T, N, H)
        logits = self._note_axis(time_out.reshape(B * T, N, -1), x.reshape(B * T, N, 2))
        return logits.reshape(B, T, N, 2)

    def log_likelihood(self, note_states: torch.Tensor, play_only: bool = False) -> torch.Tensor:
        """Log-likelihood ``(B, T)`` of each frame of ``note_states`` ``(B, T, N, 2)``."""
        return frame_log_likelihood(self(note_states), note_states, play_only)

    # ------------------------------------------------------------------ incremental (FramePrior)
    def _time_step(
        self,
        hidden: list[tuple[torch.Tensor, torch.Tensor]],
        frames: torch.Tensor,
        steps: torch.Tensor,
    ) -> BiaxialState:
        features = self.input_features(frames.to(self.device)[:, None], steps[:, None])
        time_out, hidden = self._time_axis(features, hidden)  # (B, 1, N, H)
        return BiaxialState(hidden, time_out[:, 0], steps)

    def initial_state(self, batch_size: int) -> BiaxialState:
        """State of ``batch_size`` streams before frame 0 (the time axis has read silence)."""
        B, N = batch_size, self.num_pitches
        hidden = [
            (torch.zeros(B, N, s, device=self.device), torch.zeros(B, N, s, device=self.device))
            for s in self.config.time_sizes
        ]
        silence = torch.zeros(B, N, 2, device=self.device)
        return self._time_step(
            hidden, silence, torch.zeros(B, dtype=torch.long, device=self.device)
        )

    def advance(self, state: BiaxialState, frames: torch.Tensor) -> BiaxialState:
        """Feed each stream its next frame ``(B, N, 2)``; returns the state after it."""
        return self._time_step(state.hidden, frames, state.step + 1)

    def score_frames(
        self, state: BiaxialState, candidates: torch.Tensor, play_only: bool = False
    ) -> torch.Tensor:
        """Log-probabilities ``(B, C)`` of candidate next frames ``(B, C, N, 2)`` of every stream
        (:meth:`score_candidates` from the state's time-axis output)."""
        return self.score_candidates(state.time_out, candidates.to(self.device), play_only)

    def score_candidates(
        self,
        time_out: torch.Tensor,
        candidates: torch.Tensor,
        play_only: bool = False,
        groups: int | None = None,
    ) -> torch.Tensor:
        """Log-likelihoods ``(B, C)`` of candidate frames ``(B, C, N, 2)`` given the time-axis
        outputs ``(B, N, H)`` from which they are scored; differentiable.

        Exact, with shared work: the note axis reads at note ``n`` only the bits of the notes
        below ``n``, so up to (and including) its lowest note with a nonzero bit a candidate's
        note axis *is* that of the silent frame. The silent frame runs once per stream, and the
        candidates are split into ``groups`` by that lowest note: each group continues from the
        silent run's states at its lowest note instead of from note 0. The dense way (every
        candidate over every note in one call) is taken in training mode, so that dropout applies,
        for ``groups=0``, and when the batch is too small for the sharing to pay (``groups=None``
        chooses: per-call overhead beats saved arithmetic below about 256 candidates). Without
        autograd, ``groups=None`` scores from :data:`WAVE_SCORING_MIN_CANDIDATES` candidates up in
        :meth:`_score_in_waves`, each candidate from its own lowest note (the environments' way:
        ~1.2x faster than the groups for 64 x 38 candidates, ~1.5x for 8 x 38); the dense way
        without autograd reads layer 0's time-axis input through :meth:`_note_axis_selecting`
        where that is narrower.
        """
        B, C, N, _ = candidates.shape
        frames = candidates.to(time_out.dtype)
        dense = groups == 0 or (self.training and self.config.dropout > 0)
        if groups is None and not dense:
            if not torch.is_grad_enabled() and B * C >= WAVE_SCORING_MIN_CANDIDATES:
                return self._score_in_waves(time_out, frames, play_only)
            dense = B * C < SHARED_SCORING_MIN_CANDIDATES or not torch.is_grad_enabled()
            groups = SCORE_GROUPS
        if dense:
            frames = frames.reshape(B * C, N, 2)
            frozen = not (torch.is_grad_enabled() or self.training)
            if frozen and time_out.device.type == "cpu" and time_out.shape[-1] >= 2 * B * N:
                logits = self._note_axis_selecting(time_out, frames)  # (B * C, N, 2)
            else:
                repeated = time_out.unsqueeze(1).expand(B, C, N, -1).reshape(B * C, N, -1)
                logits = self._note_axis(repeated, frames)  # (B * C, N, 2)
            return frame_log_likelihood(logits, frames, play_only).view(B, C)

        nonzero = frames.ne(0).any(-1)  # (B, C, N)
        first = torch.where(nonzero.any(-1), nonzero.int().argmax(-1), N)  # (B, C), N: silent
        lowest = int(first.min())
        bounds = torch.linspace(lowest, N, groups + 1).round().long().unique().tolist()
        # The silent frame, in segments, keeping every layer's (h, c) at each group boundary.
        silent_input = F.pad(time_out, (0, 2))  # (B, N, H + 2): no note plays below any note
        segment_logits, boundary_states, note_state = [], {}, None
        for begin, end in zip([0, *bounds[:-1]], bounds):
            if end > begin:
                logits, note_state = self._note_axis_from(silent_input[:, begin:end], note_state)
                segment_logits.append(logits)
            boundary_states[end] = note_state
        silent_logits = torch.cat(segment_logits, 1)  # (B, N, 2)
        silent_notes = F.logsigmoid(-silent_logits[..., 0])  # (B, N): log P(note n silent)
        below = F.pad(silent_notes.cumsum(1), (1, 0))  # (B, N + 1): notes < n all silent
        scores = below[:, N, None].expand(B, C).clone()  # the silent candidates' score
        for begin, end in itertools.pairwise(bounds):
            row, column = torch.nonzero((first >= begin) & (first < end), as_tuple=True)
            if not len(row):
                continue
            chosen = frames[row, column]  # (R, N, 2)
            previous = F.pad(chosen[:, :-1], (0, 0, 1, 0))[:, begin:]  # bits of note n - 1
            inputs = torch.cat([time_out[row, begin:], previous], -1)  # (R, N - begin, H + 2)
            start = boundary_states[begin]
            start = None if start is None else [(h[row], c[row]) for h, c in start]
            logits, _ = self._note_axis_from(inputs, start)  # (R, N - begin, 2)
            suffix = frame_log_likelihood(logits, chosen[:, begin:], play_only)
            scores = scores.index_put((row, column), below[row, begin] + suffix)
        return scores

    def _note_axis_selecting(self, time_out: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """:meth:`_note_axis` without dropout of frames ``(B * C, N, 2)``, ``C`` candidates of
        each of ``B`` streams, given the streams' time-axis outputs ``(B, N, H)``. Layer 0's
        projection of the time-axis output is made once per stream and note and becomes ``B * N``
        input columns of that layer, which a one-hot of the row's (stream, note) selects: an
        input of ``B * N + 2`` columns instead of ``H + 2``, in the same ``nn.LSTM`` kernel, the
        same sums (equal bit for bit on this machine's kernels). :meth:`score_candidates` takes
        it on the CPU where ``2 B N <= H``: one env's 38 candidates score 1.24x (``bach16``) to
        1.41x (``melody16``) faster than with :meth:`_note_axis`; for two streams the two ways
        measured alike."""
        B, N, H = time_out.shape
        first = self.note_lstms[0]
        weight = first.weight_ih_l0  # (4 h, H + 2): the time-axis output's columns, then the bits
        projection = time_out.reshape(B * N, H) @ weight[:, :H].T  # (B * N, 4 h)
        weights = [
            torch.cat([projection.T, weight[:, H:]], 1),
            first.weight_hh_l0,
            first.bias_ih_l0,
            first.bias_hh_l0,
        ]
        rows = frames.shape[0]
        select = torch.eye(B * N, dtype=time_out.dtype, device=time_out.device)
        select = select.view(B, 1, N, B * N).expand(B, rows // B, N, B * N).reshape(rows, N, -1)
        below = F.pad(frames[:, :-1], (0, 0, 1, 0))  # (B * C, N, 2): note n - 1, 0 below
        start = time_out.new_zeros(1, rows, first.hidden_size)
        inputs = torch.cat([select, below], -1)  # (B * C, N, B * N + 2)
        # first(inputs) with these input weights: biases, 1 layer, no dropout, eval, batch first
        x, _, _ = torch.lstm(inputs, (start, start), weights, True, 1, 0.0, False, False, True)
        for lstm in self.note_lstms[1:]:
            x, _ = lstm(x)
        return self.head(x)

    def _note_axis_from(
        self,
        inputs: torch.Tensor,
        start: list[tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The note axis without dropout over ``inputs`` ``(R, L, H + 2)`` from per-layer
        ``(h, c)`` ``start`` states (each ``(R, h)``; zeros if ``None``): the head's logits
        ``(R, L, 2)`` and the final per-layer states."""
        x, final = inputs, []
        for layer, lstm in enumerate(self.note_lstms):
            state = None
            if start is not None:
                h, c = start[layer]
                state = (h[None].contiguous(), c[None].contiguous())
            x, (h, c) = lstm(x, state)
            final.append((h[0], c[0]))
        return self.head(x), final

    def _wave_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The note axis' weights for :meth:`_score_in_waves`, rebuilt when a weight changes:
        ``(Z, G)`` on the rows ``[h_0 .. h_{L-1}, bits below]`` (every layer's recurrent and input
        weights but the time-axis part of layer 0's input), ``(H, G)`` that part, and ``(G,)``
        the biases. The ``G = 4 sum(H_l)`` gate columns are ``[i | f | o | g]``, each gate
        ``[layer 0 .. L - 1]``, so one matrix product gives every layer's gates and one
        element-wise call of each kind updates every layer."""
        key = tuple((p.data_ptr(), p._version) for p in self.note_lstms.parameters())
        cached = self.__dict__.get("_wave_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        sizes, time_size = self.config.note_sizes, self.config.time_sizes[-1]
        total, offsets = sum(sizes), [0, *itertools.accumulate(sizes)]
        like = self.head.weight  # the weights' device and dtype
        weight = like.new_zeros(total + 2, 4 * total)
        time_weight = like.new_zeros(time_size, 4 * total)
        bias = like.new_zeros(4 * total)
        with torch.no_grad():
            for layer, lstm in enumerate(self.note_lstms):
                size, begin = sizes[layer], offsets[layer]
                w_ih, w_hh = lstm.weight_ih_l0, lstm.weight_hh_l0
                b = lstm.bias_ih_l0 + lstm.bias_hh_l0
                for slot, gate in enumerate((0, 1, 3, 2)):  # i f o g of PyTorch's i f g o
                    rows = slice(gate * size, (gate + 1) * size)
                    columns = slice(slot * total + begin, slot * total + begin + size)
                    weight[begin : begin + size, columns] = w_hh[rows].T
                    bias[columns] = b[rows]
                    if layer == 0:
                        time_weight[:, columns] = w_ih[rows, :time_size].T
                        weight[total:, columns] = w_ih[rows, time_size:].T
                    else:
                        below = slice(offsets[layer - 1], begin)
                        weight[below, columns] = w_ih[rows].T
        weights = (weight, time_weight, bias)
        self.__dict__["_wave_cache"] = (key, weights)
        return weights

    def _score_in_waves(
        self, time_out: torch.Tensor, frames: torch.Tensor, play_only: bool
    ) -> torch.Tensor:
        """:meth:`score_candidates` without autograd, each candidate's note axis run only above
        its lowest nonzero note ``k`` (below and at ``k`` it is the silent frame's, run once per
        stream), in one loop over the notes for all candidates and layers:

        * layer 0's input projection of the time-axis output is made once per stream and note,
          not once per candidate (half of the note axis' arithmetic);
        * at step ``w`` layer ``l`` reads note ``w - l`` (a wavefront), so every layer's gates
          come from one matrix product and each element-wise operation runs once per step;
        * the rows (silent frames first, then the candidates by ``k``) that are active at a step
          are a prefix: a candidate joins at step ``k + 1`` with a copy of its stream's silent
          state (every layer's notes ``<= k`` are the silent frame's, recomputed where needed).
        """
        B, C, N, _ = frames.shape
        sizes = self.config.note_sizes
        total, top_begin, L = sum(sizes), sum(sizes[:-1]), len(sizes)
        weight, time_weight, bias = self._wave_weights()
        nonzero = frames.ne(0).any(-1)  # (B, C, N)
        first = torch.where(nonzero.any(-1), nonzero.int().argmax(-1), N)  # (B, C), N: silent
        stream, column = torch.nonzero(first < N, as_tuple=True)
        first_note, order = first[stream, column].sort(stable=True)
        stream, column = stream[order], column[order]
        chosen = frames[stream, column]  # (R, N, 2): the candidates that play, by first note
        rows = B + len(stream)
        row_stream = torch.cat([torch.arange(B, device=self.device), stream])
        gate_inputs = torch.addmm(bias, time_out.reshape(B * N, -1), time_weight).view(B, N, -1)
        gate_inputs = torch.cat([gate_inputs, bias.expand(B, L - 1, -1)], 1)  # past the top note
        gate_inputs = gate_inputs.transpose(0, 1).contiguous()  # (N + L - 1, B, G)
        below = frames.new_zeros(N, rows, 2)  # the bits of note n - 1, read at note n
        below[1:, B:] = chosen[:, :-1].transpose(0, 1)
        hidden = frames.new_zeros(rows, total + 2)  # [h_0 .. h_{L-1}, bits below]
        cell = frames.new_zeros(rows, total)
        top = frames.new_empty(N, rows, sizes[-1])  # the last layer's output at every note
        steps = N + L - 1
        active = B + torch.searchsorted(first_note, torch.arange(steps, device=self.device))
        active = active.tolist()  # rows active at step w: the silent ones and those with k < w
        for step in range(steps):
            count = active[step]
            if step and count > active[step - 1]:
                joining = slice(active[step - 1], count)
                hidden[joining] = hidden[row_stream[joining]]
                cell[joining] = cell[row_stream[joining]]
            h, c = hidden[:count], cell[:count]
            if step < N:
                h[:, total:] = below[step, :count]
            gates = gate_inputs[step].index_select(0, row_stream[:count]).addmm_(h, weight)
            sig, candidate = gates[:, : 3 * total].sigmoid_(), gates[:, 3 * total :].tanh_()
            c.mul_(sig[:, total : 2 * total]).addcmul_(sig[:, :total], candidate)
            torch.mul(sig[:, 2 * total :], c.tanh(), out=h[:, :total])
            if step < L - 1:  # the layers above this step's have not begun
                h[:, sum(sizes[: step + 1]) : total] = 0.0
                c[:, sum(sizes[: step + 1]) :] = 0.0
            else:
                top[step - L + 1, :count] = h[:, top_begin:total]
        logits = self.head(top)  # (N, rows, 2); garbage where a row is not active
        silent = logits[:, :B].transpose(0, 1)  # (B, N, 2)
        scores = frame_log_likelihood(silent, torch.zeros_like(silent), play_only)
        scores = scores[:, None].expand(B, C).clone()
        if len(stream):
            own = torch.arange(N, device=self.device) > first_note[:, None]  # (R, N)
            logits = torch.where(own[..., None], logits[:, B:].transpose(0, 1), silent[stream])
            scores[stream, column] = frame_log_likelihood(logits, chosen, play_only)
        return scores

    # ------------------------------------------------------------ note by note (NoteAxisPrior)
    def start_note_axis(self, state: BiaxialState) -> NoteAxis:
        """Every stream of ``state`` before its next frame's lowest pitch."""
        B, N = state.time_out.shape[:2]
        next_pitch = torch.zeros(B, dtype=torch.long, device=self.device)
        return NoteAxis(next_pitch, torch.zeros(B, N, 2, device=self.device))

    def note_log_probs(self, state: BiaxialState, note_axis: NoteAxis) -> torch.Tensor:
        """``(B, N, 3)`` log-probabilities of (not played, played articulated, played held) at
        every pitch from each stream's next undecided one up, the undecided pitches below it not
        played (``-inf`` at decided pitches): one teacher-forced note-axis pass over the frame
        decided so far, its undecided pitches silent (as :meth:`score_candidates` scores a
        frame)."""
        logits = self._note_axis(state.time_out, note_axis.decided)  # (B, N, 2)
        play, articulate = F.logsigmoid(logits[..., 0]), F.logsigmoid(logits[..., 1])
        choices = torch.stack(
            [
                F.logsigmoid(-logits[..., 0]),
                play + articulate,
                play + F.logsigmoid(-logits[..., 1]),
            ],
            -1,
        )  # (B, N, 3)
        pitch = torch.arange(logits.shape[1], device=self.device)
        decided = pitch[None, :] < note_axis.next_pitch[:, None]  # (B, N)
        return choices.masked_fill(decided[..., None], -math.inf)

    def decide_notes(
        self,
        state: BiaxialState,
        note_axis: NoteAxis,
        pitches: torch.Tensor,
        bits: torch.Tensor,
    ) -> NoteAxis:
        """The note axis after each stream decides its undecided pitches up to ``pitches``
        ``(B,)`` (those below not played, ``pitches`` itself ``bits`` ``(B, 2)``); ``N`` ends the
        frame and starts the next one's note axis, -1 decides nothing."""
        N = note_axis.decided.shape[1]
        pitches, bits = pitches.to(self.device), bits.to(self.device).float()
        ending, keeping = pitches >= N, pitches < 0
        decided = note_axis.decided.masked_fill(ending[:, None, None], 0.0)
        rows = torch.nonzero(~ending & ~keeping).flatten()
        decided[rows, pitches[rows]] = bits[rows]
        next_pitch = torch.where(ending, 0, pitches + 1)
        return NoteAxis(torch.where(keeping, note_axis.next_pitch, next_pitch), decided)

    def select_state(self, state: BiaxialState, index: torch.Tensor) -> BiaxialState:
        """The state of streams ``index`` (1-D long tensor)."""
        index = index.to(self.device)
        return BiaxialState(
            [(h[index], c[index]) for h, c in state.hidden],
            state.time_out[index],
            state.step[index],
        )

    def assign_state(
        self, state: BiaxialState, index: torch.Tensor, new: BiaxialState
    ) -> BiaxialState:
        """``state`` with streams ``index`` replaced by the streams of ``new``, in place (a batched
        environment assigns a few streams of many at every step: copying all of them took 7% of
        its time)."""
        index = index.to(self.device)
        for (h, c), (new_h, new_c) in zip(state.hidden, new.hidden):
            h.index_copy_(0, index, new_h)
            c.index_copy_(0, index, new_c)
        state.time_out.index_copy_(0, index, new.time_out)
        state.step.index_copy_(0, index, new.step)
        return state

    # ---------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample_frames(
        self,
        state: BiaxialState,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        play_exponent: torch.Tensor | float = 1.0,
    ) -> torch.Tensor:
        """Draw one next frame ``(B, N, 2)`` per stream, note by note from low to high.

        Each note's play is drawn with probability ``P(play) ** play_exponent`` (``(B,)`` or a
        float; below 1 makes notes likelier) from logits divided by ``temperature``; articulate
        only if it plays. Each note's draw is fed to the next note.
        """
        B, N = state.time_out.shape[0], self.num_pitches
        exponent = torch.as_tensor(play_exponent, dtype=torch.float, device=self.device)
        frame = torch.zeros(B, N, 2, device=self.device)
        below = torch.zeros(B, 1, 2, device=self.device)
        hidden: list[Any] = [None] * len(self.note_lstms)
        for n in range(N):
            x = torch.cat([state.time_out[:, n : n + 1], below], -1)  # (B, 1, H + 2)
            for i, lstm in enumerate(self.note_lstms):
                x, hidden[i] = lstm(x, hidden[i])
            p = torch.sigmoid(self.head(x[:, 0]) / temperature)  # (B, 2)
            draws = torch.rand(B, 2, generator=generator, device=self.device)
            play = (draws[:, 0] < p[:, 0] ** exponent).float()
            articulate = (draws[:, 1] < p[:, 1]).float() * play
            frame[:, n, 0], frame[:, n, 1] = play, articulate
            below = frame[:, n : n + 1]
        return frame

    @torch.no_grad()
    def sample(
        self,
        steps: int,
        primer: NoteState | None = None,
        seed: int = 0,
        temperature: float = 1.0,
        avoid_silence: bool = True,
    ) -> NoteState:
        """A note-state of the ``primer`` (if any) followed by ``steps`` sampled frames.

        ``avoid_silence`` is the original's "conservativity": after a frame with fewer than 2
        sounding notes the play exponent drops by 0.02 (notes get likelier), otherwise it moves
        30% of the way back to 1. The same ``seed`` gives the same piece on the same device.
        """
        was_training = self.training
        self.eval()
        generator = torch.Generator(device=self.device).manual_seed(seed)
        state = self.initial_state(1)
        frames = []
        if primer is not None:
            primer = primer.with_range(self.lowest_pitch, self.num_pitches)
            for frame in torch.as_tensor(primer.matrix, device=self.device).float():
                frames.append(frame)
                state = self.advance(state, frame[None])
        exponent = 1.0
        for _ in range(steps):
            frame = self.sample_frames(state, generator, temperature, exponent)[0]  # (N, 2)
            frames.append(frame)
            state = self.advance(state, frame[None])
            if avoid_silence:
                sounding = int(frame[:, 0].sum())
                exponent = (
                    max(exponent - 0.02, 0.0) if sounding < 2 else exponent + (1 - exponent) * 0.3
                )
        self.train(was_training)
        matrix = torch.stack(frames).to(torch.uint8).cpu().numpy() if frames else None
        if matrix is None:
            return NoteState.empty(0, self.lowest_pitch, self.num_pitches, self.resolution)
        return NoteState(matrix, self.lowest_pitch, self.resolution, "biaxial-lstm sample")
