"""ChoraleComposition-v0: the exact note-axis factorisation, masks, the batched vector env,
compatibility with Gymnasium and Stable-Baselines3, and bad input."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import musicgym  # noqa: F401  (registers the environments)
from musicgym.envs.chorale import ChoraleCompositionEnv, ChoraleCompositionVectorEnv
from musicgym.envs.decisions import DecisionStepper, decision_log_probs, end_action
from musicgym.errors import CheckpointError, EnvArgumentError, RuleError
from musicgym.music.midi import read_midi
from musicgym.music.notestate import NoteState
from musicgym.prior import NoteAxisPrior
from musicgym.priors.model import BiaxialConfig, BiaxialLSTM
from musicgym.rules import PRESETS

ENV_ID = "ChoraleComposition-v0"


@pytest.fixture(scope="module")
def prior() -> BiaxialLSTM:
    """A small Bi-axial LSTM with random weights (MIDI 36..83, as the shipped bach16)."""
    torch.manual_seed(0)
    config = BiaxialConfig(time_sizes=(16,), note_sizes=(12, 8), dropout=0.0)
    return BiaxialLSTM(config).eval().requires_grad_(False)


def make(prior, **kwargs) -> gym.Env:
    return gym.make(ENV_ID, **{"prior": prior, **kwargs})


def random_valid(mask: np.ndarray, rng: np.random.Generator, end_bias: float = 0.0) -> int:
    """A uniformly random valid action (with probability ``end_bias``: end the time step)."""
    if rng.random() < end_bias:
        return len(mask) - 1
    return int(rng.choice(np.flatnonzero(mask)))


# --------------------------------------------------------------------------- exact log p
def test_bi_axial_lstm_is_a_note_axis_prior(prior):
    assert isinstance(prior, NoteAxisPrior)


def test_valid_actions_probabilities_sum_to_one_in_random_states(prior):
    env = make(prior)
    _, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(120):
        log_probs = env.unwrapped.action_log_probs()
        mask = info["action_mask"]
        assert np.exp(log_probs[mask]).sum() == pytest.approx(1.0, abs=1e-6)  # float32 prior
        assert np.all(np.isneginf(log_probs[~mask]))
        _, _, terminated, _, info = env.step(random_valid(mask, rng, end_bias=0.2))
        assert not terminated


def test_a_time_steps_decisions_sum_to_the_priors_log_p_of_its_frame(prior):
    """The "prior" reward parts between two "end" actions add up to ``score_frames`` of the frame
    they wrote, the prior advanced independently over the frames before."""
    env = make(prior, bars=1)
    _, info = env.reset(seed=1)
    rng = np.random.default_rng(1)
    state = prior.initial_state(1)
    end, total, frames_checked = end_action(prior.num_pitches), 0.0, 0
    terminated = False
    while not terminated:
        action = random_valid(info["action_mask"], rng, end_bias=0.25)
        _, _, terminated, _, info = env.step(action)
        total += info["rewards"]["prior"]
        if action == end:
            frame = torch.as_tensor(env.unwrapped.note_state().matrix[-1], dtype=torch.float32)
            expected = prior.score_frames(state, frame[None, None])[0, 0].item()
            assert total == pytest.approx(expected, abs=1e-4)
            state, total = prior.advance(state, frame[None]), 0.0
            frames_checked += 1
    assert frames_checked == 16


def test_decision_log_probs_from_hand_made_note_scores():
    # Two pitches; at each: P(not played) 1/2, P(struck) 1/4, P(held) 1/4.
    note = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]]]))
    probs = decision_log_probs(note).exp()[0]
    # strike 0, strike 1, hold 0, hold 1, end
    assert probs.tolist() == pytest.approx([0.25, 0.125, 0.25, 0.125, 0.25])
    # pitch 0 decided: only pitch 1 and "end" remain
    note[0, 0] = -torch.inf
    probs = decision_log_probs(note).exp()[0]
    assert probs.tolist() == pytest.approx([0.0, 0.25, 0.0, 0.25, 0.5])


# --------------------------------------------------------------------------------- masks
def test_pitches_at_or_below_the_last_written_are_masked_and_raise_on_request(prior):
    env = make(prior, invalid_action="raise")
    _, info = env.reset(seed=0)
    N = prior.num_pitches
    assert info["action_mask"].all()
    _, _, _, _, info = env.step(20)  # strike MIDI 56
    mask = info["action_mask"]
    assert np.array_equal(mask, env.unwrapped.action_masks())
    assert not mask[:21].any() and mask[21:N].all()  # strikes
    assert not mask[N : N + 21].any() and mask[N + 21 : 2 * N].all()  # holds
    assert mask[2 * N]  # end
    for invalid in (20, 3, N + 20):
        with pytest.raises(EnvArgumentError, match=r"^action: .* is not valid now") as error:
            env.step(invalid)
        assert "\n" not in str(error.value)
    with pytest.raises(EnvArgumentError, match="outside the action space"):
        env.step(2 * N + 1)


def test_an_invalid_action_plays_end_with_a_penalty_by_default(prior):
    env = make(prior)  # invalid_action="end", the default: any RL code runs on the env
    env.reset(seed=0)
    env.step(20)
    _, reward, _, _, info = env.step(5)  # below the last: played as "end"
    assert info["frames"] == 1 and info["rewards"]["invalid_action"] == -10.0
    assert reward == pytest.approx(sum(info["rewards"].values()))
    assert np.array_equal(info["action_mask"], env.unwrapped.action_masks())
    assert info["action_mask"].all()  # a new time step: every action valid again


def test_a_full_random_episode_with_masked_actions_on_the_shipped_prior():
    env = gym.make(ENV_ID)  # bach16, the default
    _, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    terminated, steps = False, 0
    while not terminated:
        _, reward, terminated, _, info = env.step(random_valid(info["action_mask"], rng, 0.3))
        assert np.isfinite(reward)
        steps += 1
    assert info["frames"] == 64 and steps >= 64
    with pytest.raises(ResetNeeded):
        env.step(0)


# ------------------------------------------------------------------------- compatibility
@pytest.mark.parametrize("with_prior", [True, False])
def test_gymnasium_env_checker_with_warnings_as_errors(prior, with_prior):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(make(prior if with_prior else None).unwrapped, skip_render_check=False)


def test_stable_baselines3_env_checker_on_the_defaults():
    """SB3's checker steps random actions without masks: the default env (the shipped bach16)
    takes them."""
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(gym.make(ENV_ID).unwrapped)


def test_a_prior_that_is_not_there_fails_at_make():
    with pytest.raises(CheckpointError, match=r"^nosuch: no shipped prior of that name"):
        gym.make(ENV_ID, prior="nosuch")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        gym.make(ENV_ID, prior="missing/chorale.pt")


def step_alike(
    batched: Any, sync: Any, infos: dict, rng: np.random.Generator, steps: int, end_bias: float
) -> int:
    """Step ``batched`` and ``sync`` (after their reset, whose ``infos`` give the first masks)
    ``steps`` times with the same random valid actions, asserting the same observations,
    rewards, terminations and infos; the episodes that ended."""
    ended = 0
    for _ in range(steps):
        actions = np.array([random_valid(m, rng, end_bias) for m in infos["action_mask"]])
        observations, rewards, terminations, _, infos = batched.step(actions)
        expected, expected_rewards, expected_terminations, _, expected_infos = sync.step(actions)
        assert np.array_equal(observations, expected)
        np.testing.assert_allclose(rewards, expected_rewards, atol=1e-5)
        assert np.array_equal(terminations, expected_terminations)
        assert_same_infos(infos, expected_infos)
        ended += int(terminations.sum())
    return ended


def assert_same_infos(infos: dict, expected: dict) -> None:
    """Vector infos equal, key by key, with their dtypes and ``_key`` masks."""
    assert set(infos) == set(expected)
    for key, value in infos.items():
        if isinstance(value, dict):
            assert_same_infos(value, expected[key])
        elif value.dtype == object:
            for ours, theirs in zip(value, expected[key]):
                assert (ours is None and theirs is None) or np.array_equal(ours, theirs), key
        else:
            assert value.dtype == expected[key].dtype, key
            np.testing.assert_allclose(value, expected[key], atol=1e-5, err_msg=key)


@pytest.mark.parametrize("autoreset_mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_env_equals_sync_vector_env_of_the_single_env(prior, autoreset_mode):
    kwargs = {"prior": prior, "bars": 1}
    count = 3
    batched = gym.make_vec(
        ENV_ID,
        num_envs=count,
        vectorization_mode="vector_entry_point",
        autoreset_mode=autoreset_mode,
        **kwargs,
    )
    assert isinstance(batched.unwrapped, ChoraleCompositionVectorEnv)
    sync = SyncVectorEnv(
        [lambda: ChoraleCompositionEnv(**kwargs) for _ in range(count)],
        autoreset_mode=autoreset_mode,
    )
    observations, infos = batched.reset(seed=5)
    expected, expected_infos = sync.reset(seed=5)
    assert np.array_equal(observations, expected)
    assert_same_infos(infos, expected_infos)
    ended = step_alike(batched, sync, infos, np.random.default_rng(2), 150, end_bias=0.3)
    assert ended >= count  # autoreset was exercised


@pytest.mark.parametrize("vector", [False, True])
def test_prior_calls_run_on_one_thread_and_leave_the_callers(prior, vector, monkeypatch):
    """The default ``threads=1``: the note axis runs on one torch thread inside reset and step,
    and the caller's own count is back after them."""
    seen = []
    note_log_probs = prior.note_log_probs

    def counting(*args):
        seen.append(torch.get_num_threads())
        return note_log_probs(*args)

    monkeypatch.setattr(prior, "note_log_probs", counting)
    torch.set_num_threads(2)  # the caller's; the autouse fixture restores its own after
    env = ChoraleCompositionVectorEnv(2, prior=prior) if vector else make(prior).unwrapped
    env.reset(seed=0)
    env.step(np.zeros(2, np.int64) + 12 if vector else 12)
    assert torch.get_num_threads() == 2
    assert seen and set(seen) == {1}


def test_same_seed_same_episode_and_state_round_trip(prior):
    def episode(env, seed):
        _, info = env.reset(seed=seed)
        rng, rewards = np.random.default_rng(seed), []
        for _ in range(40):
            _, reward, _, _, info = env.step(random_valid(info["action_mask"], rng, 0.3))
            rewards.append(reward)
        return rewards, env.unwrapped.note_state()

    first, second = episode(make(prior), 3), episode(make(prior), 3)
    assert first[0] == second[0] and first[1] == second[1]

    env, rng = make(prior), np.random.default_rng(4)
    _, info = env.reset(seed=4)
    for _ in range(30):
        _, _, _, _, info = env.step(random_valid(info["action_mask"], rng, 0.3))
    saved, copy = env.unwrapped.get_state(), make(prior)
    copy.unwrapped.set_state(saved)
    for _ in range(30):
        action = random_valid(info["action_mask"], rng, 0.3)
        *step, info = env.step(action)
        *step_copy, _ = copy.unwrapped.step(action)
        assert np.array_equal(step[0], step_copy[0]) and step[1] == step_copy[1]


def test_rules_only_env_scores_no_prior_and_keeps_the_voice_axis():
    env = make(None)
    _, info = env.reset(seed=0)
    assert env.action_space.n == 97 and info["action_mask"].all()
    *_, info = env.step(96)  # end a silent first frame: on a beat, no four voices
    assert info["rewards"]["prior"] == 0.0
    assert info["rewards"]["four_voices"] == pytest.approx(-PRESETS["chorale"]["four_voices"] / 0.5)


# ------------------------------------------------------------------------- rendering, MIDI
def test_render_modes_and_midi(prior, tmp_path):
    env = make(prior, render_mode="ansi")
    env.reset(seed=0)
    for action in (12, 19, 28, 36, 96, 48 + 12, 24, 96):  # C3 G3 E4 C5 | C3 held, C4 struck
        env.step(action)
    text = env.render()
    assert text.splitlines()[:2] == ["   0| C3 G3 E4 C5", "   1  C3~ C4"]
    image = make(prior, render_mode="rgb_array", bars=2)
    image.reset(seed=0)
    shapes = {image.render().shape}
    for action in (12, 19, 96, 60, 96):
        image.step(action)
        shapes.add(image.render().shape)
    assert shapes == {(48 * 4, 2 * 16 * 4, 3)}  # one size per episode: RecordVideo, frame stacks
    env.unwrapped.to_midi(tmp_path / "chorale.mid")
    back = read_midi(tmp_path / "chorale.mid", lowest_pitch=36, num_pitches=48)
    assert back == env.unwrapped.note_state()


def test_primer_is_fed_and_shown_but_not_judged(prior, tmp_path):
    primer = NoteState.empty(3, 36, 48)
    primer.matrix[:, 24, 0] = 1
    primer.matrix[0, 24, 1] = 1  # C4 struck and held for three frames
    env = make(prior, primer=primer)
    observation, info = env.reset(seed=0)
    N = 48
    history = observation[3 * N + 1 :].reshape(-1)[: 2 * N * 3].reshape(3, N, 2)
    assert history[:, 24, 0].all() and info["frames"] == 0
    stepper = DecisionStepper(N, 1, prior)
    stepper.restart([0], [primer.matrix])
    np.testing.assert_allclose(
        env.unwrapped.action_log_probs(), stepper.action_log_probs()[0].numpy()
    )


# ------------------------------------------------------------------------------ bad input
def test_several_keys_are_drawn_per_episode_and_shown(prior):
    """``key="C major, A minor"``: each episode draws one of them from its seed (the vector
    env's slots as the single env's), ``info["key"]`` names it, the observation shows it one-hot
    before the bar position (one key: the observation is as before), and the rules judge in it;
    a reset's key option still sets the episode's."""
    from musicgym.music.keys import Key

    one, both = make(prior, bars=1), make(prior, bars=1, key="C major, A minor")
    N = prior.num_pitches
    assert both.observation_space.shape[0] == one.observation_space.shape[0] + 24
    drawn = []
    for seed in range(12):
        observation, info = both.reset(seed=seed)
        key = Key.parse(info["key"])
        assert both.unwrapped._batch.keys[0] == key
        shown = observation[3 * N + 1 + 8 * 2 * N :][:24]
        assert shown[key.index] == 1.0 and shown.sum() == 1.0
        drawn.append(info["key"])
    assert set(drawn) == {"C major", "A minor"}
    assert [
        make(prior, bars=1, key=["C major", "A minor"]).reset(seed=s)[1]["key"] for s in range(12)
    ] == drawn  # a list is the same argument
    assert both.reset(seed=0, options={"key": "G major"})[1]["key"] == "G major"
    vector = gym.make_vec(
        ENV_ID,
        num_envs=3,
        vectorization_mode="vector_entry_point",
        prior=prior,
        bars=1,
        key="C major, A minor",
    )
    _, infos = vector.reset(seed=[4, 5, 6])
    assert infos["key"].tolist() == drawn[4:7]
    assert one.reset(seed=0)[1]["key"] == "C major"  # one key draws nothing


def test_bad_input_is_one_line(prior, tmp_path):
    from musicgym.priors.note_rnn import NoteRNN, NoteRNNConfig

    with pytest.raises(CheckpointError, match="needs a NoteAxisPrior"):
        make(NoteRNN(NoteRNNConfig()))
    narrow = BiaxialLSTM(BiaxialConfig(lowest_pitch=48, num_pitches=36, time_sizes=(8,)))
    with pytest.raises(EnvArgumentError, match="cannot hold the voices' ranges"):
        make(narrow)
    eighths = NoteState.empty(4, 36, 48, resolution=2)
    with pytest.raises(EnvArgumentError, match="primer: a note-state of 2 steps per quarter"):
        make(prior, primer=eighths)
    wide = NoteState.empty(4, 24, 72)
    wide.matrix[0, 0] = 1  # MIDI 24, below the axis
    with pytest.raises(EnvArgumentError, match=r"more than the prior's pitch axis 36\.\.83"):
        make(prior, primer=wide)
    with pytest.raises(EnvArgumentError, match="neither 'chorale:NAME' nor an existing MIDI"):
        make(prior, primer=str(tmp_path / "missing.mid"))
    with pytest.raises(RuleError, match="unknown rule 'nope'"):
        make(prior, rules=["nope"])
    with pytest.raises(RuleError, match="'tonic' judge melody steps"):
        make(prior, rules=["tonic"])
    with pytest.raises(EnvArgumentError, match=r"^key: key 'H minor' does not parse"):
        make(prior, key="C major, H minor")
    with pytest.raises(EnvArgumentError, match=r"^key: no key given"):
        make(prior, key=[])
    bad = [("bars", 0), ("c", -1.0), ("history", 0), ("invalid_action", "skip"), ("threads", 0)]
    for name, value in bad:
        with pytest.raises(EnvArgumentError, match=f"^{name}: "):
            make(prior, **{name: value})
