"""Agents on ChoraleComposition-v0: the RL Tuner's network, masked targets and exploration, its
replay, every chorale algorithm's train / compose cycle, MaskablePPO, and the CLI."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from musicgym import agents
from musicgym.agents.chorale_tuner import (
    ChoraleQNetwork,
    ChoraleReplay,
    ChoraleStates,
    ChoraleTuner,
)
from musicgym.agents.common import read_agent_info
from musicgym.agents.rl_tuner import RLTunerConfig, explore, td_target
from musicgym.agents.rl_tuner import train as train_rl_tuner
from musicgym.envs.decisions import DecisionStepper, end_action
from musicgym.errors import RunFolderError
from musicgym.music.notestate import NoteState
from musicgym.priors.model import BiaxialConfig, BiaxialLSTM
from musicgym.priors.registry import save_checkpoint

CHORALES = "ChoraleComposition-v0"
SMALL = {
    "env": CHORALES,
    "bars": 1,
    "num_envs": 4,
    "learning_starts": 16,
    "buffer_size": 400,
    "batch_size": 8,
    "head_size": 16,
    "eval_interval": 10**6,
    "checkpoint_interval": 10**6,
}


@pytest.fixture(scope="module")
def prior() -> BiaxialLSTM:
    torch.manual_seed(1)
    config = BiaxialConfig(time_sizes=(12,), note_sizes=(8,), vicinity=4, dropout=0.0)
    return BiaxialLSTM(config).eval().requires_grad_(False)


def states_of(stepper: DecisionStepper, position: int = 0) -> ChoraleStates:
    return ChoraleStates(
        summary=stepper.summary(),
        log_probs=stepper.action_log_probs().float(),
        decided=torch.from_numpy(stepper.frame).float(),
        next_pitch=torch.from_numpy(stepper.next_pitch.copy()),
        position=torch.full((stepper.batch_size,), position),
    )


# ----------------------------------------------------------------------- network, targets
@pytest.mark.parametrize("algo", ["q", "psi"])
def test_network_starts_as_the_priors_note_axis(prior, algo):
    config = RLTunerConfig(algo=algo, **SMALL)
    tuner = ChoraleTuner(config, prior)
    stepper = DecisionStepper(prior.num_pitches, 2, prior)
    stepper.decide(np.array([10, 30]), np.ones(2, bool))  # pitches 10 and 30 struck
    states = states_of(stepper)
    logits = tuner.act_logits(states)
    assert torch.equal(torch.isfinite(logits), states.mask)
    assert torch.allclose(logits[states.mask], states.log_probs[states.mask])
    assert not states.mask[0, :11].any() and states.mask[1, 31:48].all()


def test_network_reads_the_decided_notes_and_the_bar_position(prior):
    network = ChoraleQNetwork(prior, RLTunerConfig(**SMALL))
    stepper = DecisionStepper(prior.num_pitches, 1, prior)
    features = network.features(states_of(stepper, position=5))
    N = prior.num_pitches
    extra = features[0, -(2 * N + N + 1 + 16) :]
    assert extra[2 * N] == 1.0  # the open pitch is the lowest
    assert extra[-16 + 5] == 1.0 and extra[-16:].sum() == 1.0


def test_masked_targets_against_hand_computed_values():
    values = torch.tensor([[1.0, 5.0, 2.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, False, True], [True, True, False]])
    rewards, dones = torch.tensor([1.0, 0.0]), torch.tensor([False, True])
    gamma = torch.tensor([0.5, 1.0])
    q = td_target("q", rewards, dones, gamma, values, next_mask=mask)
    assert q.tolist() == pytest.approx([1.0 + 0.5 * 2.0, 0.0])  # 5.0 is masked out
    psi = td_target("psi", rewards, torch.tensor([False, False]), 1.0, values, next_mask=mask)
    assert psi.tolist() == pytest.approx([1.0 + math.log(math.e + math.e**2), math.log(2.0)])


def test_exploration_takes_only_valid_actions():
    config = RLTunerConfig(**SMALL)
    rng = np.random.default_rng(0)
    mask = torch.zeros(64, 97, dtype=torch.bool)
    mask[:, 40:48] = mask[:, 96] = True
    logits = torch.randn(64, 97)
    actions = explore(logits, 1.0, rng, config, mask)  # all exploring
    assert mask[torch.arange(64), torch.from_numpy(actions)].all()
    greedy = explore(logits, 0.0, rng, config, mask)
    expected = logits.masked_fill(~mask, -math.inf).argmax(1).numpy()
    assert np.array_equal(greedy, expected)


# ---------------------------------------------------------------------------------- replay
def test_replay_keeps_transitions_and_drops_those_whose_frame_is_gone():
    replay = ChoraleReplay(8, (3, 2), 4)  # 2 frame summaries kept
    first = replay.add_frame(torch.ones(3, 2))
    decided = np.zeros((1, 4, 2), np.uint8)
    decided[0, 1] = (1, 1)
    record = ChoraleReplay.record([first], decided, [2], [5], np.zeros((1, 9)))
    replay.add(record, np.array([3]), np.array([-1.0]), np.array([False]), record)
    states = replay.states(np.array([0]), "state", torch.device("cpu"))
    assert torch.equal(states.decided[0], torch.from_numpy(decided[0]).float())
    assert states.next_pitch.item() == 2 and states.position.item() == 5
    assert torch.equal(states.summary[0].float(), torch.ones(3, 2))
    assert replay.valid(np.array([0])).all()
    replay.add_frame(torch.zeros(3, 2))
    replay.add_frame(torch.zeros(3, 2))  # the first frame is overwritten
    assert not replay.valid(np.array([0])).any()


# ------------------------------------------------------------------------------ algorithms
@pytest.mark.parametrize("algo", ["q", "psi", "g"])
def test_rl_tuner_trains_and_composes_chorales(prior, algo, tmp_path):
    config = RLTunerConfig(algo=algo, steps=200, **SMALL)
    tuner = train_rl_tuner(config, tmp_path, prior=prior, progress=False)
    assert tuner.updates == (200 - 16) // 4 + 1 or tuner.updates > 0
    assert read_agent_info(tmp_path)["trained_steps"] >= 200
    agent = agents.load(tmp_path)
    chorales = agent.compose(3, seed=5)
    assert all(isinstance(c, NoteState) and c.num_steps == 16 for c in chorales)
    again = agent.compose(3, seed=5)
    assert all(a == b for a, b in zip(chorales, again))  # the seed decides
    assert agents.load(tmp_path / "agent.pt").compose(3, seed=5)[2] == chorales[2]
    with pytest.raises(RunFolderError, match="--resume is not supported"):
        train_rl_tuner(config, tmp_path, resume=True, progress=False)


@pytest.mark.parametrize(
    ("algo", "hyperparameters"),
    [
        ("maskableppo", {"n_steps": 32, "batch_size": 32, "n_epochs": 1}),
        ("dqn", {"learning_starts": 32, "buffer_size": 500}),
    ],
)
def test_sb3_baselines_train_and_compose_chorales(prior, algo, hyperparameters, tmp_path):
    from musicgym.agents.baselines import SB3Config
    from musicgym.agents.baselines import train as train_sb3

    config = SB3Config(
        algo=algo,
        env=CHORALES,
        bars=1,
        steps=128,
        num_envs=2,
        eval_interval=64,
        eval_episodes=1,
        hyperparameters=json.dumps(hyperparameters),
    )
    train_sb3(config, tmp_path, prior=prior, progress=False)
    chorales = agents.load(tmp_path).compose(2, seed=0)
    assert [c.num_steps for c in chorales] == [16, 16]


def test_maskable_ppo_learns_on_the_env(prior):
    from sb3_contrib import MaskablePPO

    env = gym.make(CHORALES, prior=prior, bars=1)
    model = MaskablePPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0)
    model.learn(128)
    assert model.num_timesteps >= 128


def test_reference_agents_compose_chorales(prior, tmp_path):
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, prior)
    sampled = agents.load(f"prior:{path}", env=CHORALES, bars=1).compose(2, seed=3)
    assert all(c.num_steps == 16 for c in sampled)
    randoms = agents.load("random", env=CHORALES, bars=1).compose(2, seed=3)
    assert all(c.num_steps == 16 for c in randoms) and randoms[0] != randoms[1]


def test_cli_train_and_compose_chorales(prior, tmp_path, capsys):
    from musicgym.cli import main

    prior_path = tmp_path / "tiny.pt"
    save_checkpoint(prior_path, prior)
    run = tmp_path / "run"
    arguments = ["agent", "train", "--algo", "rltuner-q", "--env", CHORALES, "--steps", "64"]
    small = ["--bars", "1", "--num-envs", "4", "--learning-starts", "32", "--no-progress"]
    assert main([*arguments, "--out", str(run), "--prior", str(prior_path), *small]) == 0
    out = tmp_path / "out"
    assert main(["agent", "compose", "--agent", str(run), "--n", "2", "--out", str(out)]) == 0
    assert len(list(out.glob("chorale_*.mid"))) == 2
    assert "parallel fifths" in capsys.readouterr().out
    assert main([*arguments, "--out", str(run), "--env", "Nope-v0"]) == 2
    assert end_action(prior.num_pitches) == 96
