"""MusicComposition-v0: rewards, log-probabilities, the batched vector env, compatibility with
Gymnasium and Stable-Baselines3, and bad input."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import musicgym
from musicgym.envs.melody import MusicCompositionEnv, MusicCompositionVectorEnv
from musicgym.errors import CheckpointError, EnvArgumentError, MusicgymError, RuleError
from musicgym.music.tokens import tokens_to_note_state
from tests.fake_prior import TablePrior

ENV_ID = "MusicComposition-v0"


def make(**kwargs) -> gym.Env:
    return gym.make(ENV_ID, **{"prior": None, **kwargs})


@pytest.fixture(scope="module")
def prior() -> TablePrior:
    return TablePrior()


# ------------------------------------------------------------------------------------ rewards
def test_reward_parts_on_a_hand_made_melody():
    env = make()
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(14)  # the tonic on the first step
    assert reward == 6.0  # tonic 3 * 1 / 0.5
    assert info["rewards"]["tonic"] == 6.0 and info["rewards"]["prior"] == 0.0
    assert info["tokens"] == [14] and not terminated and not truncated
    _, reward, *_, info = env.step(21)  # a fifth up from C: interval 0.1, a leap, rho_1 = -0.5
    assert info["rewards"]["preferred_intervals"] == pytest.approx(5 * 0.1 / 0.5)
    assert info["rewards"]["autocorrelation"] == pytest.approx(-3 * 0.5 / 0.5)
    assert reward == pytest.approx(-2.0)
    assert reward == sum(info["rewards"].values())
    assert isinstance(reward, float)


def test_episode_ends_after_length_and_step_after_end_raises():
    env = make(length=4)
    with pytest.raises(ResetNeeded):
        env.unwrapped.step(14)
    env.reset(seed=0)
    ends = [env.step(1)[2] for _ in range(4)]
    assert ends == [False, False, False, True]
    with pytest.raises(ResetNeeded):
        env.unwrapped.step(1)
    env.reset()
    assert env.step(1)[2] is False


@pytest.mark.parametrize("melody", [[], [14], [14, 1], [14, 0], [14, 0, 1], [0, 1, 21, 23, 1, 1]])
def test_log_probs_sum_to_one_and_match_the_naive_computation(prior, melody):
    env = make(prior=prior, primer=[16, 1])
    env.reset(seed=0)
    for token in melody:
        env.step(token)
    log_probs = env.unwrapped.action_log_probs()
    assert log_probs.shape == (38,)
    assert np.exp(log_probs).sum() == pytest.approx(1.0, abs=1e-9)

    # Naive: each token's next frame from the note-state reader, scored one by one from a state
    # advanced through the primer and the melody, renormalised over the distinct frames.
    history = [16, 1, *melody]
    state = prior.initial_state(1)
    frames = tokens_to_note_state(history, prior.lowest_pitch, prior.num_pitches).matrix
    for frame in frames:
        state = prior.advance(state, torch.tensor(frame, dtype=torch.float32)[None])
    candidates, scores = {}, []
    for token in range(38):
        frame = tokens_to_note_state([*history, token], prior.lowest_pitch, prior.num_pitches)
        frame = torch.tensor(frame.matrix[-1], dtype=torch.float32)
        score = float(prior.score_frames(state, frame[None, None])[0, 0])
        candidates.setdefault(frame.numpy().tobytes(), []).append(token)
        scores.append(score)
    normaliser = np.logaddexp.reduce([scores[tokens[0]] for tokens in candidates.values()])
    expected = np.empty(38)
    for tokens in candidates.values():
        expected[tokens] = scores[tokens[0]] - normaliser - np.log(len(tokens))
    np.testing.assert_allclose(log_probs, expected, atol=1e-5)
    sounding = any(t > 1 for t in history) and next(t for t in reversed(history) if t != 1) != 0
    assert (log_probs[0] == log_probs[1]) == (not sounding)


def test_prior_part_is_the_log_prob_of_the_action(prior):
    env = make(prior=prior)
    env.reset(seed=0)
    for token in (14, 1, 0, 1, 23):
        expected = env.unwrapped.action_log_probs()[token]
        *_, info = env.step(token)
        assert info["rewards"]["prior"] == expected


# ------------------------------------------------------------------------- vector environment
def _assert_same(a, b, where=""):
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (tuple, list)) or (isinstance(a, np.ndarray) and a.dtype == object):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        np.testing.assert_array_equal(a, b, err_msg=where)


@pytest.mark.parametrize("autoreset_mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("with_prior", [False, True])
def test_vector_env_matches_sync_vector_env(prior, autoreset_mode, with_prior):
    kwargs = {"length": 6, "primer": "random_note", "prior": prior if with_prior else None}
    num_envs = 4
    batched = MusicCompositionVectorEnv(num_envs, autoreset_mode=autoreset_mode, **kwargs)
    sync = SyncVectorEnv(
        [lambda: MusicCompositionEnv(**kwargs) for _ in range(num_envs)],
        autoreset_mode=autoreset_mode,
    )
    _assert_same(batched.reset(seed=7), sync.reset(seed=7), "reset")
    rng = np.random.default_rng(0)
    for step in range(20):  # several episodes, with autoresets at different steps
        actions = rng.integers(0, 38, num_envs)
        _assert_same(batched.step(actions), sync.step(actions), f"step {step}")
        if step == 8:
            _assert_same(
                batched.reset(options={"key": "G major"}),
                sync.reset(options={"key": "G major"}),
                "reset with options",
            )


def test_make_vec_uses_the_batched_env_with_one_prior_call_per_step(prior):
    calls = []
    score_frames = prior.score_frames

    def counting(state, candidates):
        calls.append(candidates.shape)
        return score_frames(state, candidates)

    prior.score_frames = counting
    try:
        envs = gym.make_vec(
            ENV_ID, num_envs=64, vectorization_mode="vector_entry_point", prior=prior, length=4
        )
        assert isinstance(envs.unwrapped, MusicCompositionVectorEnv)
        assert isinstance(envs.unwrapped, gym.vector.VectorEnv)
        observations, _ = envs.reset(seed=0)
        assert observations.shape == (64, envs.single_observation_space.shape[0])
        calls.clear()
        for _ in range(9):  # two episodes and their autoresets
            observations, rewards, *_ = envs.step(envs.action_space.sample())
        assert calls == [(64, 38, prior.num_pitches, 2)] * 9
        assert observations in envs.observation_space and rewards.dtype == np.float64
    finally:
        del prior.score_frames


# --------------------------------------------------------------------------- compatibility
@pytest.mark.parametrize("with_prior", [False, True])
def test_gymnasium_env_checker(prior, with_prior):
    env = make(prior=prior if with_prior else None, primer="random_note")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


def test_sb3_env_checker(prior):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(make(prior=prior))


def test_sb3_env_checker_on_the_defaults():
    """The env as ``gym.make`` gives it, with the shipped prior melody16c."""
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(gym.make(ENV_ID).unwrapped)


def test_bad_arguments_fail_at_make_in_one_line():
    """What a user types first, ``gym.make``, says what is wrong: not a later ``reset``."""
    for kwargs, message in [
        ({"prior": "nosuch"}, "nosuch: no shipped prior of that name (shipped: "),
        ({"key": "H major"}, "key: key 'H major' does not parse"),
    ]:
        with pytest.raises(MusicgymError) as error:
            gym.make(ENV_ID, **kwargs)
        assert str(error.value).startswith(message) and "\n" not in str(error.value)


def _learns(algorithm: str, env: gym.Env) -> None:
    from sb3_contrib import QRDQN, RecurrentPPO
    from stable_baselines3 import A2C, DQN, PPO

    small = {"net_arch": [16]}
    models = {
        "DQN": lambda: DQN(
            "MlpPolicy",
            env,
            learning_starts=50,
            train_freq=4,
            buffer_size=500,
            policy_kwargs=small,
            seed=0,
        ),
        "QRDQN": lambda: QRDQN(
            "MlpPolicy",
            env,
            learning_starts=50,
            train_freq=4,
            buffer_size=500,
            policy_kwargs={**small, "n_quantiles": 5},
            seed=0,
        ),
        "PPO": lambda: PPO(
            "MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, policy_kwargs=small, seed=0
        ),
        "A2C": lambda: A2C("MlpPolicy", env, n_steps=8, policy_kwargs=small, seed=0),
        "RecurrentPPO": lambda: RecurrentPPO(
            "MlpLstmPolicy",
            env,
            n_steps=64,
            batch_size=32,
            n_epochs=2,
            seed=0,
            policy_kwargs={**small, "lstm_hidden_size": 16},
        ),
    }
    model = models[algorithm]()
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=256)
    after = list(model.policy.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after)), "no parameter changed"
    observation, _ = env.reset(seed=1)
    action, _ = model.predict(observation, deterministic=True)
    assert env.action_space.contains(int(action))


@pytest.mark.parametrize(
    ("algorithm", "with_prior"),
    [("DQN", False), ("QRDQN", False), ("PPO", True), ("A2C", False), ("RecurrentPPO", True)],
)
def test_stable_baselines3_algorithms_learn(prior, algorithm, with_prior):
    _learns(algorithm, make(length=8, prior=prior if with_prior else None))


def test_standard_wrappers():
    from gymnasium.wrappers import FlattenObservation, RecordEpisodeStatistics, TimeLimit

    env = RecordEpisodeStatistics(TimeLimit(FlattenObservation(make(length=8)), 5))
    env.reset(seed=0)
    rewards, truncated, info = [], False, {}
    while not truncated:
        _, reward, terminated, truncated, info = env.step(14)
        rewards.append(reward)
        assert not terminated
    assert len(rewards) == 5
    assert info["episode"]["l"] == 5 and info["episode"]["r"] == pytest.approx(sum(rewards))


def test_pickles_mid_episode(prior):
    env = make(prior=prior, primer="random_note")
    env.reset(seed=3)
    env.step(14)
    clone = pickle.loads(pickle.dumps(env))
    for token in (16, 1, 0, 21):
        a, b = env.step(token), clone.step(token)
        _assert_same(dict(enumerate(a)), dict(enumerate(b)))


def test_reproducible_by_seed(prior):
    def episode(seed):
        env = make(prior=prior, primer="random_note", length=8)
        observation, _ = env.reset(seed=seed)
        actions = np.random.default_rng(seed).integers(0, 38, 8)
        return [observation] + [env.step(int(a))[:2] for a in actions]

    first, again = episode(11), episode(11)
    _assert_same(dict(enumerate(map(str, first))), dict(enumerate(map(str, again))))
    primers = {tuple(make(primer="random_note").reset(seed=s)[0][:38]) for s in range(10)}
    assert len(primers) > 1  # the primer really depends on the seed


def test_observation_fields():
    env = make(length=20, history=3, primer=[5])
    observation, _ = env.reset(seed=0)
    assert observation.shape == (3 * 38 + 17,)
    assert observation[5] == 1 and observation[:114].sum() == 1  # the primer is the last token
    assert observation[114] == 1 and observation[-1] == 0  # bar position 0, no progress
    for token in (14, 16, 18):
        observation, *_ = env.step(token)
    assert observation[18] == observation[38 + 16] == observation[76 + 14] == 1
    assert observation[:114].sum() == 3
    assert observation[114 + 3] == 1 and observation[-1] == pytest.approx(3 / 20)


def test_options_key_and_primer():
    env = make()
    _, info = env.reset(seed=0, options={"key": "G major", "primer": [21, 1]})
    assert info["key"] == "G major"
    *_, info = env.step(21)  # the tonic of G major
    assert info["rewards"]["tonic"] == 6.0
    assert env.unwrapped.tokens == [21]
    _, info = env.reset()
    assert info["key"] == "C major"


def test_render_and_midi(tmp_path):
    env = make(length=4, render_mode="ansi", primer=[14])
    env.reset(seed=0)
    for token in (16, 1, 0, 28):
        env.step(token)
    assert env.render() == "[C4] D4 - . D5"
    env.unwrapped.to_midi(tmp_path / "melody.mid")
    from musicgym.music.midi import read_melody

    assert read_melody(tmp_path / "melody.mid") == [16, 1, 0, 28]
    rgb = make(length=4, render_mode="rgb_array")
    rgb.reset(seed=0)
    shapes = {rgb.render().shape}
    for token in (16, 1, 0, 28):
        rgb.step(token)
        image = rgb.render()
        shapes.add(image.shape)
    assert image.dtype == np.uint8
    assert shapes == {(36 * 4, 4 * 4, 3)}  # one size per episode: RecordVideo, frame stacks


def test_midi_primer(tmp_path):
    env = make(length=4, render_mode="ansi", primer=[14])
    env.reset(seed=0)
    for token in (16, 1, 18, 0):
        env.step(token)
    env.unwrapped.to_midi(tmp_path / "primer.mid")
    primed = make(primer=tmp_path / "primer.mid", history=4)
    observation, _ = primed.reset(seed=0)
    recent = [int(np.argmax(observation[38 * j : 38 * j + 38])) for j in range(4)]
    assert recent == [0, 18, 1, 16]  # most recent first: the primer [16, 1, 18, 0]


def test_registration_is_idempotent_and_make_works_without_importing_musicgym():
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(musicgym)
    code = (
        "import gymnasium as gym\n"
        "env = gym.make('musicgym:MusicComposition-v0', prior=None)\n"
        "env.reset(seed=0)\n"
        "print(env.step(14)[1])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "6.0"


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("action", [38, -1, 1.5, True, "3", np.array([1, 2]), None])
def test_bad_actions(action):
    env = make()
    env.reset(seed=0)
    with pytest.raises(EnvArgumentError, match="action"):
        env.unwrapped.step(action)


def test_vector_bad_actions():
    envs = MusicCompositionVectorEnv(2, prior=None)
    envs.reset(seed=0)
    with pytest.raises(EnvArgumentError, match=r"actions\[1\]"):
        envs.step(np.array([1, 40]))
    with pytest.raises(EnvArgumentError, match="actions: expected shape"):
        envs.step(np.array([1, 2, 3]))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"key": "H major"}, EnvArgumentError, "key: key 'H major' does not parse"),
        (
            {"key": "C major, A minor"},
            EnvArgumentError,
            "^key: MusicComposition-v0 composes in one",
        ),
        ({"rules": "jaques2018"}, RuleError, "unknown rule 'jaques2018'.*presets: jaques2017"),
        ({"prior": TablePrior(lowest_pitch=50)}, EnvArgumentError, "prior: its pitch range 50"),
        ({"prior": TablePrior(num_pitches=40)}, EnvArgumentError, r"prior: .*36\.\.75"),
        ({"prior": 3}, EnvArgumentError, "prior: expected"),
        ({"prior": "nosuch"}, CheckpointError, "nosuch: no shipped prior of that name"),
        ({"prior": "missing/melody.pt"}, CheckpointError, "melody.pt: no such checkpoint file"),
        ({"primer": [14, 38]}, EnvArgumentError, "primer: token 1 is 38"),
        ({"primer": [14, 2.5]}, EnvArgumentError, "primer: token 1"),
        ({"primer": "missing.mid"}, EnvArgumentError, "primer: 'missing.mid' is neither"),
        ({"primer": 7}, EnvArgumentError, "primer: expected"),
        ({"length": 0}, EnvArgumentError, "length"),
        ({"c": 0}, EnvArgumentError, "c: expected"),
        ({"render_mode": "video"}, EnvArgumentError, "render_mode"),
        ({"threads": 0}, EnvArgumentError, r"^threads: expected a thread count 1\.\."),
        ({"threads": -1}, EnvArgumentError, "^threads: "),
        ({"threads": 10_000}, EnvArgumentError, "^threads: "),
        ({"threads": 1.0}, EnvArgumentError, "^threads: "),
        ({"threads": True}, EnvArgumentError, "^threads: "),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        MusicCompositionEnv(**{"prior": None, **kwargs})
    with pytest.raises(error, match=message):
        MusicCompositionVectorEnv(2, **{"prior": None, **kwargs})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"primer": [99]}, r"options\['primer'\]: token 0 is 99"),
        ({"key": "Q"}, r"options\['key'\]"),
        ({"tempo": 3}, "unknown reset option"),
    ],
)
def test_bad_reset_options(options, message):
    with pytest.raises(EnvArgumentError, match=message):
        make().reset(seed=0, options=options)


@pytest.mark.parametrize("vector", [False, True])
@pytest.mark.parametrize(("threads", "inside"), [(1, 1), (None, 2)])
def test_prior_calls_run_on_the_envs_threads_and_leave_the_callers(prior, vector, threads, inside):
    """``threads=1`` (the default): the prior's calls see one torch thread, and the caller's own
    count is back after every reset and step; ``None`` leaves torch alone."""
    seen = []

    class Counting(TablePrior):
        def action_log_probs(self, *args):
            seen.append(torch.get_num_threads())
            return super().action_log_probs(*args)

    kwargs = {"prior": Counting(), **({} if threads == 1 else {"threads": threads})}
    torch.set_num_threads(2)  # the caller's; the autouse fixture restores its own after
    env = MusicCompositionVectorEnv(2, **kwargs) if vector else MusicCompositionEnv(**kwargs)
    env.reset(seed=0)
    assert torch.get_num_threads() == 2
    env.step(np.array([14, 1]) if vector else 14)
    assert torch.get_num_threads() == 2
    assert seen == [inside, inside]


def test_with_a_real_biaxial_lstm():
    """The env on the real prior class (tiny, random weights): log-probabilities sum to 1 and the
    batched vector env agrees with SyncVectorEnv (to the LSTM's batch-size rounding)."""
    from musicgym.priors.model import BiaxialConfig, BiaxialLSTM

    torch.manual_seed(0)
    model = BiaxialLSTM(BiaxialConfig(time_sizes=(8,), note_sizes=(8,))).eval()
    model.requires_grad_(False)
    kwargs = {"prior": model, "length": 6, "primer": "random_note"}
    env = MusicCompositionEnv(**kwargs)
    env.reset(seed=0)
    for token in (14, 1, 0, 1, 20):
        env.step(token)
        assert np.exp(env.action_log_probs()).sum() == pytest.approx(1.0, abs=1e-9)
    batched = MusicCompositionVectorEnv(4, **kwargs)
    sync = SyncVectorEnv([lambda: MusicCompositionEnv(**kwargs) for _ in range(4)])
    np.testing.assert_array_equal(batched.reset(seed=1)[0], sync.reset(seed=1)[0])
    rng = np.random.default_rng(0)
    for _ in range(14):
        actions = rng.integers(0, 38, 4)
        (obs_b, rew_b, term_b, *_), (obs_s, rew_s, term_s, *_) = (
            batched.step(actions),
            sync.step(actions),
        )
        np.testing.assert_array_equal(obs_b, obs_s)
        np.testing.assert_array_equal(term_b, term_s)
        np.testing.assert_allclose(rew_b, rew_s, rtol=0, atol=1e-5)


def key_normalised_prior() -> object:
    from musicgym.priors.model import BiaxialConfig, BiaxialLSTM

    torch.manual_seed(0)
    config = BiaxialConfig(
        lowest_pitch=42,
        num_pitches=48,
        time_sizes=(8,),
        note_sizes=(8,),
        vicinity=4,
        key_normalised=True,
    )
    return BiaxialLSTM(config).eval().requires_grad_(False)


def test_key_normalised_prior_scores_a_melody_in_d_as_the_same_melody_in_c():
    """The env transposes into C before a key-normalised prior scores: log p of a melody in the
    D major env equals that of the same melody moved down two semitones in the C major env, up to
    the normaliser: the 36 pitch tokens are MIDI 48..83 in every key, so in D the candidates are
    the prior's 46..81 (moved into C) and in C its 48..83; the two edge pitches' mass differs."""
    prior = key_normalised_prior()
    in_d = [16, 1, 18, 20, 0, 21, 1, 23, 25, 23, 1, 20, 16, 1, 1, 0]  # D4 E4 F#4 G4 A4 ...
    in_c = [t - 2 if t >= 2 else t for t in in_d]

    def log_probs(key: str, melody: list[int]) -> list[float]:
        env = gym.make("MusicComposition-v0", prior=prior, rules=None, key=key, length=16)
        env.reset(seed=0)
        return [env.step(t)[1] for t in melody]

    reference = np.array(log_probs("C major", in_c))
    transposed = np.abs(np.array(log_probs("D major", in_d)) - reference).max()
    untransposed = np.abs(np.array(log_probs("C major", in_d)) - reference).max()
    assert transposed < 1e-3 and transposed < untransposed / 20, (transposed, untransposed)
    vector = gym.make_vec(
        "MusicComposition-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        prior=prior,
        rules=None,
        key="D major",
        length=16,
    )
    vector.reset(seed=0)
    rewards = [vector.step(np.array([t, t]))[1][0] for t in in_d]
    np.testing.assert_allclose(rewards, log_probs("D major", in_d), atol=1e-6)


def test_prior_axis_too_narrow_for_the_transposed_melody_is_one_line():
    from musicgym.priors.model import BiaxialConfig, BiaxialLSTM

    narrow = BiaxialLSTM(BiaxialConfig(lowest_pitch=48, num_pitches=36, key_normalised=True))
    env = gym.make("MusicComposition-v0", prior=narrow, key="D major")
    with pytest.raises(EnvArgumentError, match="moved by -2 semitones into C for D major"):
        env.reset(seed=0)
    env.reset(seed=0, options={"key": "C major"})  # C needs no move
