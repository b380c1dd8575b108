"""Phrase episodes of ChoraleComposition-v0 (issue 21): Bach's phrases found at the corpus'
fermatas and cached, an episode primed by its chorale and ended at its phrase's fermata, the same
seed the same phrase, the default env as before, agents that learn on phrases and compose whole
chorales, and bad input in one line."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import SyncVectorEnv

import musicgym  # noqa: F401  (registers the environments)
from musicgym import agents
from musicgym.agents.common import read_agent_info
from musicgym.cli import main
from musicgym.config import CHORALE_ENV_ID, EnvConfig
from musicgym.envs.chorale import ChoraleCompositionEnv, ChoraleCompositionVectorEnv
from musicgym.envs.decisions import end_action
from musicgym.envs.phrases import PhraseEpisodes, chorale_key, episode_phrases, semitones_between
from musicgym.errors import EnvArgumentError, RuleError
from musicgym.music import corpus
from musicgym.music.harmony import authentic_cadence, sonority
from musicgym.music.keys import Key
from musicgym.music.notestate import NoteState
from musicgym.priors.registry import save_checkpoint
from musicgym.rules import PRESETS, ChoraleContext, FunctionRule
from tests.test_chorale_agents import tiny_chorale_prior
from tests.test_chorale_env import random_valid, step_alike

AXIS = (4, 36, 48)
"""Resolution and pitch axis of the rules-only env and of bach16: 16th notes, MIDI 36..83."""
CHORALE = "bwv347"
"""A four-voice chorale in 4/4 in A major with five phrases after its first: four of two bars and
the last, its final cadence, of three."""
MASKABLE_PPO_SMALL = json.dumps({"n_steps": 32, "batch_size": 32, "n_epochs": 1})
"""``--hyperparameters`` of a short MaskablePPO run."""


def phrase_env(**kwargs) -> ChoraleCompositionEnv:
    """The rules-only env (fast) on the phrases of :data:`CHORALE`, three bars at most."""
    settings = {"prior": None, "phrases": True, "primer": f"chorale:{CHORALE}", "bars": 3}
    return gym.make(CHORALE_ENV_ID, **{**settings, **kwargs}).unwrapped


def bach_actions(frame: np.ndarray) -> list[int]:
    """The actions that write ``frame`` ``(N, 2)``: its notes from low to high, each struck or
    held, then "end"."""
    N = len(frame)
    notes = [p if frame[p, 1] else N + p for p in np.flatnonzero(frame[:, 0])]
    return [*notes, end_action(N)]


@pytest.fixture
def small_corpus(monkeypatch, tmp_path):
    """The corpus cut to three chorales (two fit an episode: the 3/4 bwv269 does not), its
    conversion cached in ``tmp_path``."""
    monkeypatch.setenv("MUSICGYM_CACHE", str(tmp_path))
    paths = [f"bach/{name}" for name in ("bwv269", CHORALE, "bwv3.6")]
    monkeypatch.setattr(corpus, "_chorale_paths", lambda: paths)
    return tmp_path


@pytest.fixture
def no_fermatas(monkeypatch):
    """Every score without a fermata (no chorale of the corpus fits on the axis without one)."""
    corpus.phrased_chorale.cache_clear()
    monkeypatch.setattr(corpus, "fermata_ends", lambda score, resolution: [])
    yield
    corpus.phrased_chorale.cache_clear()


# --------------------------------------------------------------------------- the phrases
def test_bwv269_has_six_fermatas_that_end_its_phrases():
    """bwv269 (3/4, a one-beat pickup padded to a bar) holds its soprano's fermatas on the half
    notes at quarters 12, 21, 30, 42, 54 and 63 of 65 (the pickup's two padded in): six phrases of
    two or three bars."""
    bwv269 = corpus.phrased_chorale("bwv269", *AXIS)
    assert bwv269.phrase_ends == tuple(4 * q for q in (14, 23, 32, 44, 56, 65))
    assert bwv269.chorale.num_steps == 4 * 65 and (bwv269.voices, bwv269.meter) == (4, "3/4")
    lengths = [end - start for start, end in episode_phrases(bwv269, max_length=64)]
    assert lengths == [36, 36, 48, 48, 36]  # 3, 3, 4, 4 and 3 bars of 3/4, in 16th notes
    assert episode_phrases(bwv269, max_length=36) == [(56, 92), (92, 128), (224, 260)]


def test_the_corpus_phrases_are_converted_once_then_read_from_the_cache(small_corpus, monkeypatch):
    first = corpus.corpus_phrases(*AXIS, progress=False)
    cached = sorted(p.name for p in small_corpus.iterdir())
    assert cached == [f"bach-phrases-r4-p36-48-v{corpus.PHRASES_VERSION}.npz"]
    assert [c.name for c in first] == ["bwv269", CHORALE, "bwv3.6"]
    corpus._loaded.clear()
    monkeypatch.setattr(corpus, "_phrased_notes", None)  # a conversion now would fail
    again = corpus.corpus_phrases(*AXIS)
    assert [(c.name, c.phrase_ends, c.voices, c.meter) for c in again] == [
        (c.name, c.phrase_ends, c.voices, c.meter) for c in first
    ]
    assert all(a.chorale == b.chorale for a, b in zip(first, again))
    episodes = PhraseEpisodes(again, bars=4, source="the corpus")
    assert [c.name for c in episodes.chorales] == [CHORALE, "bwv3.6"]  # 4/4 only


@pytest.mark.parametrize(
    ("name", "key"),
    [
        (CHORALE, "A major"),  # three sharps, the last bass note A
        ("bwv2.6", "D minor"),  # one flat (F major / D minor), D
        ("bwv10.7", "G minor"),  # two flats, G: a minor key with one flat fewer ("dorian")
        ("bwv38.6", None),  # no sharp, E: a Phrygian ending (on the dominant of A minor)
    ],
)
def test_a_chorales_key_is_its_last_bass_note_in_its_signatures_mode(name, key):
    found = chorale_key(corpus.phrased_chorale(name, *AXIS))
    assert (found and found.name) == key


# ------------------------------------------------------------------------------ episodes
def test_a_phrase_episode_is_primed_by_its_chorale_and_ends_at_the_fermata():
    """Every phrase of bwv347 after its first, written with Bach's own notes (transposed from
    A major to C major): the primer is the chorale before it, the episode ends with its last
    frame, and the cadence rule judges the frames of its last beat as the chorale's last."""
    bach = corpus.phrased_chorale(CHORALE, *AXIS)
    shift = bach.chorale.fitting_shift(semitones_between(chorale_key(bach), Key()))
    moved = bach.chorale.transpose(shift).matrix
    weight = PRESETS["chorale"]["cadence"]
    env, seen, seed = phrase_env(), set(), 0
    while len(seen) < 5 and seed < 100:  # until every phrase was drawn
        observation, info = env.reset(seed=seed)
        seed += 1
        start = len(env.note_state(include_primer=True).matrix)
        end = dict(episode_phrases(bach, 48))[start]
        assert np.array_equal(env.note_state(include_primer=True).matrix, moved[:start])
        assert info["primer"] == NoteState(moved[:start], 36, 4)  # what an agent replays
        position = observation[-17:-1]  # the bar one-hot: where the phrase starts in its bar
        assert position.argmax() == start % 16 and info["key"] == "C major"
        paid = 0.0
        for t in range(start, end):
            for action in bach_actions(moved[t]):
                _, _, terminated, _, info = env.step(action)
                paid += info["rewards"]["cadence"]
        assert terminated and info["frames"] == end - start and "primer" not in info
        assert np.array_equal(env.note_state().matrix, moved[start:end])
        last_beat = [authentic_cadence(sonority(moved[t], 36), Key()) for t in range(end - 4, end)]
        assert paid == pytest.approx(weight / 0.5 * sum(last_beat) / 4)
        ending = last_beat[-1]
        seen.add((start, ending))
    assert seen == {(44, False), (76, False), (108, False), (140, False), (172, True)}


def test_the_same_seed_draws_the_same_phrase_and_the_vector_env_agrees():
    def primer(seed: int) -> np.ndarray:  # one chorale's: its length says which phrase
        env = phrase_env()
        env.reset(seed=seed)
        return env.note_state(include_primer=True).matrix

    assert all(np.array_equal(primer(seed), primer(seed)) for seed in (0, 1, 2))
    assert len({len(primer(seed)) for seed in range(8)}) > 1  # other seeds, other phrases

    kwargs = {"prior": tiny_chorale_prior(), "phrases": True, "primer": f"chorale:{CHORALE}"}
    kwargs["bars"] = 3
    batched = ChoraleCompositionVectorEnv(num_envs=2, **kwargs)
    sync = SyncVectorEnv([lambda: ChoraleCompositionEnv(**kwargs) for _ in range(2)])
    observations, infos = batched.reset(seed=7)
    expected, _ = sync.reset(seed=7)
    assert np.array_equal(observations, expected)
    ended = step_alike(batched, sync, infos, np.random.default_rng(7), 200, end_bias=0.6)
    assert ended >= 2  # phrases of 32 or 48 frames ended, and the next ones drawn


def test_the_corpus_pool_draws_every_fitting_chorale_in_the_key(small_corpus):
    env = gym.make(CHORALE_ENV_ID, prior=None, phrases=True).unwrapped
    assert [c.name for c in env.primer.chorales] == [CHORALE, "bwv3.6"]
    assert len(env.primer.candidates(Key())) == 2  # both in A major
    drawn = set()
    for seed in range(10):
        env.reset(seed=seed)
        primer = env.note_state(include_primer=True).matrix
        for index, shift in env.primer.candidates(Key()):
            chorale = env.primer.chorales[index].chorale.transpose(shift)
            if np.array_equal(primer, chorale.matrix[: len(primer)]):
                drawn.add(env.primer.chorales[index].name)
    assert drawn == {CHORALE, "bwv3.6"}


def test_the_default_env_is_as_before_and_an_older_state_resumes():
    """``phrases=False`` (the default) composes ``bars`` bars from a bar line; a state saved
    before phrase episodes (no lengths, no bar positions) resumes as it was saved."""
    default = gym.make(CHORALE_ENV_ID, prior=None, bars=1).unwrapped
    off = gym.make(CHORALE_ENV_ID, prior=None, bars=1, phrases=False).unwrapped
    first, _ = default.reset(seed=3)
    assert np.array_equal(first, off.reset(seed=3)[0]) and first[-17] == 1.0  # bar position 0
    rng = np.random.default_rng(3)
    for _ in range(20):
        default.step(random_valid(default.action_masks(), rng, 0.3))
    state = default.get_state()
    saved = state["batch"]
    older = {
        **state,
        "batch": {k: saved[k] for k in saved if k not in ("lengths", "bar_positions")},
    }
    resumed = gym.make(CHORALE_ENV_ID, prior=None, bars=1).unwrapped
    resumed.set_state(older)
    while True:
        action = random_valid(default.action_masks(), rng, 0.3)
        step, again = default.step(action), resumed.step(action)
        assert np.array_equal(step[0], again[0]) and step[1:4] == again[1:4]
        if step[2]:
            break
    assert default.note_state().num_steps == 16


def test_a_phrase_episode_resumes_from_its_state():
    env, rng = phrase_env(), np.random.default_rng(0)
    env.reset(seed=5)
    for _ in range(10):
        env.step(random_valid(env.action_masks(), rng, 0.3))
    copy = phrase_env()
    copy.set_state(env.get_state())
    for _ in range(150):
        action = random_valid(env.action_masks(), rng, 0.3)
        step, again = env.step(action), copy.step(action)
        assert np.array_equal(step[0], again[0]) and step[1:4] == again[1:4]
        if step[2]:
            env.reset(), copy.reset()


# ----------------------------------------------------------------------------------- agents
@pytest.mark.parametrize(
    ("algo", "settings"),
    [
        ("sb3-maskableppo", ["--eval-episodes", "1", "--hyperparameters", MASKABLE_PPO_SMALL]),
        ("rltuner-q", ["--eval-melodies", "1", "--learning-starts", "16", "--head-size", "16"]),
    ],
    ids=["sb3-maskableppo", "rltuner-q"],
)
def test_agents_learn_on_phrases_and_compose_whole_chorales(tmp_path, capsys, algo, settings):
    """``--phrases`` reaches the training envs only: a run's chorales are of ``--bars`` bars."""
    config = EnvConfig(env=CHORALE_ENV_ID, phrases=True)
    assert "phrases" not in config.env_kwargs() and config.env_kwargs(training=True)["phrases"]
    assert "phrases" not in EnvConfig(env=CHORALE_ENV_ID).env_kwargs(training=True)
    save_checkpoint(tmp_path / "tiny.pt", tiny_chorale_prior())
    arguments = ["agent", "train", "--algo", algo, "--env", CHORALE_ENV_ID]
    arguments += ["--phrases", "--primer", f"chorale:{CHORALE}", "--bars", "3", "--steps", "64"]
    arguments += ["--num-envs", "2", "--eval-interval", "64", *settings]
    arguments += ["--prior", str(tmp_path / "tiny.pt"), "--out", str(tmp_path / "run")]
    assert main([*arguments, "--no-progress"]) == 0
    assert read_agent_info(tmp_path / "run")["env"]["phrases"] is True
    chorales = agents.load(tmp_path / "run").compose(2, seed=0)
    assert [c.num_steps for c in chorales] == [48, 48]  # whole chorales of three bars
    capsys.readouterr()


# -------------------------------------------------------------------------------- bad input
def test_bad_phrase_input_is_one_line(small_corpus, tmp_path):
    bad = [
        ({"primer": "chorale:bwv8.6"}, r"^primer: chorale 'bwv8\.6' has 5 voices; phrase"),
        ({"primer": "chorale:bwv269"}, r"^primer: chorale 'bwv269' is in 3/4; phrase episodes"),
        ({"primer": "chorale:bwv38.6"}, r"^primer: chorale 'bwv38\.6' ends on .* modal ending"),
        ({"primer": "chorale:bwv153.1"}, r"^key: phrase episodes transpose .* minor only"),
        ({"primer": NoteState.empty(4, 36, 48)}, r"^primer: phrase episodes are primed by the"),
        ({"primer": "chorale:nosuch"}, r"^primer: no chorale 'nosuch' in music21's corpus"),
        ({"phrases": "yes"}, r"^phrases: expected True or False, got 'yes'"),
        ({"key": "C minor", "primer": None}, r"^key: .* but the corpus is in major only"),
    ]
    for kwargs, message in bad:
        with pytest.raises(EnvArgumentError, match=message) as error:
            phrase_env(**kwargs)
        assert "\n" not in str(error.value)
    env = phrase_env()
    with pytest.raises(EnvArgumentError, match=r"^reset: .* chorale 'bwv153\.1' is in minor"):
        env.reset(options={"primer": "chorale:bwv153.1"})
    with pytest.raises(EnvArgumentError, match=r"^options\['primer'\]: chorale 'bwv269' is in"):
        env.reset(options={"primer": "chorale:bwv269"})


def test_fermataless_chorales_are_not_drawn_and_none_left_is_one_line(small_corpus, no_fermatas):
    with pytest.raises(EnvArgumentError, match=rf"^primer: chorale '{CHORALE}' marks no fermata"):
        phrase_env()
    with pytest.raises(EnvArgumentError, match=r"^phrases: the corpus has no phrase to compose"):
        gym.make(CHORALE_ENV_ID, prior=None, phrases=True)


def test_a_nan_weight_or_divisor_is_one_line():
    nan_rule = FunctionRule("nan_rule", lambda c: 0.0, math.nan, context=ChoraleContext)
    bad = [
        ({"c": math.nan}, r"^c: expected a positive number, got nan"),
        ({"prior_weight": math.nan}, r"^prior_weight: expected a finite number >= 0, got nan"),
        ({"rules": {"cadence": math.nan}}, r"^rules: the weight of 'cadence' is nan, not finite"),
        ({"rules": [nan_rule]}, r"^rules: the weight of 'nan_rule' is nan, not finite"),
    ]
    for kwargs, message in bad:
        with pytest.raises((EnvArgumentError, RuleError), match=message):
            gym.make(CHORALE_ENV_ID, prior=None, **kwargs)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--primer", "chorale:bwv8.6"], "primer: chorale 'bwv8.6' has 5 voices"),
        (["--env", "MusicComposition-v0"], "--phrases: only ChoraleComposition-v0 has phrase"),
        (["--c", "nan"], "--c: expected a finite number > 0, got nan"),
        (["--rules", "cadence=nan"], "rules: the weight of 'cadence' is nan, not finite"),
        (["--key", "C major,A minor"], "the rules' key, A minor, but chorale 'bwv347' is in maj"),
        (["--env", "MusicComposition-v0", "--key", "C,Am"], "key: only ChoraleComposition-v0 dr"),
    ],
    ids=["voices", "melodies", "c", "weight", "keys", "melody-keys"],
)
def test_bad_phrase_training_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    save_checkpoint(tmp_path / "tiny.pt", tiny_chorale_prior())
    arguments = ["agent", "train", "--algo", "sb3-maskableppo", "--env", CHORALE_ENV_ID]
    arguments += ["--phrases", "--primer", f"chorale:{CHORALE}", "--bars", "3", "--steps", "8"]
    arguments += ["--prior", str(tmp_path / "tiny.pt"), "--out", str(tmp_path / "run")]
    assert main([*arguments, "--no-progress", *extra]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("musicgym: error: ") and message in line
