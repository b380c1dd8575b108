"""The Note RNN as the proof of the prior protocol: its tokens, its likelihood against its
incremental scores, training by ``--model note-rnn``, and the env and the RL Tuner on it."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import musicgym  # noqa: F401  (registers the environment)
from musicgym.agents.rl_tuner import RLTuner, RLTunerConfig
from musicgym.agents.rl_tuner import train as train_rl_tuner
from musicgym.envs.stepper import TokenStepper, melody_log_probs
from musicgym.errors import CheckpointError
from musicgym.music.tokens import canonical_tokens, tokens_to_note_state
from musicgym.prior import MelodyPrior, resolve_prior
from musicgym.priors.note_rnn import NoteRNN, NoteRNNConfig, melody_tokens
from musicgym.priors.registry import read_checkpoint, save_checkpoint
from musicgym.priors.train import TrainConfig, train
from tests.fake_prior import TablePrior


def tiny_note_rnn(seed: int = 0, **overrides) -> NoteRNN:
    torch.manual_seed(seed)
    config = NoteRNNConfig(**{"time_sizes": (12,), "dropout": 0.0, **overrides})
    return NoteRNN(config).eval().requires_grad_(False)


def random_tokens(count: int, length: int, seed: int = 0) -> list[list[int]]:
    return np.random.default_rng(seed).integers(0, 38, (count, length)).tolist()


def test_it_is_a_melody_prior_of_exactly_the_38_tokens_by_default():
    model = tiny_note_rnn()
    assert isinstance(model, MelodyPrior)
    assert model.config.vocabulary == 38 and model.summary_shape == (1, 12)


@pytest.mark.parametrize("seed", range(4))
def test_top_voice_tokens_of_a_melody_are_its_canonical_tokens(seed):
    tokens = random_tokens(1, 40, seed)[0]
    note_state = tokens_to_note_state(tokens, 48, 36)
    got = melody_tokens(torch.from_numpy(note_state.matrix)[None])[0]
    assert got.tolist() == canonical_tokens(tokens)


def test_log_likelihood_is_the_steppers_log_p_of_each_token():
    """Training's teacher-forced log-likelihood of a melody equals the sum of the incremental
    log p(a|s) the env rewards (the vocabulary is the 38 tokens: no renormalisation)."""
    model = tiny_note_rnn()
    melodies = [canonical_tokens(m) for m in random_tokens(3, 24, seed=5)]
    note_states = np.stack([tokens_to_note_state(m, 48, 36).matrix for m in melodies])
    teacher = model.log_likelihood(torch.from_numpy(note_states))
    incremental = melody_log_probs(model, melodies)
    torch.testing.assert_close(incremental, teacher.double(), atol=1e-5, rtol=0)


def test_action_log_probs_sum_to_one_in_any_key_of_a_wider_axis():
    model = tiny_note_rnn(lowest_pitch=42, num_pitches=48, key_normalised=True)
    for key in ("C major", "D major", "F# minor"):
        stepper = TokenStepper(model, 2, key)
        stepper.play(torch.tensor([14, 30]))
        total = stepper.action_log_probs().exp().sum(1)
        torch.testing.assert_close(total, torch.ones(2, dtype=torch.float64))


def test_a_key_normalised_note_rnn_reads_a_melody_in_d_as_the_same_melody_in_c():
    model = tiny_note_rnn(lowest_pitch=42, num_pitches=48, key_normalised=True)
    in_c, in_d = TokenStepper(model, 1, "C major"), TokenStepper(model, 1, "D major")
    for token in (14, 1, 18, 0, 21):  # D major's pitches are C major's two semitones higher
        in_c.play(torch.tensor([token]))
        in_d.play(torch.tensor([token + 2 if token >= 2 else token]))
    torch.testing.assert_close(in_c.summary(), in_d.summary(), rtol=0, atol=0)


def test_env_checkers_pass_on_a_note_rnn_checkpoint(tmp_path):
    path = tmp_path / "note_rnn.pt"
    save_checkpoint(path, tiny_note_rnn())
    assert isinstance(resolve_prior(path), NoteRNN)
    env = gym.make("MusicComposition-v0", prior=str(path))
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    log_probs = env.unwrapped.action_log_probs()
    *_, info = env.step(5)
    assert info["rewards"]["prior"] == pytest.approx(log_probs[5])


def test_prior_train_trains_a_note_rnn_and_ships_it(tmp_path):
    folder = tmp_path / "melodies"
    folder.mkdir()
    from musicgym.music.midi import write_melody

    rng = np.random.default_rng(0)
    scale = [14, 16, 18, 19, 21, 23, 25, 26]  # C major from C4
    for i in range(12):
        melody = [scale[j % 8] if j % 2 == 0 else 1 for j in rng.integers(0, 8, 64)]
        write_melody(melody, folder / f"tune_{i:02d}.mid")
    config = TrainConfig(
        model="note-rnn",
        data=str(folder),
        run_dir=str(tmp_path / "run"),
        out=str(tmp_path / "nr.pt"),
        lowest_pitch=48,
        num_pitches=36,
        time_sizes=(16,),
        learning_rate=1e-2,
        batch_size=4,
        segment_bars=2,
        max_transpose=0,
        valid_every=10,
        max_steps=30,
        threads=1,
        progress=False,
    )
    summary = train(config)
    history = read_checkpoint(tmp_path / "run" / "last.pt")["history"]
    assert history[-1][3] > history[0][3]  # valid log-likelihood went up
    shipped = read_checkpoint(tmp_path / "nr.pt")
    assert shipped["model"] == "note-rnn" and shipped["config"]["time_sizes"] == (16,)
    assert summary["test_log_likelihood_per_step"] > -np.log(38)  # better than uniform


def test_rl_tuner_trains_composes_and_resumes_on_a_note_rnn(tmp_path):
    prior_path = tmp_path / "nr.pt"
    save_checkpoint(prior_path, tiny_note_rnn())
    settings = {
        "prior": str(prior_path),
        "num_envs": 4,
        "learning_starts": 32,
        "buffer_size": 512,
        "eval_interval": 10**6,
        "checkpoint_interval": 10**6,
        "exploration": "boltzmann",  # no epsilon schedule, which --steps stretches on resume
    }
    straight = train_rl_tuner(RLTunerConfig(steps=256, **settings), tmp_path / "a", progress=False)
    train_rl_tuner(RLTunerConfig(steps=128, **settings), tmp_path / "b", progress=False)
    resumed = train_rl_tuner(
        RLTunerConfig(steps=256, **settings), tmp_path / "b", resume=True, progress=False
    )
    for name, weight in straight.q_network.state_dict().items():
        torch.testing.assert_close(resumed.q_network.state_dict()[name], weight, rtol=0, atol=0)
    loaded, _ = RLTuner.load(tmp_path / "a")
    assert isinstance(loaded.prior, NoteRNN)
    assert loaded.compose(4, seed=3) == straight.compose(4, seed=3)


def test_an_agent_that_needs_what_the_prior_lacks_says_so_in_one_line():
    with pytest.raises(CheckpointError, match="TablePrior has no readout_parameters") as error:
        RLTuner(RLTunerConfig(train_readout=True), TablePrior(lowest_pitch=40, num_pitches=50))
    assert "\n" not in str(error.value)


def test_a_checkpoint_no_loader_knows_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "gpt.pt"
    torch.save({"model": "nanogpt", "config": {}, "state_dict": {}}, path)
    result = subprocess.run(
        [sys.executable, "-m", "musicgym.cli", "agent", "train", "--algo", "rltuner-q",
         "--prior", str(path), "--steps", "64", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "gpt.pt: model 'nanogpt', which no installed prior loader knows" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_shipped_note_rnn_samples_one_line_and_composes_in_any_key(tmp_path, capsys):
    from musicgym import agents
    from musicgym.cli import main
    from musicgym.prior import resolve_prior as load_prior

    model = load_prior("note_rnn")
    assert isinstance(model, NoteRNN) and model.key_normalised
    piece = model.sample(64, seed=0)
    assert piece.play.sum(axis=1).max() <= 1 and piece.articulate.sum() >= 4  # a melody
    for key in ("C major", "E minor"):
        melodies = agents.PriorAgent("note_rnn", length=16, key=key).compose(4, seed=0)
        assert np.shape(melodies) == (4, 16)
    out = tmp_path / "nr.mid"
    assert (
        main(["prior", "sample", "--checkpoint", "note_rnn", "--steps", "32", "--out", str(out)])
        == 0
    )
    assert out.is_file()
    args = ["prior", "sample", "--checkpoint", "note_rnn", "--out", str(out), "--avoid-silence"]
    assert main(args) == 2
    assert "--avoid-silence: the Bi-axial LSTM's option" in capsys.readouterr().err
