"""One task per environment: what differs between composing melodies and composing chorales.

A :class:`Task` is to an environment what Gymnasium's spec is to an env id: the one object that
knows the environment's piece type and its name, its defaults (:class:`~musicgym.config.EnvConfig`),
its statistics and how the benchmarks read them, its reference columns, how one piece is written
to MIDI, WAV and a piano roll, and how its reference agents (prior samples, random pieces)
compose. Agents, benchmarks, the demo and the gallery take the task and never branch on an env
id::

    from musicgym.tasks import task_of

    task = task_of("ChoraleComposition-v0")     # the task of an EnvConfig: task_of(config.env)
    pieces = task.sample_random(4, seed=0)      # four NoteStates
    task.write_midi(pieces[0], "chorale.mid")
    print(task.statistics(None, pieces))

:data:`TASKS` holds one task per env id; a new environment is one :class:`Task` subclass and one
line there.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
import torch

from musicgym.config import CHORALE_DEFAULTS, DEFAULTS, EnvConfig
from musicgym.errors import EnvArgumentError, MusicgymError
from musicgym.metrics import HISTOGRAMS, PUBLISHED, STATISTICS
from musicgym.metrics.chorale import DISTINCT_PIECES
from musicgym.metrics.chorale import STATISTICS as CHORALE_STATISTICS
from musicgym.music.notestate import SIXTEENTH_NOTES, NoteState

Piece = TypeVar("Piece")
"""A task's piece: melody tokens (``list[int]``) or a chorale (:class:`NoteState`)."""
Melody = list[int]


REPORTED_SPLIT = "test"
"""The split of the data that results are reported on."""
CHOOSING_SPLIT = "valid"
"""The split of the data that settings are chosen on, so that the reported split stays unseen."""


class Dataset(Protocol):
    """What :meth:`Task.reference_pieces` reads of a dataset (:class:`musicgym.priors.data.Dataset`,
    which the core does not import)."""

    resolution: int

    def split(self, name: str) -> list[NoteState]: ...

    def melodies(self, split: str) -> list[list[int]]: ...


class Task(ABC, Generic[Piece]):
    """What one environment's pieces are and how they are measured, written and sampled."""

    env_id: ClassVar[str]
    piece_name: ClassVar[str]
    """One piece, in words: ``"melody"`` or ``"chorale"`` (its MIDI files are ``NAME_I.mid``)."""
    plural: ClassVar[str]
    data_column: ClassVar[str]
    """The name of the column of the held-out data the benchmarks measure beside the agents."""
    dataset: ClassVar[str | None]
    """The dataset of the data column where the prior's checkpoint names none (``None``: no data
    column then)."""
    published: ClassVar[Mapping[str, Mapping[str, float]]] = {}
    """Published columns of the statistics, by column name (a paper's table)."""
    published_source: ClassVar[str] = ""
    """Where the published columns come from, in words."""
    measures: ClassVar[Mapping[str, str]]
    """Every measure the benchmarks report, in table order: name -> label."""
    labels: ClassVar[Mapping[str, str]]
    """The label of every statistic (:meth:`statistics`) and measure, in table order."""
    better: ClassVar[Mapping[str, str]]
    """How each measure improves: ``"lower"``, ``"zero"`` (nearer 0), ``"higher"`` or ``"data"``
    (nearer the data column); a measure not named is better higher, or unjudged."""
    up_to_the_data: ClassVar[tuple[str, ...]] = ()
    """Measures that improve as they rise only up to the data column's value."""
    unjudged: ClassVar[tuple[str, ...]] = ("trained_steps",)
    """Measures that no direction makes better."""
    legend_note: ClassVar[str] = ""
    """What a table's legend adds after the directions."""
    headline: ClassVar[tuple[str, ...]]
    """The measures a one-line summary of a column prints."""
    rolls_per_column: ClassVar[int]
    """Pieces of each column on a benchmark's sheet of piano rolls."""
    voices: ClassVar[bool]
    """Whether piano rolls colour the voices."""
    frontier: ClassVar[bool] = False
    """Whether the benchmarks draw the data's own frontier of notes in motifs against the KL to
    the data (``musicgym.benchmarks.pareto``; melodies)."""

    @property
    def defaults(self) -> EnvConfig:
        """Every argument of the environment at its default."""
        return EnvConfig(env=self.env_id)

    @property
    def pieces_file(self) -> str:
        """The JSON file of composed pieces that ``agent compose`` writes (``melodies.json``)."""
        return f"{self.plural}.json"

    # ---------------------------------------------------------------------------- statistics
    @abstractmethod
    def statistics(
        self,
        prior: Any,
        pieces: Sequence[Piece],
        key: str | None = None,
        reference: dict[str, np.ndarray] | None = None,
    ) -> dict[str, float]:
        """The environment's statistics of ``pieces``, the measures of their character (the set's
        :meth:`set_measures`, and those relative to the data given its summed histograms
        ``reference``, :meth:`reference_histograms`) and, with a loaded ``prior``, their mean
        log-likelihood under it (``key``: the key they are judged in; ``None``: the task's
        default, C major for melodies, the key each chorale is in)."""

    @abstractmethod
    def contributions(
        self, prior: Any, pieces: Sequence[Piece], config: EnvConfig
    ) -> dict[str, np.ndarray]:
        """What each piece adds to every measure that sums over pieces, ``(M, ...)`` per name
        (a ratio's numerator and denominator, or a histogram); :meth:`measures_from_sums` reads
        them summed over any pieces, which a bootstrap resamples."""

    @abstractmethod
    def measures_from_sums(
        self, sums: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Every measure that sums over pieces, from :meth:`contributions` summed (``(..., K)``
        per name, leading axes those of resamples); ``reference``: the data column's
        :meth:`reference_histograms`, for the measures relative to the data."""

    @abstractmethod
    def set_measures(self, pieces: Sequence[Piece]) -> dict[str, float]:
        """The measures of the set as a whole (its distinct shares): no resample has them."""

    def reference_histograms(self, pieces: Sequence[Piece]) -> dict[str, np.ndarray] | None:
        """Summed histograms of the data that the measures relative to the data compare with
        (``None``: the task has no such measures)."""
        return None

    # ----------------------------------------------------------------------- the data column
    @abstractmethod
    def reference_pieces(
        self, dataset: Dataset, config: EnvConfig, split: str = REPORTED_SPLIT
    ) -> list[Piece]:
        """The data column's pieces, cut from ``split`` of ``dataset`` (the test split, which
        results report; the validation split, which settings are chosen on) as ``config``'s
        environment composes them.

        Raises:
            MusicgymError: the dataset cannot give such pieces.
        """

    def reference_column(self, pieces: Sequence[Piece], count: int) -> list[Piece]:
        """The pieces of the data column measured like an agent: all of them, by default."""
        return list(pieces)

    # ------------------------------------------------------------------------------ writers
    @abstractmethod
    def note_state(self, piece: Piece) -> NoteState:
        """The piece as a note-state."""

    def write_midi(self, piece: Piece, path: str | os.PathLike) -> None:
        """Write one piece as a MIDI file."""
        from musicgym.music.midi import write_midi

        write_midi(self.note_state(piece), path)

    def write_wavs(self, pieces: Sequence[Piece], paths: Sequence[Path], **synthesis: Any) -> None:
        """A WAV file beside each of the MIDI files ``paths`` of ``pieces`` (none for a silent
        piece); ``synthesis``: :func:`musicgym.music.audio.write_wavs_beside`'s options."""
        from musicgym.music.audio import write_wavs_beside

        sounding = [p for piece, p in zip(pieces, paths) if self.note_state(piece).matrix.any()]
        write_wavs_beside(sounding, **synthesis)

    def write_piano_roll(self, piece: Piece, path: str | os.PathLike, title: str = "") -> None:
        """Write one piece's piano roll as a PNG file."""
        from musicgym.music.pianoroll import save_piano_roll

        save_piano_roll(self.note_state(piece), path, title, voices=self.voices)

    def write_piano_roll_sheet(
        self, pieces: Sequence[Piece], path: str | os.PathLike, titles: Sequence[str], columns: int
    ) -> None:
        """Write the piano rolls of ``pieces`` on one sheet."""
        from musicgym.music.pianoroll import save_piano_roll_sheet

        rolls = [self.note_state(piece) for piece in pieces]
        save_piano_roll_sheet(rolls, path, titles, columns=columns, voices=self.voices)

    @abstractmethod
    def to_json(self, piece: Piece) -> Any:
        """The piece as JSON values; :meth:`from_json` reads them back."""

    @abstractmethod
    def from_json(self, value: Any) -> Piece:
        """A piece of :meth:`to_json`."""

    def write_json(self, pieces: Sequence[Piece], path: str | os.PathLike) -> None:
        """Write ``pieces`` as a JSON list, atomically."""
        from musicgym.fileio import write_text

        write_text(path, json.dumps([self.to_json(p) for p in pieces]) + "\n")

    # -------------------------------------------------------------------- agents in the env
    def masking_kwargs(self, masked: bool) -> dict[str, Any]:
        """Environment arguments for an agent that takes the action masks (``masked``) or does
        not: none where every action is valid."""
        return {}

    @abstractmethod
    def playback_kwargs(self, config: EnvConfig, masked: bool) -> dict[str, Any]:
        """``gym.make_vec`` arguments of ``config``'s environment in which a trained policy
        composes: no rules (its observation does not depend on them)."""

    def log_compositions(
        self, writer: Any, pieces: Sequence[Piece], step: int, **kwargs: Any
    ) -> None:
        """Log the first pieces to TensorBoard as audio and piano rolls (``kwargs``:
        :func:`musicgym.music.audio.log_compositions`'s); nothing by default."""

    # ------------------------------------------------------------------- reference agents
    @abstractmethod
    def sample_prior(
        self,
        prior: Any,
        n: int,
        seed: int = 0,
        greedy: bool = False,
        config: EnvConfig | None = None,
    ) -> list[Piece]:
        """``n`` pieces sampled from a loaded ``prior`` as ``config``'s environment asks for
        them (default: the task's defaults), seeded; ``greedy``: its most likely choice each
        time."""

    @abstractmethod
    def sample_random(self, n: int, seed: int = 0, config: EnvConfig | None = None) -> list[Piece]:
        """``n`` pieces of uniformly random (valid) actions, seeded."""


class MelodyTask(Task[Melody]):
    """``MusicComposition-v0``: melodies of 16th-note tokens (:mod:`musicgym.music.tokens`),
    judged by the spec's statistics (:func:`musicgym.metrics.evaluate_melodies`) beside Jaques et
    al.'s published table, and the test split of the prior's data in windows of the melodies'
    length."""

    env_id = DEFAULTS.env
    piece_name, plural, data_column, dataset = "melody", "melodies", "test melodies", None
    frontier = True
    headline = ("notes_not_in_key", "notes_excessively_repeated", "log_p", "theory_reward")
    rolls_per_column, voices = 4, False
    published: ClassVar[Mapping[str, Mapping[str, float]]] = PUBLISHED
    published_source = "Jaques et al. 2017 and the Bi-axial + DQN paper"
    measures: ClassVar[Mapping[str, str]] = {
        **STATISTICS,
        "trained_steps": "environment steps trained",
        "log_p": "mean log p(a|s) under the prior",
        "theory_reward": "mean theory reward r_MT per step",
        "distinct_melodies": "distinct melodies (%)",
        "distinct_4grams": "distinct token 4-grams (%)",
        "pitch_class_entropy": "pitch-class entropy (bits)",
        **{
            f"kl_{name}": f"KL to the test melodies: {name.replace('_', ' ')} (nats)"
            for name in HISTOGRAMS
        },
    }
    labels = measures
    better: ClassVar[Mapping[str, str]] = {
        "notes_excessively_repeated": "lower",
        "autocorrelation_lag1": "zero",
        "autocorrelation_lag2": "zero",
        "autocorrelation_lag3": "zero",
        "notes_not_in_key": "lower",
        **{f"kl_{name}": "lower" for name in HISTOGRAMS},
    }
    up_to_the_data = ("distinct_melodies", "distinct_4grams", "pitch_class_entropy")
    bar: ClassVar[int] = 4 * SIXTEENTH_NOTES
    """Tokens in a 4/4 bar: the test melodies' windows start on bar lines."""

    def statistics(
        self,
        prior: Any,
        pieces: Sequence[Melody],
        key: str | None = None,
        reference: dict[str, np.ndarray] | None = None,
    ) -> dict[str, float]:
        """:func:`musicgym.metrics.evaluate_melodies`, the character (distinct melodies and
        4-grams, ``pitch_class_entropy`` and, given ``reference``, each ``kl_*`` to the data)
        and, with a prior, ``log_p``, the mean ``log p(a|s)`` of the tokens
        (:func:`musicgym.envs.stepper.melody_statistics`)."""
        from musicgym.envs.stepper import melody_statistics
        from musicgym.metrics import evaluate_melodies, kl_divergence

        key = key or DEFAULTS.key
        if prior is None:
            statistics = evaluate_melodies(pieces, key)
        else:
            statistics = melody_statistics(prior, pieces, key)
        statistics.update(self.set_measures(pieces))
        sums = self.reference_histograms(pieces)
        statistics["pitch_class_entropy"] = float(entropy_bits(sums["pitch_classes"]))
        for name in HISTOGRAMS if reference is not None else ():
            statistics[f"kl_{name}"] = float(kl_divergence(sums[name], reference[name]))
        return statistics

    def contributions(
        self, prior: Any, pieces: Sequence[Melody], config: EnvConfig
    ) -> dict[str, np.ndarray]:
        """The spec's statistics (:func:`musicgym.metrics.statistic_contributions`); ``log_p``
        and ``theory_reward``, the melody's sum over its tokens and its number of tokens; and the
        counts of each of :data:`musicgym.metrics.HISTOGRAMS`."""
        from musicgym.envs.stepper import melody_log_probs
        from musicgym.metrics import statistic_contributions

        contributions = statistic_contributions(pieces, config.key)
        tokens = np.full(len(pieces), float(len(pieces[0])))
        log_p = melody_log_probs(prior, pieces, config.key).double().sum(1).numpy()  # (M,)
        contributions["log_p"] = np.stack([log_p, tokens], 1)
        rewards = theory_rewards(pieces, config).sum(1)
        contributions["theory_reward"] = np.stack([rewards, tokens], 1)
        for name, histogram in HISTOGRAMS.items():
            contributions[name] = np.stack([histogram(m) for m in pieces]).astype(float)
        return contributions

    def measures_from_sums(
        self, sums: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """The spec's statistics, ``log_p``, ``theory_reward``, ``pitch_class_entropy`` and,
        given the test melodies' summed histograms ``reference``, the ``kl_*`` rows."""
        from musicgym.metrics import STATISTIC_SCALES, kl_divergence, ratio_of_sums

        values = {name: ratio_of_sums(sums[name], STATISTIC_SCALES[name]) for name in STATISTICS}
        values["log_p"] = ratio_of_sums(sums["log_p"])
        values["theory_reward"] = ratio_of_sums(sums["theory_reward"])
        values["pitch_class_entropy"] = entropy_bits(sums["pitch_classes"])
        if reference is not None:
            for name in HISTOGRAMS:
                values[f"kl_{name}"] = kl_divergence(sums[name], reference[name])
        return values

    def set_measures(self, pieces: Sequence[Melody]) -> dict[str, float]:
        from musicgym.metrics import distinct_ngrams

        return {
            "distinct_melodies": 100 * len({tuple(m) for m in pieces}) / len(pieces),
            "distinct_4grams": distinct_ngrams(pieces, 4),
        }

    def reference_histograms(self, pieces: Sequence[Melody]) -> dict[str, np.ndarray]:
        return {
            name: np.sum([histogram(m) for m in pieces], 0)
            for name, histogram in HISTOGRAMS.items()
        }

    def reference_pieces(
        self, dataset: Dataset, config: EnvConfig, split: str = REPORTED_SPLIT
    ) -> list[Melody]:
        """Each piece's top voice as melody tokens cut into non-overlapping windows of
        ``config.length`` tokens that start on bar lines (the incomplete last window left out),
        each in canonical spelling."""
        from musicgym.music.tokens import canonical_tokens

        if dataset.resolution != SIXTEENTH_NOTES:
            raise MusicgymError("not in 16th notes")
        length = config.length
        stride = -(-length // self.bar) * self.bar  # the first bar line at or after the end
        return [
            canonical_tokens(melody[start : start + length])
            for melody in dataset.melodies(split)
            for start in range(0, len(melody) - length + 1, stride)
        ]

    def reference_column(self, pieces: Sequence[Melody], count: int) -> list[Melody]:
        """``count`` of the windows, a seeded sample without replacement (all, if fewer)."""
        chosen = np.random.default_rng(0).choice(len(pieces), min(count, len(pieces)), False)
        return [pieces[i] for i in sorted(chosen)]

    def note_state(self, piece: Melody) -> NoteState:
        from musicgym.music.tokens import tokens_to_note_state

        return tokens_to_note_state(piece)

    def to_json(self, piece: Melody) -> list[int]:
        return [int(token) for token in piece]

    def from_json(self, value: Any) -> Melody:
        return [int(token) for token in value]

    def playback_kwargs(self, config: EnvConfig, masked: bool) -> dict[str, Any]:
        """The melody's length and key; no prior (the observation does not depend on it)."""
        return {"length": config.length, "key": config.key, "prior": None, "rules": None}

    def log_compositions(
        self, writer: Any, pieces: Sequence[Melody], step: int, **kwargs: Any
    ) -> None:
        from musicgym.music.audio import log_compositions

        if pieces:
            log_compositions(writer, pieces, step, **kwargs)

    @torch.no_grad()
    def sample_prior(
        self,
        prior: Any,
        n: int,
        seed: int = 0,
        greedy: bool = False,
        config: EnvConfig | None = None,
    ) -> list[Melody]:
        """Token by token from the same ``log p(a | s)`` the environment rewards in the key."""
        from musicgym.envs.stepper import TokenStepper

        config = config or DEFAULTS
        generator = torch.Generator().manual_seed(seed)
        stepper = TokenStepper(prior, n, config.key)
        melodies = []
        for _ in range(config.length):
            log_probs = stepper.action_log_probs().float()
            if greedy:
                tokens = log_probs.argmax(1)
            else:
                tokens = torch.multinomial(log_probs.exp(), 1, generator=generator)[:, 0]
            melodies.append(tokens)
            stepper.play(tokens)
        return torch.stack(melodies, 1).tolist()

    def sample_random(self, n: int, seed: int = 0, config: EnvConfig | None = None) -> list[Melody]:
        """Uniformly random tokens."""
        from musicgym.music.tokens import NUM_TOKENS

        length = (config or DEFAULTS).length
        return np.random.default_rng(seed).integers(0, NUM_TOKENS, (n, length)).tolist()


class ChoraleTask(Task[NoteState]):
    """``ChoraleComposition-v0``: four-part chorales as note-states, judged by the statistics of
    four-part writing (:func:`musicgym.metrics.evaluate_chorales`, each piece in the key
    :func:`musicgym.music.harmony.find_key` finds) beside Bach: the last bars of every chorale of
    the test split of the prior's data."""

    env_id = CHORALE_DEFAULTS.env
    piece_name, plural, data_column, dataset = "chorale", "chorales", "Bach", "bach-chorales"
    headline = ("parallel_fifths", "four_voices", "log_p")
    rolls_per_column, voices = 1, True
    measures: ClassVar[Mapping[str, str]] = {
        **CHORALE_STATISTICS,
        DISTINCT_PIECES[0]: DISTINCT_PIECES[1],
        "log_p": "mean log p per frame under the prior",
        "trained_steps": "decisions trained",
    }
    labels: ClassVar[Mapping[str, str]] = {**measures, "log_p_per_frame": measures["log_p"]}
    better: ClassVar[Mapping[str, str]] = {
        name: "data" for name in (*CHORALE_STATISTICS, DISTINCT_PIECES[0], "log_p")
    }
    legend_note = (
        "The rule-breaking rates (parallels, hidden perfects, crossings, spacing, range, notes "
        "not in key: lower is what the rules ask) are compared with Bach's measured rate, not "
        "with zero."
    )

    def statistics(
        self,
        prior: Any,
        pieces: Sequence[NoteState],
        key: str | None = None,
        reference: dict[str, np.ndarray] | None = None,
    ) -> dict[str, float]:
        """:func:`musicgym.envs.chorale.chorale_statistics` (Bach's character is in its
        statistics: no ``reference`` needed): each piece judged in ``key``, or in the key it is
        in (``None``); the distinct chorales; with a prior, ``log_p_per_frame``."""
        from musicgym.envs.decisions import chorale_statistics

        return {**chorale_statistics(prior, pieces, key), **self.set_measures(pieces)}

    def contributions(
        self, prior: Any, pieces: Sequence[NoteState], config: EnvConfig
    ) -> dict[str, np.ndarray]:
        """:func:`musicgym.metrics.chorale_contributions`, each piece in the key it is in, and
        ``log_p``: the sum of its frames' log-likelihoods under the prior and its frames."""
        from musicgym.envs.decisions import frame_log_likelihoods
        from musicgym.metrics import chorale_contributions
        from musicgym.music.harmony import find_key

        contributions = chorale_contributions(pieces, [find_key(piece) for piece in pieces])
        log_p = frame_log_likelihoods(prior, pieces)
        contributions["log_p"] = np.array([[frames.sum(), len(frames)] for frames in log_p])
        return contributions

    def measures_from_sums(
        self, sums: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """The statistics and ``log_p``."""
        from musicgym.metrics import ratio_of_sums
        from musicgym.metrics.chorale import statistics_of_sums

        return {**statistics_of_sums(sums), "log_p": ratio_of_sums(sums["log_p"])}

    def set_measures(self, pieces: Sequence[NoteState]) -> dict[str, float]:
        from musicgym.metrics.chorale import distinct_pieces

        return {DISTINCT_PIECES[0]: distinct_pieces(pieces)}

    def reference_pieces(
        self, dataset: Dataset, config: EnvConfig, split: str = REPORTED_SPLIT
    ) -> list[NoteState]:
        """The last ``config.bars`` bars of every chorale of ``split``: each window ends at the
        chorale's last sounding frame and starts on a beat (at most a beat longer)."""
        pieces = []
        for chorale in dataset.split(split):
            sounding = np.flatnonzero(chorale.matrix[..., 0].any(1))
            end = int(sounding[-1]) + 1 if sounding.size else chorale.num_steps
            frames = config.bars * 4 * chorale.resolution
            start = max(0, (end - frames) // chorale.resolution * chorale.resolution)
            window = chorale.matrix[start:end]
            pieces.append(NoteState(window, chorale.lowest_pitch, chorale.resolution, chorale.name))
        return pieces

    def note_state(self, piece: NoteState) -> NoteState:
        return piece

    def to_json(self, piece: NoteState) -> dict[str, Any]:
        return {
            "matrix": piece.matrix.tolist(),
            "lowest_pitch": piece.lowest_pitch,
            "resolution": piece.resolution,
        }

    def from_json(self, value: Any) -> NoteState:
        matrix = np.array(value["matrix"], np.uint8)
        return NoteState(matrix, value["lowest_pitch"], value["resolution"])

    def masking_kwargs(self, masked: bool) -> dict[str, Any]:
        """An agent that cannot mask plays an invalid action as "end the time step" (the env's
        default); one that masks never plays one, and if it did, that is a bug: it raises."""
        return {"invalid_action": "raise" if masked else "end"}

    def playback_kwargs(self, config: EnvConfig, masked: bool) -> dict[str, Any]:
        """The environment with its prior (which gives the pitch axis the policy was trained on),
        without rules."""
        kwargs = {**config.env_kwargs(), "rules": None, "invalid_action": "raise"}
        return {**kwargs, **self.masking_kwargs(masked)}

    def sample_prior(
        self,
        prior: Any,
        n: int,
        seed: int = 0,
        greedy: bool = False,
        config: EnvConfig | None = None,
    ) -> list[NoteState]:
        """Decision by decision (:func:`musicgym.envs.chorale.sample_chorales`: exact samples of
        the prior's factorisation)."""
        from musicgym.envs.decisions import load_note_axis_prior, sample_chorales

        bars = (config or CHORALE_DEFAULTS).bars
        return sample_chorales(load_note_axis_prior(prior), n, bars, seed, greedy=greedy)

    def sample_random(
        self, n: int, seed: int = 0, config: EnvConfig | None = None
    ) -> list[NoteState]:
        """Uniformly random valid decisions on the shipped prior's pitch axis."""
        from musicgym.envs.decisions import (
            BEATS_PER_BAR,
            PITCH_AXIS,
            RESOLUTION,
            DecisionStepper,
            compose_chorales,
        )

        rng = np.random.default_rng(seed)
        lowest, count = PITCH_AXIS
        stepper = DecisionStepper(count, n)

        def choose(stepper: DecisionStepper, active: np.ndarray) -> np.ndarray:
            return np.array([rng.choice(np.flatnonzero(m)) for m in stepper.valid_actions()])

        frames = (config or CHORALE_DEFAULTS).bars * BEATS_PER_BAR * RESOLUTION
        return compose_chorales(stepper, frames, choose, lowest, RESOLUTION)


def entropy_bits(counts: np.ndarray) -> np.ndarray:
    """Entropy in bits of histograms ``counts`` ``(..., K)``, 0 for an empty one; ``(...)``."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum(-1, keepdims=True)
    p = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    return 0.0 - np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0).sum(-1)


def theory_rewards(melodies: Sequence[Melody], config: EnvConfig) -> np.ndarray:
    """``r_MT`` of every step of every melody, ``(M, L)``, as the environment computes it: the
    melodies are played back through a rules-only batched environment of ``config``."""
    import gymnasium as gym

    import musicgym  # noqa: F401  (registers the environments)

    actions = np.asarray(melodies)
    envs = gym.make_vec(
        config.env,
        num_envs=len(melodies),
        vectorization_mode="vector_entry_point",
        **{**config.env_kwargs(with_prior=False), "length": actions.shape[1]},
    )
    envs.reset(seed=0)
    rewards = np.stack([envs.step(actions[:, t])[1] for t in range(actions.shape[1])], 1)
    envs.close()
    return rewards * config.c


MELODY = MelodyTask()
CHORALE = ChoraleTask()
TASKS: dict[str, Task[Any]] = {task.env_id: task for task in (MELODY, CHORALE)}
"""Every environment's task, by env id."""


def task_of(env_id: str) -> Task[Any]:
    """The task of an env id; one line naming the known ids otherwise."""
    try:
        return TASKS[env_id]
    except KeyError:
        raise EnvArgumentError(
            f"env: unknown environment {env_id!r}; expected one of {', '.join(TASKS)}"
        ) from None


__all__ = ["CHORALE", "MELODY", "TASKS", "ChoraleTask", "MelodyTask", "Piece", "Task", "task_of"]
