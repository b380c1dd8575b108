"""The Note RNN of Jaques et al. (2017), the RL Tuner's prior, one self-contained file.

A melody is a sequence of tokens, one per 16th note: ``NOTE_OFF`` (0), ``NO_EVENT`` (1), or "strike
pitch ``lowest_pitch + i``" (``2 + i``), over a vocabulary of ``2 + num_pitches`` tokens. With the
default pitch axis (MIDI 48..83) that is exactly the environment's 38 tokens and the spec's model
(``docs/spec/melody-rules.md``): one LSTM layer of 100 units over the one-hot previous token, and a
softmax over the next. A wider axis (``melody16c``'s 42..89) lets a key-normalised Note RNN read
melodies in any key moved into C; it then scores the environment's 38 tokens renormalised over
them.

Alignment: ``forward(tokens)`` with ``tokens`` ``(B, T)`` returns logits ``(B, T, V)``;
``logits[:, t]`` scores ``tokens[:, t]`` given ``tokens[:, :t]`` (the input before the first token
is all zeros). It trains on note-states like the Bi-axial LSTM: :meth:`NoteRNN.log_likelihood`
reads each piece's top voice as tokens (:func:`melody_tokens`), so ``musicgym prior train --model
note-rnn`` runs the same trainer on the same data, and the per-step log-likelihoods of the two
models are comparable on monophonic music.

It is a :class:`musicgym.prior.MelodyPrior`: its summary of a melody is the last LSTM layer's
output ``(1, H)``.

Differences from Jaques et al.: the trainer's optimiser and schedule (Adam, constant learning
rate, global-norm clip 5, no L2 and no skipped first 32 losses, see ``musicgym.priors.train``);
dropout on the LSTM output while training; the pitch axis may be wider than the 36 pitches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musicgym.music.notestate import NoteState
from musicgym.music.tokens import (
    FIRST_PITCH_TOKEN,
    LOWEST_MELODY_PITCH,
    NO_EVENT,
    NOTE_OFF,
    NUM_TOKENS,
)

MODEL_TAG = "note-rnn"


@dataclass
class NoteRNNConfig:
    """Shape of a :class:`NoteRNN` (the defaults are Jaques et al.'s)."""

    lowest_pitch: int = 48
    """MIDI pitch of the first pitch token."""
    num_pitches: int = 36
    """Pitch tokens; the vocabulary is NOTE_OFF, NO_EVENT and these."""
    resolution: int = 4
    """Time steps per quarter note (one token per step)."""
    time_sizes: tuple[int, ...] = (100,)
    """Hidden sizes of the LSTM stack along time."""
    dropout: float = 0.5
    """Dropout on the output of every LSTM layer while training."""
    key_normalised: bool = False
    """Trained on music transposed to C major / A minor (see ``musicgym.prior.transposition``)."""

    def __post_init__(self) -> None:
        self.time_sizes = tuple(self.time_sizes)
        if not self.time_sizes:
            raise ValueError("time_sizes: at least one layer")

    @property
    def vocabulary(self) -> int:
        return FIRST_PITCH_TOKEN + self.num_pitches


def melody_tokens(note_states: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` vocabulary tokens of the top voice of note-states ``(B, T, N, 2)``: the highest
    note struck in a step (articulated, or playing where it did not play before) is its pitch
    token; else NOTE_OFF where the step is silent after sound, NO_EVENT otherwise (canonical
    spelling, as :func:`musicgym.music.tokens.canonical_tokens`)."""
    play = note_states[..., 0] > 0  # (B, T, N)
    before = F.pad(play[:, :-1], (0, 0, 1, 0))  # the step before; silence before the first
    struck = ((note_states[..., 1] > 0) & play) | (play & ~before)
    N = play.shape[-1]
    highest = N - 1 - struck.flip(-1).int().argmax(-1)  # (B, T), valid where any struck
    tokens = torch.full(play.shape[:2], NO_EVENT, dtype=torch.long, device=play.device)
    tokens[~play.any(-1) & before.any(-1)] = NOTE_OFF
    return torch.where(struck.any(-1), FIRST_PITCH_TOKEN + highest, tokens)


@dataclass
class NoteRNNState:
    """Recurrent state of ``B`` streams: ``hidden[i]`` the (h, c) of layer ``i``, each
    ``(B, H_i)``; ``output`` ``(B, H)`` the last layer's output, from which the next token is
    scored."""

    hidden: list[tuple[torch.Tensor, torch.Tensor]]
    output: torch.Tensor


class NoteRNN(nn.Module):
    """Jaques et al.'s Note RNN; implements :class:`musicgym.prior.MelodyPrior`."""

    model_tag: ClassVar[str] = MODEL_TAG
    config_class: ClassVar[type] = NoteRNNConfig

    def __init__(self, config: NoteRNNConfig) -> None:
        super().__init__()
        self.config = config
        self.lowest_pitch, self.num_pitches = config.lowest_pitch, config.num_pitches
        self.resolution, self.key_normalised = config.resolution, config.key_normalised
        self.lstms = nn.ModuleList()
        width = config.vocabulary
        for size in config.time_sizes:
            self.lstms.append(nn.LSTM(width, size, batch_first=True))
            width = size
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(width, config.vocabulary)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    @property
    def summary_shape(self) -> tuple[int, int]:
        return 1, self.config.time_sizes[-1]

    # ------------------------------------------------------------------------------ training
    def _inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """One-hot inputs ``(B, T, V)``: the token before each step, zeros before the first."""
        one_hot = F.one_hot(tokens.clamp(min=0), self.config.vocabulary).float()
        return F.pad(one_hot[:, :-1], (0, 0, 1, 0))

    def _run(
        self, inputs: torch.Tensor, hidden: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The LSTM stack over ``inputs`` ``(B, T, V)``: outputs ``(B, T, H)``, final states."""
        x, final = inputs, []
        for i, lstm in enumerate(self.lstms):
            start = None if hidden is None else (hidden[i][0][None], hidden[i][1][None])
            x, (h, c) = lstm(x, start)
            x = self.dropout(x)
            final.append((h[0], c[0]))
        return x, final

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, V)``; ``[:, t]`` scores ``tokens[:, t]`` given ``tokens[:, :t]``."""
        outputs, _ = self._run(self._inputs(tokens))
        return self.head(outputs)

    def log_likelihood(self, note_states: torch.Tensor, play_only: bool = False) -> torch.Tensor:
        """Log-likelihood ``(B, T)`` of each step's token of the top voice of ``note_states``
        ``(B, T, N, 2)`` (``play_only`` changes nothing: a token holds both bits)."""
        tokens = melody_tokens(note_states)
        log_probs = F.log_softmax(self(tokens), -1)
        return log_probs.gather(-1, tokens[..., None])[..., 0]

    # --------------------------------------------------------------------- MelodyPrior
    def _vocabulary_tokens(self, tokens: torch.Tensor, transpose: torch.Tensor) -> torch.Tensor:
        """The environment's tokens ``(B, ...)`` as this model's, pitches moved by ``transpose``
        ``(B,)``."""
        offset = LOWEST_MELODY_PITCH - self.lowest_pitch  # token 2 is MIDI 48, our 48 - lowest
        shift = transpose.reshape(-1, *[1] * (tokens.dim() - 1)) + offset
        return torch.where(tokens >= FIRST_PITCH_TOKEN, tokens + shift, tokens)

    def _step(
        self, hidden: list[tuple[torch.Tensor, torch.Tensor]] | None, inputs: torch.Tensor
    ) -> NoteRNNState:
        outputs, hidden = self._run(inputs[:, None], hidden)
        return NoteRNNState(hidden, outputs[:, 0])

    def initial_state(self, batch_size: int) -> NoteRNNState:
        """Before the first token (the network has read its all-zero first input)."""
        zeros = torch.zeros(batch_size, self.config.vocabulary, device=self.device)
        return self._step(None, zeros)

    def play(
        self,
        state: NoteRNNState,
        tokens: torch.Tensor,
        sounding: torch.Tensor,
        transpose: torch.Tensor,
    ) -> NoteRNNState:
        inputs = F.one_hot(self._vocabulary_tokens(tokens, transpose), self.config.vocabulary)
        return self._step(state.hidden, inputs.float())

    def summary(self, state: NoteRNNState) -> torch.Tensor:
        return state.output[:, None]  # (B, 1, H)

    def summary_log_probs(
        self, summary: torch.Tensor, sounding: torch.Tensor, transpose: torch.Tensor
    ) -> torch.Tensor:
        """``log p`` ``(B, 38)`` of the environment's tokens, renormalised over them (the model's
        other pitches, outside the 38 once transposed, drop out), from the summary."""
        log_probs = F.log_softmax(self.head(summary[:, 0]).double(), -1)  # (B, V)
        tokens = torch.arange(NUM_TOKENS, device=summary.device).expand(len(summary), -1)
        chosen = log_probs.gather(1, self._vocabulary_tokens(tokens, transpose))
        return chosen - torch.logsumexp(chosen, 1, keepdim=True)

    def action_log_probs(
        self, state: NoteRNNState, sounding: torch.Tensor, transpose: torch.Tensor
    ) -> torch.Tensor:
        return self.summary_log_probs(self.summary(state), sounding, transpose)

    def readout_parameters(self) -> list[nn.Parameter]:
        """The weights above the summary (what an agent may fine-tune)."""
        return list(self.head.parameters())

    def select_state(self, state: NoteRNNState, index: torch.Tensor) -> NoteRNNState:
        index = index.to(self.device)
        return NoteRNNState([(h[index], c[index]) for h, c in state.hidden], state.output[index])

    def assign_state(
        self, state: NoteRNNState, index: torch.Tensor, new: NoteRNNState
    ) -> NoteRNNState:
        index = index.to(self.device)
        return NoteRNNState(
            [
                (h.index_copy(0, index, nh), c.index_copy(0, index, nc))
                for (h, c), (nh, nc) in zip(state.hidden, new.hidden)
            ],
            state.output.index_copy(0, index, new.output),
        )

    # ------------------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, steps: int, seed: int = 0, temperature: float = 1.0) -> NoteState:
        """A melody of ``steps`` tokens drawn one by one, as a note-state on the model's axis."""
        was_training = self.training
        self.eval()
        generator = torch.Generator(device=self.device).manual_seed(seed)
        hidden, inputs, tokens = None, torch.zeros(1, self.config.vocabulary), []
        for _ in range(steps):
            state = self._step(hidden, inputs.to(self.device))
            probs = F.softmax(self.head(state.output) / temperature, -1)
            token = int(torch.multinomial(probs, 1, generator=generator))
            tokens.append(token)
            hidden = state.hidden
            inputs = F.one_hot(torch.tensor([token]), self.config.vocabulary).float()
        self.train(was_training)
        return self.note_state(tokens)

    def note_state(self, tokens: list[int]) -> NoteState:
        """Vocabulary ``tokens`` as a note-state on the model's pitch axis."""
        matrix = np.zeros((len(tokens), self.num_pitches, 2), np.uint8)
        sounding: int | None = None
        for t, token in enumerate(tokens):
            if token >= FIRST_PITCH_TOKEN:
                sounding = token - FIRST_PITCH_TOKEN
                matrix[t, sounding] = 1
            elif token == NOTE_OFF:
                sounding = None
            elif sounding is not None:
                matrix[t, sounding, 0] = 1
        return NoteState(matrix, self.lowest_pitch, self.resolution, "note-rnn sample")
