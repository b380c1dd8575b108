"""The RL Tuner on ``MusicComposition-v0``: its features of a melody state and its replay memory.

**Features.** Beside the prior's summary, the Q-network reads the step (one-hot) and the last
``context`` tokens (one-hot each, the primer's included, none before the start), decoded from the
environment's plain observation while acting and from the stored melodies while learning.
With ``rule_features``, it also reads what each action adds at once to the rules' statistics
(:func:`~musicgym.music.melody.action_outcomes`: resolve or double the pending leap, repeat a
note excessively, start on the tonic, leave the key, make a motif or repeat one), computed from
the whole composition.

**The replay memory** keeps melodies row by row (tokens, rewards, and every state's cached summary
and ``log p``, read from the ``"prior"`` observation); a transition is a (row, step) pair and
batches are drawn uniformly from all of them. With ``rule_features`` it also keeps each state's
rule outcomes, judged once when the step before it is stored. Checkpoints keep the tokens,
rewards and ``log p``; the summaries are recomputed from the tokens on ``--resume`` (the frozen
prior gives the same numbers: a digest saved with the checkpoint checks it bit for bit), and
the rule outcomes judged again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from musicgym.agents.rl_tuner.config import RLTunerConfig
from musicgym.agents.rl_tuner.parts import Observations, Transitions, tensor
from musicgym.envs.melody import STEPS_PER_BAR
from musicgym.envs.stepper import melody_summaries, sounding_before
from musicgym.errors import EnvArgumentError
from musicgym.music.keys import Key
from musicgym.music.melody import RULE_OUTCOMES, action_outcomes
from musicgym.music.tokens import NUM_TOKENS
from musicgym.prior import MelodyPrior


@dataclass
class MelodyStates:
    """``M`` melody states as the Q-network reads them (tensors on one device)."""

    summary: torch.Tensor
    """``(M, K, H)``: the frozen prior's summary of the melody so far."""
    log_probs: torch.Tensor
    """``(M, 38)``: the frozen prior's ``log p(a | s)``."""
    context: torch.Tensor
    """``(M, C)``: the last ``C`` tokens played (the primer's included), oldest first; -1 before
    the start."""
    step: torch.Tensor
    """``(M,)``: tokens composed so far."""
    sounding: torch.Tensor | None = None
    """``(M,)``: the sounding note's token, -1 for none (only for a trainable readout)."""
    outcomes: torch.Tensor | None = None
    """``(M, 38, R)``: each action's :func:`~musicgym.music.melody.action_outcomes` (only with
    ``rule_features``)."""
    mask = None
    """Every token is valid."""


OUTCOME_BITS = NUM_TOKENS * len(RULE_OUTCOMES)
"""Bits of a state's :func:`rule_outcomes` (the replay keeps them packed)."""
OUTCOME_BYTES = (OUTCOME_BITS + 7) // 8


def rule_outcomes(compositions: list[np.ndarray], key: Key, device: torch.device) -> torch.Tensor:
    """``(M, 38, R)``: :func:`~musicgym.music.melody.action_outcomes` of each composition."""
    outcomes = [action_outcomes(composition.tolist(), key) for composition in compositions]
    return torch.tensor(outcomes, dtype=torch.float32, device=device)


def recent_tokens(
    tokens: np.ndarray, primers: np.ndarray, steps: np.ndarray, context: int
) -> np.ndarray:
    """``(M, K)``: of each melody ``tokens[m]`` ``(L,)`` played after the primer token
    ``primers[m]`` (-1 for none), the ``K = context`` tokens before ``steps[m]``, oldest first,
    the primer's included, -1 before the start."""
    M, L = tokens.shape
    padded = np.full((M, context + 1 + L), -1, tokens.dtype)  # K x -1, the primer, the tokens
    padded[:, context] = primers
    padded[:, context + 1 :] = tokens
    return padded[np.arange(M)[:, None], steps[:, None] + np.arange(1, context + 1)]


class MelodyPart:
    """The RL Tuner's part of ``MusicComposition-v0`` (see the module docstring)."""

    model_tag = "rl-tuner"
    num_actions = NUM_TOKENS
    resumable = True
    steps_together = True  # (every melody is `length` tokens)

    def __init__(self, prior: MelodyPrior, config: RLTunerConfig) -> None:
        if config.primer not in ("", "random_note"):
            raise EnvArgumentError(
                f"primer: the RL Tuner takes '' or 'random_note', not {config.primer!r}"
            )
        if config.buffer_size < config.length:
            raise EnvArgumentError("buffer_size must hold at least one melody")
        if config.ending_share:
            raise EnvArgumentError("ending_share: only on ChoraleComposition-v0")
        self.prior, self.config = prior, config
        self.length, self.context = config.length, config.context
        self.feature_size = config.length + config.context * NUM_TOKENS
        self.rule_outcomes = len(RULE_OUTCOMES) if config.rule_features else 0

    def extra_features(self, states: MelodyStates) -> torch.Tensor:
        """The step (one-hot) and the recent tokens (one-hot each, -1 all zeros), flattened:
        the ones set in one scatter, a token -1 into a spare last column, then dropped."""
        M, size = len(states.step), self.feature_size
        offsets = torch.arange(self.length, size, NUM_TOKENS, device=states.context.device)
        recent = torch.where(states.context >= 0, states.context + offsets, size)  # (M, C)
        step = states.step.clamp(max=self.length - 1)[:, None]
        features = torch.zeros(M, size + 1, device=recent.device)
        return features.scatter_(1, torch.cat([step, recent], 1), 1.0)[:, :size]

    def observed_states(self, observations: Observations, device: torch.device) -> MelodyStates:
        """The states the environment shows: its plain observation decoded (the recent tokens,
        most recent first, and the progress ``t / length``)."""
        plain = observations["observation"]
        M, history = len(plain), (plain.shape[1] - STEPS_PER_BAR - 1) // NUM_TOKENS
        recent = plain[:, : history * NUM_TOKENS].reshape(M, history, NUM_TOKENS)
        window = np.where(recent.any(2), recent.argmax(2), -1)[:, ::-1]  # oldest first
        window = np.concatenate([np.full((M, self.context), -1), window], 1)
        steps = np.rint(plain[:, -1].astype(np.float64) * self.length).astype(np.int64)
        sounding = outcomes = None
        if self.config.train_readout:
            sounding = sounding_before(torch.from_numpy(window.copy()))[:, -1].to(device)
        if self.rule_outcomes:  # the composition: the last `step` tokens (history >= length)
            played = [row[len(row) - step :] for row, step in zip(window, steps)]
            outcomes = rule_outcomes(played, Key.parse(self.config.key), device)
        return MelodyStates(
            summary=tensor(observations["prior_summary"], device),
            log_probs=tensor(observations["prior_log_probs"], device),
            context=tensor(window[:, -self.context :].copy(), device),
            step=tensor(steps, device),
            sounding=sounding,
            outcomes=outcomes,
        )

    def make_replay(self, capacity: int, num_envs: int) -> MelodyReplay:
        return MelodyReplay(
            capacity,
            self.length,
            self.prior.summary_shape,
            self.context,
            num_envs,
            gamma=self.config.gamma,
            key=self.config.key,
            primed=self.config.primer == "random_note",
            readout=self.config.train_readout,
            rule_features=bool(self.rule_outcomes),
        )

    def replay_bytes(self, capacity: int) -> int:
        rows, (K, H) = max(1, capacity // self.length), self.prior.summary_shape
        judged = OUTCOME_BYTES if self.rule_outcomes else 0
        return rows * self.length * (K * H * 2 + NUM_TOKENS * 4 + 5 + judged) + rows * 9


class MelodyReplay:
    """Replay memory of melodies and their cached states; a transition is (row, step).

    ``tokens[i, t]`` is the token played at step ``t`` of row ``i`` (-1 not yet), ``rewards[i,
    t]`` its reward, ``filled[i]`` how many steps the row holds, ``primers[i]`` its random-note
    primer (-1 none). ``summaries[i, t]`` (float16) and ``log_probs[i, t]`` are the frozen prior's
    summary and ``log p(·|s_t)`` in the state before step ``t``; the state after a stored step is
    always stored too (or the melody ended there). Rows are reused oldest first; ``slots[j]`` is
    the row the environments' melody ``j`` is written into.
    """

    def __init__(
        self,
        capacity: int,
        length: int,
        summary_shape: tuple[int, int],
        context: int,
        num_envs: int,
        gamma: float,
        key: str,
        primed: bool = False,
        readout: bool = False,
        rule_features: bool = False,
    ) -> None:
        self.rows, self.length, self.context = max(1, capacity // length), length, context
        self.gamma, self.key, self.primed, self.readout = gamma, key, primed, readout
        self.rule_features = rule_features
        self.tokens = np.full((self.rows, length), -1, np.int8)
        self.rewards = np.zeros((self.rows, length), np.float32)
        self.filled = np.zeros(self.rows, np.int64)
        self.primers = np.full(self.rows, -1, np.int8)
        self.summaries = np.zeros((self.rows, length, *summary_shape), np.float16)
        self.log_probs = np.zeros((self.rows, length, NUM_TOKENS), np.float32)
        judged = OUTCOME_BYTES if rule_features else 0
        self.outcomes = np.zeros((self.rows, length, judged), np.uint8)
        """With ``rule_features``, each state's :func:`rule_outcomes` (bit-packed), judged once
        when the step before it is stored rather than at every draw."""
        self.next_row = 0
        self.slots = np.zeros(num_envs, np.int64)
        self._row_cdf: np.ndarray | None = None
        """The rows' cumulative draw probabilities, kept until ``filled`` changes."""

    def __len__(self) -> int:
        """Transitions held."""
        return int(self.filled.sum())

    def _start(self, primer: int = -1) -> int:
        """A row for a new melody (the oldest one is overwritten)."""
        row = self.next_row
        self.next_row = (row + 1) % self.rows
        self._row_cdf = None
        self.tokens[row], self.filled[row], self.primers[row] = -1, 0, primer
        self._judge(np.array([row]), np.zeros(1, np.int64))
        return row

    def _judge(self, rows: np.ndarray, steps: np.ndarray) -> None:
        """Keep the rule outcomes of the states before ``steps`` of ``rows`` (with
        ``rule_features``; none after a melody's last step)."""
        inside = steps < self.length
        if not self.rule_features or not inside.any():
            return
        rows, steps = rows[inside], steps[inside]
        played = [self.tokens[row, :step] for row, step in zip(rows, steps)]
        judged = rule_outcomes(played, Key.parse(self.key), torch.device("cpu")).bool()
        self.outcomes[rows, steps] = np.packbits(judged.flatten(1).numpy(), 1)

    def _primer(self, infos: dict[str, Any], slot: int) -> int:
        """The random-note primer token of ``slot``'s new melody, -1 for none."""
        return int(infos["primer"][slot][0]) if self.primed else -1

    def _write_states(self, rows: np.ndarray, observations: Observations, which: Any) -> None:
        """Cache the states of ``observations[which]`` as those before step ``filled`` of
        ``rows``."""
        steps = self.filled[rows]
        self.summaries[rows, steps] = observations["prior_summary"][which].astype(np.float16)
        self.log_probs[rows, steps] = observations["prior_log_probs"][which]

    def begin(self, observations: Observations, infos: dict[str, Any]) -> None:
        self.slots = np.array([self._start(self._primer(infos, i)) for i in range(len(self.slots))])
        self._write_states(self.slots, observations, slice(None))

    def store(
        self,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
        stepped: np.ndarray,
        next_observations: Observations,
        infos: dict[str, Any],
    ) -> None:
        rows = self.slots[stepped]
        steps = self.filled[rows]
        self.tokens[rows, steps] = actions[stepped]
        self.rewards[rows, steps] = rewards[stepped]
        self.filled[rows] += 1
        self._judge(rows, self.filled[rows])
        self._row_cdf = None
        for i in np.flatnonzero(~stepped):
            self.slots[i] = self._start(self._primer(infos, i))
        going_on = ~terminations  # the next state of a stepped slot, or a new melody's first
        self._write_states(self.slots[going_on], next_observations, going_on)

    def states(self, rows: np.ndarray, steps: np.ndarray, device: torch.device) -> MelodyStates:
        """The cached states before step ``steps[j]`` of ``rows[j]`` (``steps`` may be
        ``length``: a terminal state, read as the last one; its value is never used)."""
        return self._states(self._state_fields(rows, steps, device), slice(None), device)

    def _state_fields(
        self, rows: np.ndarray, steps: np.ndarray, device: torch.device
    ) -> dict[str, Any]:
        """:meth:`states`' fields: numpy arrays, or tensors on ``device`` where torch made them."""
        steps = np.minimum(steps, self.length - 1)
        tokens, primers = self.tokens[rows], self.primers[rows]
        sounding = outcomes = None
        if self.readout:
            played = np.concatenate([primers[:, None], tokens], 1).astype(np.int64)
            sounding = sounding_before(torch.from_numpy(played))[np.arange(len(rows)), steps + 1]
            sounding = sounding.to(device)
        if self.rule_features:
            bits = np.unpackbits(self.outcomes[rows, steps], 1, count=OUTCOME_BITS)
            outcomes = tensor(bits.reshape(len(rows), NUM_TOKENS, -1).astype(np.float32), device)
        return {
            "summary": self.summaries[rows, steps],
            "log_probs": self.log_probs[rows, steps],
            "context": recent_tokens(tokens, primers, steps, self.context).astype(np.int64),
            "step": steps,
            "sounding": sounding,
            "outcomes": outcomes,
        }

    @staticmethod
    def _states(fields: dict[str, Any], part: slice, device: torch.device) -> MelodyStates:
        """The states of rows ``part`` of :meth:`_state_fields`."""

        def rows(values: Any) -> torch.Tensor | None:
            if values is None:
                return None
            return values[part] if torch.is_tensor(values) else tensor(values[part], device)

        return MelodyStates(**{name: rows(values) for name, values in fields.items()})

    def sample(
        self, batch_size: int, rng: np.random.Generator, device: torch.device
    ) -> Transitions:
        """``batch_size`` transitions drawn independently and uniformly: a row with probability
        proportional to the steps it holds, then one of them (the draws of ``rng.choice(rows,
        batch_size, p=filled / filled.sum())``, its cumulative probabilities kept between
        batches of the same memory). Both sides' states are gathered in one pass."""
        if self._row_cdf is None:
            self._row_cdf = (self.filled / self.filled.sum()).cumsum()
            self._row_cdf /= self._row_cdf[-1]
        rows = self._row_cdf.searchsorted(rng.random(batch_size), side="right")
        steps = (rng.random(batch_size) * self.filled[rows]).astype(np.int64)
        both = np.concatenate([rows, rows]), np.concatenate([steps, steps + 1])
        fields = self._state_fields(*both, device)
        return Transitions(
            states=self._states(fields, slice(batch_size), device),
            actions=tensor(self.tokens[rows, steps].astype(np.int64), device),
            rewards=tensor(self.rewards[rows, steps], device),
            dones=tensor(steps == self.length - 1, device),
            next_states=self._states(fields, slice(batch_size, None), device),
            gamma=self.gamma,
        )

    def nbytes(self) -> int:
        return self.tokens.nbytes + self.rewards.nbytes + self.log_probs.nbytes

    def _rows_in_use(self) -> int:
        """Rows ``0..n-1`` hold every melody so far (all rows once the memory went round); the
        others are as new."""
        last_filled = int(np.flatnonzero(self.filled).max(initial=-1))
        return max(self.next_row, last_filled + 1, int(self.slots.max(initial=-1)) + 1)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the summaries, which :meth:`load_state_dict` recomputes; the rows in
        use only (a short run's checkpoint holds its own melodies, not the whole capacity)."""
        used = self._rows_in_use()
        return {
            "tokens": torch.from_numpy(self.tokens[:used].copy()),
            "rewards": torch.from_numpy(self.rewards[:used].copy()),
            "filled": torch.from_numpy(self.filled[:used].copy()),
            "primers": torch.from_numpy(self.primers[:used].copy()),
            "log_probs": torch.from_numpy(self.log_probs[:used].copy()),
            "next_row": self.next_row,
            "slots": self.slots.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any], prior: Any, device: torch.device) -> None:
        used = len(state["filled"])  # the rows after them are as new
        self.tokens[:used] = state["tokens"].numpy()
        self.rewards[:used] = state["rewards"].numpy()
        self.filled[:used] = state["filled"].numpy()
        self.primers[:used] = state["primers"].numpy()
        self.log_probs[:used] = state["log_probs"].numpy()
        self._row_cdf = None
        self.next_row = int(state["next_row"])
        if "slots" in state:
            self.slots = np.array(state["slots"], np.int64)
        for row in range(self._rows_in_use()):  # the outcomes, judged again
            steps = np.arange(min(self.filled[row], self.length - 1) + 1)
            self._judge(np.full(len(steps), row), steps)
        self._recompute_summaries(prior, device)

    def _recompute_summaries(self, prior: Any, device: torch.device, chunk: int = 256) -> None:
        """Play every stored melody (after its primer) through the frozen prior again, those
        just started included, and cache its summaries."""
        for primed in (False, True):
            rows = np.flatnonzero((self.primers >= 0) == primed)
            for begin in range(0, len(rows), chunk):
                part = rows[begin : begin + chunk]
                tokens = torch.from_numpy(self.tokens[part].astype(np.int64))
                if primed:
                    primer = torch.from_numpy(self.primers[part].astype(np.int64))[:, None]
                    tokens = torch.cat([primer, tokens], 1)
                summaries = melody_summaries(prior, tokens.to(device), self.key, device)
                summaries = summaries[:, int(primed) : int(primed) + self.length]
                self.summaries[part] = summaries.to("cpu", torch.float16).numpy()

    def digest(self) -> str:
        """A hash of the cached summaries that can be read: every step up to the next state of
        each row that holds a melody (and the rows being composed)."""
        digest = hashlib.blake2b(digest_size=16)
        in_use = np.union1d(np.flatnonzero(self.filled > 0), self.slots)
        for row in in_use:
            digest.update(self.summaries[row, : min(self.filled[row], self.length - 1) + 1])
        return digest.hexdigest()
