"""The task table (musicgym.tasks): each task's statistics are today's functions, its writers write
readable MIDI, its reference agents are reproducible by seed, and an unknown env id is one line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from musicgym.config import CHORALE_DEFAULTS, DEFAULTS, EnvConfig
from musicgym.envs.decisions import chorale_statistics
from musicgym.envs.stepper import melody_statistics
from musicgym.errors import EnvArgumentError
from musicgym.metrics import HISTOGRAMS, evaluate_chorales, evaluate_melodies
from musicgym.music.midi import read_midi
from musicgym.priors.model import BiaxialConfig, BiaxialLSTM
from musicgym.tasks import CHORALE, MELODY, TASKS, Task, entropy_bits, task_of

SMALL = {DEFAULTS.env: {"length": 16}, CHORALE_DEFAULTS.env: {"bars": 1}}


@pytest.fixture(scope="module")
def prior() -> BiaxialLSTM:
    """A random Bi-axial LSTM over MIDI 36..83: a melody prior and a note-axis prior."""
    torch.manual_seed(1)
    config = BiaxialConfig(time_sizes=(12,), note_sizes=(8,), vicinity=4, dropout=0.0)
    return BiaxialLSTM(config).eval().requires_grad_(False)


def small(task: Task) -> EnvConfig:
    return EnvConfig(env=task.env_id, **SMALL[task.env_id])


def equal_pieces(task: Task, first: list, second: list) -> bool:
    return [task.to_json(p) for p in first] == [task.to_json(p) for p in second]


def test_the_table_has_one_task_per_environment() -> None:
    assert {DEFAULTS.env: MELODY, CHORALE_DEFAULTS.env: CHORALE} == TASKS
    for env_id, task in TASKS.items():
        assert task_of(env_id) is task
        assert task.defaults == EnvConfig(env=env_id)
    assert (MELODY.piece_name, MELODY.data_column) == ("melody", "test melodies")
    assert (CHORALE.piece_name, CHORALE.data_column) == ("chorale", "Bach")
    assert set(MELODY.published) >= {"Q", "Note RNN"} and not CHORALE.published


def test_an_unknown_env_id_is_one_line() -> None:
    with pytest.raises(EnvArgumentError, match="unknown environment 'Nope-v0'") as error:
        task_of("Nope-v0")
    assert "\n" not in str(error.value) and "ChoraleComposition-v0" in str(error.value)


@pytest.mark.parametrize("task", [MELODY, CHORALE], ids=lambda t: t.piece_name)
def test_reference_agents_are_reproducible_by_seed(task: Task, prior) -> None:
    config = small(task)
    sampled = task.sample_prior(prior, 3, seed=4, config=config)
    assert equal_pieces(task, sampled, task.sample_prior(prior, 3, seed=4, config=config))
    assert not equal_pieces(task, sampled, task.sample_prior(prior, 3, seed=5, config=config))
    greedy = task.sample_prior(prior, 2, seed=0, greedy=True, config=config)
    assert equal_pieces(task, greedy[:1], greedy[1:])  # the most likely piece, twice
    randoms = task.sample_random(3, seed=4, config=config)
    assert equal_pieces(task, randoms, task.sample_random(3, seed=4, config=config))
    assert not equal_pieces(task, randoms, task.sample_random(3, seed=5, config=config))
    steps = 16  # a bar of 16th notes: 16 tokens, or one bar of frames
    assert all(task.note_state(p).num_steps == steps for p in [*sampled, *randoms])


def test_statistics_are_todays_functions_and_the_character(prior) -> None:
    """The spec's statistics as the functions give them, and the character of the set: its
    distinct shares, its pitch-class entropy and, given the data's histograms, the KL to them."""
    melodies = MELODY.sample_random(6, seed=2, config=small(MELODY))
    character = {**MELODY.set_measures(melodies), "pitch_class_entropy": pytest.approx(
        float(entropy_bits(MELODY.reference_histograms(melodies)["pitch_classes"])))}  # fmt: skip
    assert MELODY.statistics(prior, melodies) == {**melody_statistics(prior, melodies), **character}
    assert MELODY.statistics(prior, melodies, "G major") == {
        **melody_statistics(prior, melodies, "G major"),
        **character,
    }
    plain = MELODY.statistics(None, melodies)
    assert plain == {**evaluate_melodies(melodies, DEFAULTS.key), **character}
    itself = MELODY.statistics(None, melodies, reference=MELODY.reference_histograms(melodies))
    assert all(itself[f"kl_{name}"] == pytest.approx(0.0) for name in HISTOGRAMS)
    other = MELODY.reference_histograms(MELODY.sample_random(6, seed=3, config=small(MELODY)))
    assert MELODY.statistics(None, melodies, reference=other)["kl_intervals"] > 0.01
    chorales = CHORALE.sample_prior(prior, 4, seed=2, config=small(CHORALE))
    expected = {**chorale_statistics(prior, chorales), **CHORALE.set_measures(chorales)}
    assert _nan_equal(CHORALE.statistics(prior, chorales), expected)
    assert _nan_equal(CHORALE.statistics(None, chorales), evaluate_chorales(chorales))
    assert set(CHORALE.statistics(prior, chorales)) <= set(CHORALE.labels)
    assert set(MELODY.statistics(prior, melodies)) <= set(MELODY.labels)


def _nan_equal(first: dict[str, float], second: dict[str, float]) -> bool:
    return first.keys() == second.keys() and all(
        first[k] == second[k] or (math.isnan(first[k]) and math.isnan(second[k])) for k in first
    )


@pytest.mark.parametrize("task", [MELODY, CHORALE], ids=lambda t: t.piece_name)
def test_summed_contributions_give_the_statistics(task: Task, prior) -> None:
    config = small(task)
    pieces = task.sample_prior(prior, 5, seed=1, config=config)
    contributions = task.contributions(prior, pieces, config)
    assert all(len(rows) == len(pieces) for rows in contributions.values())
    summed = task.measures_from_sums({k: rows.sum(0) for k, rows in contributions.items()})
    statistics = task.statistics(prior, pieces, config.key if task is MELODY else None)
    statistics.pop("log_p_per_frame", None)  # the chorale's log_p is per frame too
    for name, value in statistics.items():
        if name in summed:
            np.testing.assert_allclose(summed[name], value, rtol=1e-9, err_msg=name)
    assert set(task.set_measures(pieces)) <= set(task.measures)
    assert set(summed) <= set(task.measures)


@pytest.mark.parametrize("task", [MELODY, CHORALE], ids=lambda t: t.piece_name)
def test_writers_write_readable_midi_json_and_piano_rolls(task: Task, prior, tmp_path) -> None:
    pieces = task.sample_prior(prior, 2, seed=3, config=small(task))
    for i, piece in enumerate(pieces):
        path = tmp_path / f"{task.piece_name}_{i}.mid"
        task.write_midi(piece, path)
        read = read_midi(path, lowest_pitch=36, num_pitches=48)  # trailing silence is cut
        written = task.note_state(piece).with_range(36, 48).matrix[: read.num_steps]
        assert read.num_steps > 0
        np.testing.assert_array_equal(read.matrix[..., 0], written[..., 0])  # the same notes
    task.write_json(pieces, tmp_path / task.pieces_file)
    read_back = [task.from_json(v) for v in json.loads((tmp_path / task.pieces_file).read_text())]
    assert equal_pieces(task, read_back, pieces)
    task.write_piano_roll(pieces[0], tmp_path / "roll.png", "one")
    task.write_piano_roll_sheet(pieces, tmp_path / "sheet.png", ["a", "b"], columns=2)
    assert (tmp_path / "roll.png").stat().st_size > 500 and (tmp_path / "sheet.png").is_file()
