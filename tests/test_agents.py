"""Agents: the action scorer against the environment, the RL Tuner's targets and network, every
algorithm's train / checkpoint / resume / compose cycle, the CLI, and a real learning signal."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from musicgym import agents
from musicgym.agents.common import read_agent_info
from musicgym.agents.rl_tuner import RLTuner, RLTunerConfig, td_target
from musicgym.agents.rl_tuner import train as train_rl_tuner
from musicgym.agents.rl_tuner.loop import check_replay_memory
from musicgym.agents.rl_tuner.melody import MelodyPart, MelodyReplay, MelodyStates, recent_tokens
from musicgym.agents.rl_tuner.network import soft_update
from musicgym.agents.rl_tuner.targets import clip_gradients, make_optimizer
from musicgym.envs.stepper import melody_log_probs, melody_summaries, sounding_before
from musicgym.errors import CheckpointError, EnvArgumentError
from musicgym.music.keys import Key
from musicgym.music.melody import action_outcomes, in_key_tokens
from musicgym.prior_frames import token_frames
from musicgym.priors.model import BiaxialConfig, BiaxialLSTM
from musicgym.priors.registry import save_checkpoint


def tiny_prior(seed: int = 0, note_sizes: tuple[int, ...] = (8, 6)) -> BiaxialLSTM:
    """A random Bi-axial LSTM over MIDI 46..85 (covering the melody tokens' 48..83)."""
    torch.manual_seed(seed)
    config = BiaxialConfig(
        lowest_pitch=46, num_pitches=40, time_sizes=(8,), note_sizes=note_sizes, vicinity=4
    )
    return BiaxialLSTM(config).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def prior() -> BiaxialLSTM:
    return tiny_prior()


def random_melodies(count: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 38, (count, length)))


# ------------------------------------------------------------------------- the action scorer
def test_scorer_matches_the_environment_step_by_step(prior):
    """Candidate frames and log p(a|s) equal the env's at every step of random melodies."""
    env = gym.make("MusicComposition-v0", prior=prior, rules=None).unwrapped
    melodies = random_melodies(3, 20)
    melodies[0, :6] = torch.tensor([14, 1, 1, 0, 1, 0])  # holds, rests, NOTE_OFF while silent
    no_shift = torch.zeros(1, dtype=torch.long)
    for melody in melodies:
        env.reset(seed=0)
        time_out = melody_summaries(prior, melody[None])[0]  # (T + 1, N, H)
        sounding = sounding_before(melody[None])[0]
        for t, token in enumerate(melody.tolist()):
            ours = prior.summary_log_probs(time_out[t : t + 1], sounding[t : t + 1], no_shift)[0]
            np.testing.assert_allclose(ours.numpy(), env.action_log_probs(), atol=2e-5)
            _, reward, *_ = env.step(token)
            assert reward == pytest.approx(float(ours[token]), abs=2e-5)


def test_log_probs_are_differentiable_and_sum_to_one(prior):
    time_out = melody_summaries(prior, random_melodies(4, 3))[:, -1].requires_grad_()
    sounding, transpose = torch.tensor([-1, 5, -1, 30]), torch.zeros(4, dtype=torch.long)
    log_probs = prior.summary_log_probs(time_out, sounding, transpose)
    torch.testing.assert_close(log_probs.exp().sum(1), torch.ones(4, dtype=torch.float64))
    log_probs[:, 7].sum().backward()
    assert time_out.grad is not None and time_out.grad.abs().sum() > 0


def test_melody_summaries_are_the_frames_advanced_one_by_one(prior):
    melodies = random_melodies(4, 12, seed=2)
    melodies[1, 8:] = -1  # padding, as in the replay memory
    outputs = melody_summaries(prior, melodies)
    state, sounding = prior.initial_state(4), sounding_before(melodies)
    for t in range(8):
        torch.testing.assert_close(outputs[:, t], state.time_out)
        frames = token_frames(melodies[:, t], sounding[:, t], prior.lowest_pitch, 40)
        state = prior.advance(state, frames)


def test_melody_log_probs_are_the_environments_prior_rewards(prior):
    melody = random_melodies(1, 32, seed=3)[0].tolist()
    ours = melody_log_probs(prior, [melody])[0]
    env = gym.make("MusicComposition-v0", prior=prior, rules=None)
    env.reset(seed=0)
    np.testing.assert_allclose(ours, [env.step(t)[1] for t in melody], atol=2e-5)


def test_melody_log_probs_in_chunks_are_the_same(prior):
    melodies = random_melodies(5, 32, seed=4).tolist()
    whole = melody_log_probs(prior, melodies)
    torch.testing.assert_close(melody_log_probs(prior, melodies, chunk=7), whole)


# ------------------------------------------------------------------------------- the RL Tuner
@pytest.mark.parametrize("algo", ["q", "psi", "g"])
def test_greedy_action_is_the_priors_argmax_before_training(prior, algo):
    agent = RLTuner(RLTunerConfig(algo=algo), prior)
    greedy = agent.compose(8, greedy=True)
    assert greedy == agents.PriorAgent(prior).compose(8, greedy=True)
    envs = agent.make_envs(8)
    observations, _ = envs.reset(seed=0)
    for t in range(10):  # and on sampled melodies, state by state
        logits, _ = agent.act_logits(observations)
        log_probs = torch.from_numpy(observations["prior_log_probs"])
        assert torch.equal(logits.argmax(1), log_probs.argmax(1))
        observations, *_ = envs.step(random_melodies(8, 10, seed=4)[:, t].numpy())


def observed(agent: RLTuner, melody: list[int]) -> dict[str, np.ndarray]:
    """The ``"prior"`` observation (a batch of one) after ``melody``, as the agent sees it."""
    envs = agent.make_envs(1)
    observations, _ = envs.reset(seed=0)
    for token in melody:
        observations, *_ = envs.step(np.array([token]))
    return observations


def one_state(agent: RLTuner, melody: list[int]):
    return agent.part.observed_states(observed(agent, melody), agent.device)


def test_q_network_starts_as_the_prior_and_values_leave_log_probabilities(prior):
    agent = RLTuner(RLTunerConfig(), prior)
    states = one_state(agent, [14, 1, 16])
    torch.testing.assert_close(agent.q_network(states), states.log_probs)
    with torch.no_grad():
        agent.q_network.head[-1].bias += 50.0
    assert (agent.q_network(states) > 0).all()  # log-probabilities never are


@pytest.mark.parametrize("algo", ["q", "g"])
def test_fitting_one_state_action_target_changes_the_greedy_action(prior, algo):
    """The head can raise one action of one state on its own: a target 6 above the best value,
    fitted with MSE, makes that action the greedy one within a few dozen Adam steps (a head whose
    values are renormalised log-probabilities with a shared scale cannot)."""
    agent = RLTuner(RLTunerConfig(algo=algo), prior)
    observations = observed(agent, [])
    states = agent.part.observed_states(observations, agent.device)
    network = agent.q_network
    logits = agent.act_logits(observations)[0][0]
    action = int(logits.argmin())
    target = logits.max() + 6.0
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    steps = 0
    while int(agent.act_logits(observations)[0][0].argmax()) != action and steps < 40:
        value = network(states)[0, action]
        if algo == "g":
            value = value + states.log_probs[0, action]
        optimizer.zero_grad()
        ((value - target) ** 2).backward()
        optimizer.step()
        steps += 1
    assert int(agent.act_logits(observations)[0][0].argmax()) == action, steps
    other = observed(agent, [20, 1, 1, 5, 9])  # another state keeps most of its order
    assert int(agent.act_logits(other)[0][0].argmax()) != action or algo == "g"


def test_rule_outcomes_read_alike_acting_and_learning(prior, tmp_path):
    """With ``rule_features``, each state's rule outcomes are those of its whole composition
    (the primer left out), whether decoded from the observation or read from the replay (judged
    when stored, the newest states included, in rows the memory went round); the weights start
    at 0 (the prior) and learn at their own rate."""
    config = RLTunerConfig(
        rule_features=True, primer="random_note", length=16, rule_learning_rate=0.2
    )
    agent = RLTuner(config, prior)
    episodes = agent.play(3, seed=5, record=True)
    for i, piece in enumerate(episodes.pieces):
        observed_outcomes = episodes.states.outcomes[episodes.episode == i]
        expected = [action_outcomes(piece[:t], Key.parse("C major")) for t in range(16)]
        assert torch.equal(observed_outcomes, torch.tensor(expected).float())
    assert episodes.states.outcomes[:, :, 1].any()  # a doubled leap was on offer somewhere
    small = {"num_envs": 3, "buffer_size": 64, "steps": 64}
    _, run = run_with_replay(dataclasses.replace(config, **small), prior, tmp_path, 45)
    replay = run.replay
    assert replay.next_row == 1 and replay.filled.tolist() == [11, 16, 11, 11]  # gone round
    for row in range(replay.rows):
        steps = np.arange(min(replay.filled[row] + 1, 16))
        stored = replay.states(np.full(len(steps), row), steps, agent.device).outcomes
        piece = replay.tokens[row].tolist()
        expected = [action_outcomes(piece[:t], Key.parse("C major")) for t in steps]
        assert torch.equal(stored, torch.tensor(expected).float()), row
    states = one_state(agent, [14, 1, 16])
    torch.testing.assert_close(agent.q_network(states), states.log_probs)
    groups = make_optimizer(config, agent.q_network).param_groups
    assert [group["lr"] for group in groups] == [config.learning_rate, 0.2]
    assert groups[1]["params"] == [agent.q_network.rule_weights]


def test_recent_tokens_pad_before_the_start():
    tokens = np.array([[5, 6, 7, 8, -1], [9, 10, -1, -1, -1], [9, 10, -1, -1, -1]])
    primers = np.array([-1, -1, 20])
    got = recent_tokens(tokens, primers, np.array([3, 0, 1]), 3)
    assert got.tolist() == [[5, 6, 7], [-1, -1, -1], [-1, 20, 9]]  # the primer before step 0


def test_melody_replay_draws_what_rng_choice_draws(prior):
    """The replay draws its rows as ``rng.choice(rows, p=filled / filled.sum())`` would, from
    the same generator (earlier runs reproduce), and each side's states of a transition are
    those :meth:`states` gives."""
    replay = MelodyReplay(16 * 50, 16, prior.summary_shape, 4, 3, 0.5, "C major")
    replay.filled[:] = np.random.default_rng(0).integers(1, 17, replay.rows)
    replay.rewards[:] = np.arange(replay.rewards.size).reshape(replay.rewards.shape)
    replay.tokens[:] = np.arange(replay.tokens.size).reshape(replay.tokens.shape) % 38
    drawing, expected = np.random.default_rng(1), np.random.default_rng(1)
    for _ in range(5):
        batch = replay.sample(32, drawing, torch.device("cpu"))
        p = replay.filled / replay.filled.sum()
        rows = expected.choice(replay.rows, 32, p=p)
        steps = (expected.random(32) * replay.filled[rows]).astype(np.int64)
        assert batch.rewards.tolist() == replay.rewards[rows, steps].tolist()
        for states, after in ((batch.states, steps), (batch.next_states, steps + 1)):
            alone = replay.states(rows, after, torch.device("cpu"))
            assert torch.equal(states.context, alone.context)
            assert torch.equal(states.step, alone.step)
    assert drawing.random() == expected.random()


def test_melody_features_are_one_hots_of_the_step_and_recent_tokens(prior):
    part = MelodyPart(prior, RLTunerConfig(length=8, context=3))
    context = torch.tensor([[-1, -1, 5], [0, 37, 2]])
    states = MelodyStates(None, None, context=context, step=torch.tensor([0, 8]))  # type: ignore
    features = part.extra_features(states)
    expected = torch.zeros(2, 8 + 3 * 38)
    expected[0, [0, 8 + 2 * 38 + 5]] = 1.0  # step 0; only the last token played
    expected[1, [7, 8 + 0, 8 + 38 + 37, 8 + 2 * 38 + 2]] = 1.0  # step 8 reads as the last
    assert torch.equal(features, expected)


@pytest.mark.parametrize("clip", ["per-variable", "global"])
def test_gradients_are_clipped_per_variable_or_together(clip):
    params = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    params[0].grad, params[1].grad = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.3, 0.4])
    clip_gradients(RLTunerConfig(max_grad_norm=1.0, clip=clip), params)
    if clip == "per-variable":  # norms 5 and 0.5: the first scaled to 1, the second kept
        expected = [[3 / (5 + 1e-6), 4 / (5 + 1e-6), 0.0], [0.3, 0.4]]
    else:  # the global norm sqrt(25.25) scales both
        norm = math.sqrt(25.25)
        expected = [[3 / norm, 4 / norm, 0.0], [0.3 / norm, 0.4 / norm]]
    for param, values in zip(params, expected):
        torch.testing.assert_close(param.grad, torch.tensor(values))


@pytest.mark.parametrize(
    ("algo", "double", "expected"),
    [
        # r + γ (1 - done) max_a' Q⁻(s', a'): 1 + 0.5 * 3; 2 + 0 (done)
        ("q", False, [2.5, 2.0]),
        # double: a* = argmax Q(s') = 0 -> Q⁻(s', 0): 1 + 0.5 * 1; done: 2
        ("q", True, [1.5, 2.0]),
        # r + γ log(e^1 + e^3 + e^-1)
        ("psi", False, [1 + 0.5 * math.log(math.exp(1) + math.exp(3) + math.exp(-1)), 2.0]),
        # r + γ log Σ exp(G⁻ + log p) = 1 + 0.5 log(0.5 e^1 + 0.25 e^3 + 0.25 e^-1)
        (
            "g",
            False,
            [1 + 0.5 * math.log(0.5 * math.e + 0.25 * math.exp(3) + 0.25 / math.e), 2.0],
        ),
    ],
)
def test_td_targets_against_hand_computed_values(algo, double, expected):
    rewards = torch.tensor([1.0, 2.0])
    dones = torch.tensor([False, True])
    next_target = torch.tensor([[1.0, 3.0, -1.0], [5.0, 5.0, 5.0]])
    next_online = torch.tensor([[9.0, 0.0, 0.0], [0.0, 0.0, 0.0]]) if double else None
    log_p = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]))
    target = td_target(algo, rewards, dones, 0.5, next_target, log_p, next_online)
    torch.testing.assert_close(target, torch.tensor(expected))


def test_policy_of_g_adds_the_prior(prior):
    agent = RLTuner(RLTunerConfig(algo="g"), prior)
    observations = observed(agent, [14])
    logits, _ = agent.act_logits(observations)
    log_probs = torch.from_numpy(observations["prior_log_probs"])
    torch.testing.assert_close(logits, log_probs)  # G = 0 at the start, plus log p


def test_soft_update_moves_the_target_by_eta():
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = copy.deepcopy(target.state_dict())
    soft_update(list(target.parameters()), list(online.parameters()), 0.01)
    for name, value in target.state_dict().items():
        expected = 0.99 * before[name] + 0.01 * online.state_dict()[name]
        torch.testing.assert_close(value, expected)


def fake_observations(summaries: torch.Tensor, count: int = 2) -> dict[str, np.ndarray]:
    """``"prior"`` observations of ``count`` melodies whose summaries are ``summaries``."""
    return {
        "prior_summary": np.asarray(summaries, np.float32),
        "prior_log_probs": np.zeros((count, 38), np.float32),
    }


def melody_replay(capacity: int, summary_shape: tuple[int, int], primed: bool) -> MelodyReplay:
    return MelodyReplay(capacity, 8, summary_shape, 2, 2, 0.5, "C major", primed, readout=True)


def test_replay_memory_keeps_melodies_and_samples_held_steps():
    replay = melody_replay(4 * 8, (3, 2), primed=True)
    replay.begin(fake_observations(torch.zeros(2, 3, 2)), {"primer": [[1], [20]]})
    replay.primers[replay.slots[0]] = -1  # one melody without a primer
    rows = replay.slots.copy()
    stepped, going_on = np.ones(2, bool), np.zeros(2, bool)
    for t in range(3):
        actions = np.array([2 + t, 10 + t])
        observations = fake_observations(torch.full((2, 3, 2), t + 1.0))
        replay.store(actions, np.array([0.5, -1.0]), going_on, stepped, observations, {})
    assert len(replay) == 6
    np.testing.assert_array_equal(replay.tokens[rows[0], :4], [2, 3, 4, -1])
    batch = replay.sample(64, np.random.default_rng(0), torch.device("cpu"))
    assert set(batch.actions.tolist()) <= {2, 3, 4, 10, 11, 12} and len(batch.actions) == 64
    states = replay.states(np.array([rows[1]]), np.array([2]), torch.device("cpu"))
    assert states.context.tolist() == [[10, 11]] and states.sounding.tolist() == [11]
    assert (states.summary == 2).all() and states.step.tolist() == [2]
    first = replay.states(np.array([rows[1]]), np.array([0]), torch.device("cpu"))
    assert first.context.tolist() == [[-1, 20]]  # the primer is part of the context
    for _ in range(4):  # rows are reused oldest first
        replay._start()
    assert len(replay) == 0


def test_replay_recomputes_the_summaries_it_does_not_save(prior):
    replay = melody_replay(64, prior.summary_shape, primed=True)
    melodies = random_melodies(2, 8, seed=9)
    primers = [[20], [3]]
    played = torch.cat([torch.tensor(primers), melodies], 1)
    outputs = melody_summaries(prior, played)[:, 1:]  # (2, 9, K, H): the states after the primer
    replay.begin(fake_observations(outputs[:, 0]), {"primer": primers})
    stepped = np.ones(2, bool)
    for t in range(8):
        ended = np.full(2, t == 7)
        observations = fake_observations(outputs[:, t + 1])
        replay.store(melodies[:, t].numpy(), np.zeros(2), ended, stepped, observations, {})
    saved = replay.summaries.copy()
    restored = melody_replay(64, prior.summary_shape, primed=True)
    restored.load_state_dict(replay.state_dict(), prior, torch.device("cpu"))
    np.testing.assert_allclose(restored.summaries[:2], saved[:2], atol=1e-3)  # the rows in use
    assert restored.digest() == replay.digest()


@pytest.mark.parametrize("algo", ["q", "g"])
def test_the_prior_runs_once_per_environment_step_while_training(algo, tmp_path, monkeypatch):
    """The agent reads the prior's summary and log p from the environment's observation: one
    batched scoring and one token played per vector step (and the first reset's scoring), for
    G too (whose environment leaves log p out of the reward)."""
    from musicgym.envs.melody import MusicCompositionVectorEnv

    prior = tiny_prior(seed=3)
    calls = {"action_log_probs": 0, "play": 0, "step": 0}

    def counted(owner, name):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    counted(prior, "action_log_probs")
    counted(prior, "play")
    counted(MusicCompositionVectorEnv, "step")
    settings = {**RL_TUNER_SMALL, "eval_interval": 10**6, "checkpoint_interval": 10**6}
    config = RLTunerConfig(algo=algo, steps=96, length=8, **settings)
    train_rl_tuner(config, tmp_path, prior=prior, progress=False, log=False)
    assert calls["step"] > 24  # 96 steps of 4 melodies, and the resets between them
    assert calls["action_log_probs"] == calls["step"] + 1
    assert calls["play"] == calls["step"]


def test_an_env_without_the_prior_observation_is_one_line(prior):
    from musicgym.agents.rl_tuner.agent import check_prior_observation

    envs = gym.make_vec("MusicComposition-v0", num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(EnvArgumentError, match="observation='prior'"):
        check_prior_observation(envs)


def test_bad_device_and_too_large_replay_are_one_line_errors(prior):
    if not torch.cuda.is_available():
        with pytest.raises(EnvArgumentError, match="no CUDA GPU"):
            RLTuner(RLTunerConfig(device="cuda"), prior)
    with pytest.raises(EnvArgumentError, match="lower --buffer-size"):
        check_replay_memory(RLTuner(RLTunerConfig(buffer_size=10**12), prior))


# ----------------------------------------------------------------------- every algorithm
RL_TUNER_SMALL = {
    "num_envs": 4,
    "learning_starts": 32,
    "train_frequency": 8,
    "buffer_size": 2_000,
    "eval_interval": 64,
    "eval_melodies": 4,
    "checkpoint_interval": 64,
    "double_q": True,
}
SB3_SMALL = {
    "dqn": {"learning_starts": 32, "buffer_size": 1_000},
    "qrdqn": {"learning_starts": 32, "buffer_size": 1_000},
    "ppo": {"n_steps": 16, "batch_size": 32, "n_epochs": 2},
    "a2c": {},
    "recurrentppo": {"n_steps": 16, "batch_size": 32, "n_epochs": 2},
    "maskableppo": {"n_steps": 16, "batch_size": 32, "n_epochs": 2},
    "ppokl": {"n_steps": 16, "batch_size": 32, "n_epochs": 2, "kl_target": 0.1},
}


@pytest.mark.parametrize("algo", agents.ALGORITHMS)
def test_every_algorithm_trains_checkpoints_resumes_and_composes(prior, algo, tmp_path):
    family, _, name = algo.partition("-")
    if family in ("dpo", "dpg"):  # the fine-tuners that play rounds of pieces
        from musicgym.agents.dpo import train as train_rounds

        config = agents.ALGORITHMS[algo].config_class
        small = {"pairs": 2} if family == "dpo" else {"pieces": 4}
        train_rounds(config(steps=96, epochs=2, **small), tmp_path, prior=prior, progress=False)
        train_rounds(config(steps=192, epochs=2, **small), tmp_path, resume=True, progress=False)
        assert read_agent_info(tmp_path)["trained_steps"] == 256  # whole rounds of 4 melodies
    elif family == "rltuner":
        config = RLTunerConfig(algo=name, steps=96, **RL_TUNER_SMALL)
        train_rl_tuner(config, tmp_path, prior=prior, progress=False)
        checkpoint = torch.load(tmp_path / "agent.pt", weights_only=True)
        assert checkpoint["step"] == 96 and checkpoint["updates"] == 8
        resumed = train_rl_tuner(
            RLTunerConfig(algo=name, steps=128, **RL_TUNER_SMALL),
            tmp_path,
            resume=True,
            progress=False,
        )
        assert resumed.updates == 12
        assert torch.load(tmp_path / "agent.pt", weights_only=True)["step"] == 128
        assert read_agent_info(tmp_path)["trained_steps"] == 128
    else:
        from musicgym.agents.baselines import SB3Config
        from musicgym.agents.baselines import train as train_sb3

        path = tmp_path.parent / f"{tmp_path.name}-prior.pt"  # the run names it (ppokl reads it)
        save_checkpoint(path, prior)
        small = {"num_envs": 2, "eval_interval": 32, "eval_episodes": 2, "checkpoint_interval": 32}
        small = {**small, "prior": str(path), "hyperparameters": json.dumps(SB3_SMALL[name])}
        config = SB3Config(algo=name, steps=64, **small)
        model = train_sb3(config, tmp_path, progress=False)
        assert model.num_timesteps >= 64 and (tmp_path / "checkpoints").is_dir()
        config = SB3Config(algo=name, steps=128, **small)
        (tmp_path / "model.zip").unlink()  # as if interrupted: resume from checkpoints/
        model = train_sb3(config, tmp_path, resume=True, progress=False)
        assert model.num_timesteps >= 128
        assert read_agent_info(tmp_path)["trained_steps"] == model.num_timesteps
    agent = agents.load(tmp_path)
    melodies = agent.compose(3, seed=5)
    assert len(melodies) == 3 and all(len(m) == 32 for m in melodies)
    assert all(0 <= token < 38 for melody in melodies for token in melody)
    assert agent.compose(3, seed=5) == melodies  # the seed decides
    assert len(agent.compose(2, seed=5, greedy=True)) == 2


class SlowClock:
    """``time`` whose ``time()`` moves one second a call: a training run's minutes pass after a
    fixed number of its clock readings, however busy the machine is."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        self.now += 1.0
        return self.now

    def __getattr__(self, name: str):
        import time

        return getattr(time, name)


@pytest.mark.parametrize("algo", ["rltuner-q", "sb3-dqn"])
def test_max_minutes_stops_short_and_resume_goes_on(prior, algo, tmp_path, monkeypatch):
    from musicgym.agents import baselines
    from musicgym.agents.rl_tuner import loop

    for module in (loop, baselines):
        monkeypatch.setattr(module, "time", SlowClock())
    family, _, name = algo.partition("-")
    if family == "rltuner":
        small = RLTunerConfig(algo=name, steps=10_000, max_minutes=0.1, **RL_TUNER_SMALL)
        train_rl_tuner(small, tmp_path, prior=prior, progress=False)
        stopped = read_agent_info(tmp_path)["trained_steps"]
        resumed = RLTunerConfig(algo=name, steps=stopped + 32, **RL_TUNER_SMALL)
        train_rl_tuner(resumed, tmp_path, resume=True, progress=False)
    else:
        from musicgym.agents.baselines import SB3Config
        from musicgym.agents.baselines import train as train_sb3

        small = {
            "num_envs": 2,
            "eval_interval": 10**6,
            "hyperparameters": json.dumps(SB3_SMALL[name]),
        }
        train_sb3(
            SB3Config(algo=name, steps=10_000, max_minutes=0.1, **small),
            tmp_path,
            prior=prior,
            progress=False,
        )
        stopped = read_agent_info(tmp_path)["trained_steps"]
        config = SB3Config(algo=name, steps=stopped + 32, **small)
        train_sb3(config, tmp_path, resume=True, prior=prior, progress=False)
    assert 0 < stopped < 10_000  # stopped by the clock, saved
    assert read_agent_info(tmp_path)["trained_steps"] >= stopped + 32


def test_load_special_agents_and_bad_paths(prior, tmp_path):
    random_agent = agents.load("random", length=16)
    melodies = random_agent.compose(50, seed=1)
    assert len(melodies[0]) == 16 and len({t for m in melodies for t in m}) == 38
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, prior)
    prior_agent = agents.load(f"prior:{path}")
    assert isinstance(prior_agent, agents.Composer)
    assert prior_agent.compose(2, seed=0) == prior_agent.compose(2, seed=0)
    with pytest.raises(CheckpointError):
        agents.load(tmp_path / "nowhere")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        agents.load(tmp_path / "junk.pt")


# ------------------------------------------------------------------------------------- CLI
def test_cli_train_and_compose(prior, tmp_path, capsys):
    from musicgym.cli import main

    prior_path = tmp_path / "tiny.pt"
    save_checkpoint(prior_path, prior)
    run = tmp_path / "run"
    common = ["--prior", str(prior_path), "--rules", "key,tonic=3", "--no-progress"]
    arguments = ["agent", "train", "--algo", "rltuner-q", "--steps", "64", "--out", str(run)]
    small = ["--num-envs", "4", "--learning-starts", "32", "--eval-interval", "64"]
    assert main(arguments + common + small) == 0
    assert (run / "agent.pt").is_file() and any(run.glob("events.out.tfevents*"))
    out = tmp_path / "out"
    assert (
        main(["agent", "compose", "--agent", str(run), "--n", "3", "--out", str(out), "--png"]) == 0
    )
    assert len(list(out.glob("*.mid"))) == 3 and len(list(out.glob("*.png"))) == 3
    assert "notes not in key" in capsys.readouterr().out
    assert main([*arguments[:3], "sb3-ppo", "--gamma", "0.9", "--out", str(run), *common]) == 2


def test_tensorboard_has_the_issues_tags(prior, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = RLTunerConfig(steps=160, rules="key", **{**RL_TUNER_SMALL, "eval_interval": 160})
    train_rl_tuner(config, tmp_path, prior=prior, progress=False)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"charts/episodic_return", "losses/td_loss", "losses/q_values", "charts/SPS"} <= tags
    assert {"music/notes_not_in_key", "music/leaps_resolved", "music/log_p"} <= tags


# --------------------------------------------------------------------------- learning signal
def out_of_key_fraction(melodies: list[list[int]]) -> float:
    in_key = in_key_tokens(Key.parse("C major"))
    tokens = [t for melody in melodies for t in melody]
    return sum(t not in in_key for t in tokens) / len(tokens)


def test_rltuner_q_learns_the_key_rule(tmp_path):
    """With only the key rule, out-of-key notes fall far below where they started: 256 melodies
    of 32 tokens make a binomial standard error under 0.5 points, the margin asked is 8."""
    prior = tiny_prior(2, note_sizes=(8,))
    config = RLTunerConfig(
        steps=1_600,
        rules="key",
        prior_reward=False,
        num_envs=16,
        learning_starts=128,
        train_frequency=4,
        learning_rate=0.02,
        exploration_fraction=0.5,
        eval_interval=10**9,
        checkpoint_interval=10**9,
        seed=3,
    )
    before = out_of_key_fraction(RLTuner(config, prior).compose(256, seed=7))
    agent = train_rl_tuner(config, tmp_path, prior=prior, progress=False, log=False)
    after = out_of_key_fraction(agent.compose(256, seed=7))
    print(f"out of key: {before:.3f} before, {after:.3f} after")
    assert before > 0.15
    assert after < before - 0.08 and after < 0.6 * before, (before, after)


def run_with_replay(config: RLTunerConfig, prior, out, vector_steps: int):
    """An agent and its training run after ``vector_steps`` steps of acting and storing (no
    update): a replay memory to draw batches from."""
    from musicgym.agents.rl_tuner.loop import TrainingRun

    agent = RLTuner(config, prior)
    run = TrainingRun(agent, out, {})
    observations = run.observations
    for _ in range(vector_steps):
        actions = run.act(observations)
        observations, rewards, terminations, infos = run.step(actions)
        run.store(actions, rewards, terminations, observations, infos)
    return agent, run


def test_compiled_learner_takes_the_eager_step(prior, tmp_path):
    """``--compile``: the whole step compiled (forward, gradients by ``torch.func``, clipping,
    Adam, soft update) moves the weights as the eager step does, to float rounding."""
    import dataclasses

    from musicgym.agents.rl_tuner.targets import Learner

    config = RLTunerConfig(length=8, num_envs=4, buffer_size=64, steps=64)
    agent, run = run_with_replay(config, prior, tmp_path, vector_steps=6)
    learners = [
        Learner(copy.deepcopy(agent.q_network), copy.deepcopy(agent.target_network), settings)
        for settings in (config, dataclasses.replace(config, compile=True))
    ]
    assert learners[1].optimizer.defaults["fused"]
    batches = [run.replay.sample(8, run.rng, agent.device) for _ in range(5)]  # a call of 4, 1
    for (eager_loss, eager_q), (loss, q) in zip(*(learner.steps(batches) for learner in learners)):
        torch.testing.assert_close(loss, eager_loss)
        torch.testing.assert_close(q, eager_q)
    eager, compiled = (learner.q_network.state_dict() for learner in learners)
    for name, value in eager.items():
        torch.testing.assert_close(compiled[name], value, rtol=1e-4, atol=1e-6)
    assert any(not torch.equal(compiled[n], v) for n, v in agent.q_network.state_dict().items())
    eager, compiled = (learner.optimizer.state_dict()["state"] for learner in learners)
    for index, state in eager.items():  # the step counts and moments alike
        for name, value in state.items():
            torch.testing.assert_close(compiled[index][name], value, rtol=1e-4, atol=1e-9)


def test_compiled_learner_resumes_from_its_optimizer_state(prior, tmp_path):
    """A compiled learner restored from a checkpoint's optimizer state (Adam's step count read
    from it) takes the very step the uninterrupted one takes."""
    from musicgym.agents.rl_tuner.targets import Learner

    config = RLTunerConfig(length=8, num_envs=4, buffer_size=64, steps=64, compile=True)
    agent, run = run_with_replay(config, prior, tmp_path, vector_steps=6)
    learner = Learner(agent.q_network, agent.target_network, config)
    batches = [run.replay.sample(8, run.rng, agent.device) for _ in range(3)]
    learner.step(batches[0])
    networks = agent.q_network, agent.target_network
    saved = copy.deepcopy([learner.optimizer.state_dict(), *(n.state_dict() for n in networks)])
    for batch in batches[1:]:
        learner.step(batch)
    uninterrupted = copy.deepcopy(agent.q_network.state_dict())
    learner.optimizer.load_state_dict(saved[0])
    for network, state in zip(networks, saved[1:]):
        network.load_state_dict(state)
    for batch in batches[1:]:
        learner.step(batch)
    assert all(int(state["step"]) == 3 for state in learner.optimizer.state.values())
    for name, value in uninterrupted.items():
        assert torch.equal(agent.q_network.state_dict()[name], value), name


def test_compiled_learner_takes_the_same_steps_four_in_a_call(prior, tmp_path):
    """Four updates due at once are one compiled call, with the numbers of four calls of one."""
    from musicgym.agents.rl_tuner.targets import UPDATES_PER_CALL, Learner

    config = RLTunerConfig(length=8, num_envs=4, buffer_size=64, steps=64, compile=True)
    agent, run = run_with_replay(config, prior, tmp_path, vector_steps=6)
    learners = [
        Learner(copy.deepcopy(agent.q_network), copy.deepcopy(agent.target_network), config)
        for _ in range(2)
    ]
    batches = [run.replay.sample(8, run.rng, agent.device) for _ in range(UPDATES_PER_CALL)]
    together = learners[0].steps(batches)
    alone = [learners[1].step(batch) for batch in batches]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(together, alone))
    for name, value in learners[0].q_network.state_dict().items():
        assert torch.equal(learners[1].q_network.state_dict()[name], value), name


def test_every_compiled_learner_of_a_process_compiles_or_says_so(prior, tmp_path, monkeypatch):
    """Every compiled learner of a process is compiled (dynamo's default limit of 8 cache
    entries, two a learner, would run the fifth eagerly without a word): one made after others
    takes over the step's cache, up to ``COMPILED_LEARNERS`` in use at once keep theirs, and
    one more says so in one line."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    from musicgym.agents.rl_tuner import targets

    config = RLTunerConfig(length=8, num_envs=4, buffer_size=64, steps=64, compile=True)
    agent, run = run_with_replay(config, prior, tmp_path, vector_steps=6)
    batches = [run.replay.sample(8, run.rng, agent.device) for _ in range(5)]  # calls of 4, 1

    def learner() -> targets.Learner:
        networks = (copy.deepcopy(n) for n in (agent.q_network, agent.target_network))
        return targets.Learner(*networks, config)

    def entries() -> int:
        return len(_debug_get_cache_entry_list(targets.Learner._traced_steps.__code__))

    for _ in range(3):  # one after another: never more than one learner's entries
        learner().steps(batches)
        assert entries() == 2  # its own two graphs: compiled, not run eagerly
    monkeypatch.setattr(targets, "COMPILED_LEARNERS", 2)
    together = [learner() for _ in range(3)]
    for each in together[:2]:
        each.steps(batches)
    assert entries() == 4
    with pytest.raises(EnvArgumentError, match=r"^--compile: this process uses 2 compiled "):
        together[2].steps(batches)


def test_feature_linear_passes_autograds_gradients_compiled():
    """The head's first layer, compiled under ``torch.func``, gives every gradient autograd
    gives for ``nn.Linear`` over the concatenated features (the learned part's, the weight's,
    the bias')."""
    from torch import nn

    from musicgym.agents.rl_tuner.network import FeatureLinear

    torch.manual_seed(0)
    layer, plain = FeatureLinear(12, 16), nn.Linear(12, 16)
    plain.load_state_dict(layer.state_dict())
    summary, given = torch.randn(4, 3), torch.randn(4, 7)
    weights = {"projection": torch.randn(3, 5), **dict(layer.named_parameters())}

    def loss(weights: dict[str, torch.Tensor], module: nn.Module) -> torch.Tensor:
        parts = summary @ weights["projection"], given
        own = {k: v for k, v in weights.items() if k != "projection"}
        if isinstance(module, FeatureLinear):
            out = torch.func.functional_call(module, own, (parts,))
        else:
            out = torch.func.functional_call(module, own, (torch.cat(parts, 1),))
        return (out.relu() ** 2).sum()

    expected = torch.func.grad(loss)(weights, plain)
    compiled = torch.compile(torch.func.grad(loss), dynamic=False)(weights, layer)
    for name, value in expected.items():
        torch.testing.assert_close(compiled[name], value, rtol=1e-5, atol=1e-5)
        assert value.abs().sum() > 0, name


@pytest.mark.parametrize("optimizer", ["adam", "adadelta"])
def test_compiled_learner_step_is_one_graph(prior, tmp_path, optimizer):
    """``--compile`` traces the whole step, the optimizer's included, into one graph, and four
    steps due at once into one: no graph break (``torch.optim``'s own ``step()`` would break it
    before and after)."""
    from musicgym.agents.rl_tuner.targets import Learner, adam_factors, start_optimizer_state

    config = RLTunerConfig(
        length=8, num_envs=4, buffer_size=64, steps=64, compile=True, optimizer=optimizer
    )
    agent, run = run_with_replay(config, prior, tmp_path, vector_steps=4)
    learner = Learner(agent.q_network, agent.target_network, config)
    start_optimizer_state(learner.optimizer)
    factors = adam_factors(learner.optimizer, 1, 4) if optimizer == "adam" else None
    batches = tuple(run.replay.sample(8, run.rng, agent.device) for _ in range(4))
    with torch.no_grad():
        explained = torch._dynamo.explain(learner._traced_steps)(batches, factors)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), [
        reason.reason.splitlines()[0] for reason in explained.break_reasons
    ]
