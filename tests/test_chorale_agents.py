"""Agents on ChoraleComposition-v0: the RL Tuner's network, masked targets and exploration, its
replay, every chorale algorithm's train / compose cycle, MaskablePPO, and the CLI."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from musicgym import agents
from musicgym.agents.common import read_agent_info
from musicgym.agents.rl_tuner import RLTuner, RLTunerConfig, explore, td_target
from musicgym.agents.rl_tuner import train as train_rl_tuner
from musicgym.agents.rl_tuner.chorale import ChoraleReplay
from musicgym.envs.decisions import end_action
from musicgym.errors import Interrupted
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


def tiny_chorale_prior() -> BiaxialLSTM:
    """A random Bi-axial LSTM over MIDI 36..83 (the chorale voices' 40..79)."""
    torch.manual_seed(1)
    config = BiaxialConfig(time_sizes=(12,), note_sizes=(8,), vicinity=4, dropout=0.0)
    return BiaxialLSTM(config).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def prior() -> BiaxialLSTM:
    return tiny_chorale_prior()


def observed(tuner: RLTuner, decisions: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The ``"prior"`` observations of 2 chorales after ``decisions`` (one action each)."""
    envs = tuner.make_envs(2)
    observations, _ = envs.reset(seed=0)
    for actions in decisions:
        observations, *_ = envs.step(actions)
    return observations


# ----------------------------------------------------------------------- network, targets
@pytest.mark.parametrize("algo", ["q", "psi"])
def test_network_starts_as_the_priors_note_axis(prior, algo):
    tuner = RLTuner(RLTunerConfig(algo=algo, **SMALL), prior)
    observations = observed(tuner, [np.array([10, 30])])  # pitches 10 and 30 struck
    logits, mask = tuner.act_logits(observations)
    log_probs = torch.from_numpy(observations["prior_log_probs"])
    assert torch.equal(mask, torch.from_numpy(observations["action_mask"].astype(bool)))
    assert torch.allclose(logits[mask], log_probs[mask])
    assert not mask[0, :11].any() and mask[1, 31:48].all()


@pytest.mark.parametrize("piece_position", [True, False])
def test_network_reads_the_decided_notes_and_the_bar_and_piece_positions(prior, piece_position):
    tuner = RLTuner(RLTunerConfig(**SMALL, piece_position=piece_position), prior)
    end = 2 * prior.num_pitches
    observations = observed(tuner, [np.array([end, end])] * 5)  # five silent frames
    states = tuner.part.observed_states(observations, tuner.device)
    features = tuner.q_network.features(states)
    N, frames = prior.num_pitches, 16 if piece_position else 0  # a chorale of one bar
    extra = features[0, -(2 * N + N + 1 + 16 + frames) :]
    assert extra.shape == (tuner.part.feature_size,) and extra[2 * N] == 1.0  # lowest pitch open
    bar, piece = extra[3 * N + 1 : 3 * N + 17], extra[3 * N + 17 :]
    assert bar[5] == 1.0 and bar.sum() == 1.0
    assert (piece[5] == 1.0 and piece.sum() == 1.0) if piece_position else not len(piece)


def test_network_reads_the_key_an_env_of_several_keys_shows(prior):
    """``key="C major,A minor"``: the features end with the key of each state's piece,
    one-hot, as ``info["key"]`` names it; with one key there is no such feature."""
    from musicgym.music.keys import ALL_KEYS, Key

    tuner = RLTuner(RLTunerConfig(**{**SMALL, "key": "C major,A minor"}), prior)
    single = RLTuner(RLTunerConfig(**SMALL), prior)
    assert tuner.part.feature_size == single.part.feature_size + len(ALL_KEYS)
    envs = tuner.make_envs(6)
    observations, infos = envs.reset(seed=0)
    states = tuner.part.observed_states(observations, tuner.device)
    shown = tuner.q_network.features(states)[:, -len(ALL_KEYS) :]
    expected = [Key.parse(name).index for name in infos["key"]]
    assert shown.argmax(1).tolist() == expected and shown.sum().item() == 6
    assert len(set(expected)) == 2


def test_place_in_the_piece_is_the_progress_in_its_frames(prior):
    """Every frame ``t`` of a piece (a phrase) of ``L`` frames, its progress ``t / L`` as the
    env's float32 observation: its place is ``t`` read in a whole chorale's frames, rounded
    down, exactly (the last frame of any phrase near the end, the first at 0)."""
    part = RLTuner(RLTunerConfig(**{**SMALL, "bars": 4}), prior).part
    for length in range(4, 65):
        t = np.arange(length)
        plain = np.zeros((length, 3 * prior.num_pitches + 1 + 16 + 1), np.float32)
        plain[:, -1] = t / length
        place = part.decode({"observation": plain})["place"]
        assert np.array_equal(place, t * 64 // length), length


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
def test_replay_keeps_transitions_and_drops_those_whose_frame_is_gone(prior):
    tuner = RLTuner(RLTunerConfig(**{**SMALL, "buffer_size": 8}), prior)  # 2 frames kept
    replay: ChoraleReplay = tuner.part.make_replay(8, 2)
    N, end = prior.num_pitches, 2 * prior.num_pitches
    envs = tuner.make_envs(2)
    observations, infos = envs.reset(seed=0)
    replay.begin(observations, infos)  # two frames begin
    stepped = np.ones(2, bool)
    actions = np.array([N + 1, end])  # hold pitch 1; end a silent frame (a third frame)
    observations, rewards, terminations, _, infos = envs.step(actions)
    replay.store(actions, rewards, terminations, stepped, observations, infos)
    states = replay.states(np.array([0]), "next", torch.device("cpu"))
    expected = np.zeros((N, 2), np.float32)
    expected[1] = (1, 0)
    assert torch.equal(states.decided[0], torch.from_numpy(expected))
    assert states.next_pitch.item() == 2 and states.position.item() == 0
    # chorale 1's new frame took the place of chorale 0's frame: only chorale 1's transition
    # (from its frame 1 to its frame 2) can still be read
    assert not replay._valid(np.array([0])).any() and replay._valid(np.array([1])).all()


PHRASES = {"phrases": True, "primer": "chorale:bwv346", "bars": 2}
"""Training on the phrases of bwv346 (in C major): seven after its first, of 16 to 28 frames
(shorter than the chorales of two bars composed), primed by 28 to 188 frames."""


def test_replay_marks_the_transitions_of_the_pieces_last_beats(prior):
    """Random decisions of 3 chorales of one bar: exactly the kept transitions of the frames of
    a finished piece's last beat (its last ``resolution`` frames) are marked (what
    ``ending_share`` draws from)."""
    num_envs, end, beat = 3, end_action(prior.num_pitches), prior.resolution
    config = RLTunerConfig(**{**SMALL, "num_envs": num_envs})
    tuner = RLTuner(config, prior)
    replay: ChoraleReplay = tuner.part.make_replay(config.buffer_size, num_envs)
    envs, rng = tuner.make_envs(num_envs), np.random.default_rng(1)
    observations, infos = envs.reset(seed=0)
    replay.begin(observations, infos)
    played, resetting = [], np.zeros(num_envs, bool)  # number, env, frame
    piece_frames: list[list[int]] = [[] for _ in range(num_envs)]
    ending: set[tuple[int, int]] = set()  # (env, frame) of a finished piece's last beat
    for _ in range(150):
        notes = [np.flatnonzero(valid[:-1]) for valid in observations["action_mask"]]
        actions = np.array([rng.choice(n) if n.size and rng.random() > 0.4 else end for n in notes])
        frames, number = replay.current["frame"].copy(), replay.count
        observations, rewards, terminations, _, infos = envs.step(actions)
        replay.store(actions, rewards, terminations, ~resetting, observations, infos)
        for i in np.flatnonzero(~resetting):
            played.append((number, i, frames[i]))
            number += 1
            if not piece_frames[i] or piece_frames[i][-1] != frames[i]:
                piece_frames[i].append(frames[i])
            if terminations[i]:
                assert len(piece_frames[i]) == 16
                ending |= {(i, frame) for frame in piece_frames[i][-beat:]}
                piece_frames[i] = []
        resetting = terminations
    kept = [move for move in played if move[0] >= replay.count - replay.capacity]
    marked = replay.last_frames[np.array([move[0] for move in kept]) % replay.capacity]
    assert np.array_equal(marked, [(env, frame) in ending for _, env, frame in kept])
    assert 0 < marked.sum() < len(kept) / 2


@pytest.mark.parametrize(
    ("capacity", "num_envs", "ending", "episodes"),
    [
        (4, 3, 0.7, {}),
        (64, 5, 0.9, {}),
        (64, 3, 0.9, {"primer": "chorale:bwv269"}),
        (1600, 5, 0.9, PHRASES),
    ],
    ids=["chorales-4", "chorales-64", "primed", "phrases"],
)
def test_replay_checkpoint_recomputes_every_kept_summary(
    prior, capacity, num_envs, ending, episodes
):
    """Random decisions (a frame ends with probability ``ending``) into a replay that keeps
    ``capacity / 4`` frames, fewer than the environments or a few chorales: every 50 steps its
    checkpoint, loaded into a new replay, recomputes the summaries bit for bit (the digest), from
    each piece's own primer; one saved before the pieces kept their primers (without
    ``piece_primers``) too, from the run's primer."""
    config = RLTunerConfig(**{**SMALL, "num_envs": num_envs, "buffer_size": capacity, **episodes})
    tuner = RLTuner(config, prior)
    replay: ChoraleReplay = tuner.part.make_replay(capacity, num_envs)
    envs, rng = tuner.make_envs(num_envs, training=True), np.random.default_rng(capacity)
    observations, infos = envs.reset(seed=0)
    replay.begin(observations, infos)
    resetting = np.zeros(num_envs, bool)
    for step in range(1, 301):
        notes = [np.flatnonzero(valid[:-1]) for valid in observations["action_mask"]]
        actions = np.array(
            [
                rng.choice(n) if n.size and rng.random() > ending else 2 * prior.num_pitches
                for n in notes
            ]
        )
        observations, rewards, terminations, _, infos = envs.step(actions)
        replay.store(actions, rewards, terminations, ~resetting, observations, infos)
        resetting = terminations
        if step % 50 == 0:
            state = replay.state_dict()
            older = {k: v for k, v in state.items() if k not in ("piece_primers", "primer_lengths")}
            for saved in [state] if config.phrases else [state, older]:
                loaded = tuner.part.make_replay(capacity, num_envs)
                loaded.load_state_dict(saved, prior, torch.device("cpu"))
                assert loaded.digest() == replay.digest(), step
    assert replay.frames_written > 16 * len(replay.piece_last)  # the chorales' rows went round
    lengths = set(replay.primer_lengths[replay.piece_last >= 0].tolist())  # of the rows used
    if config.phrases:  # each phrase its own primer, and more pieces than whole chorales
        assert len(lengths) > 3 and len(replay.piece_last) > capacity // 4 // 32 + 2 * num_envs
    else:
        assert lengths == {len(tuner.part.primer())}


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
    finished = train_rl_tuner(config, tmp_path, resume=True, progress=False)  # nothing to do
    assert finished.compose(3, seed=5)[2] == chorales[2] and finished.updates == tuner.updates


@pytest.mark.parametrize(
    "settings",
    [
        {"algo": "q"},
        {"algo": "psi", "primer": True},
        {"algo": "q", **PHRASES},
        {"algo": "q", "ending_share": 0.25},
        {"algo": "q", "rule_features": True},
        {"algo": "q", "rule_features": True, "key": "C major,A minor"},
    ],
    ids=["q", "psi-primed", "q-phrases", "q-endings", "q-rule-features", "q-keys"],
)
def test_rl_tuner_interrupted_at_a_random_step_resumes_bit_for_bit(
    prior, settings, tmp_path, capsys
):
    """SIGINT at a seeded random step, then ``--resume``: the networks, Adam's moments and the
    replay (its summaries recomputed from the pieces' primers and notes, checked by its digest)
    equal an uninterrupted run's. The replay keeps 10 frames and the notes of 4 chorales of 16
    frames (or phrases of bwv346, each with its own primer): both go round."""
    from musicgym.envs.chorale import ChoraleCompositionVectorEnv
    from musicgym.music.midi import write_midi
    from tests.test_reliability import interrupt_at

    if settings.get("primer") is True:  # a chord struck and held: 4 frames the prior reads first
        frames = np.zeros((4, prior.num_pitches, 2), np.uint8)
        frames[:, [12, 16, 19], 0], frames[0, [12, 16, 19], 1] = 1, 1
        primer = NoteState(frames, prior.lowest_pitch, prior.resolution, "primer")
        write_midi(primer, tmp_path / "primer.mid")
        settings = {**settings, "primer": str(tmp_path / "primer.mid")}
    small = {**SMALL, "num_envs": 2, "buffer_size": 40, "train_frequency": 3}
    config = RLTunerConfig(**{"steps": 800, **small, **settings})
    straight = train_rl_tuner(config, tmp_path / "a", prior=prior, progress=False)
    with pytest.MonkeyPatch.context() as patch:
        stop = int(np.random.default_rng(len(settings)).integers(10, 390))  # of 400 calls
        interrupt_at(stop, ChoraleCompositionVectorEnv, "step", patch)
        with pytest.raises(Interrupted, match=r"SIGINT at step \d+: checkpoint written to"):
            train_rl_tuner(config, tmp_path / "b", prior=prior, progress=False)
    resumed = train_rl_tuner(config, tmp_path / "b", resume=True, progress=False)
    assert "warning" not in capsys.readouterr().err  # the summaries recomputed bit for bit
    a, b = (torch.load(tmp_path / x / "agent.pt", weights_only=True) for x in "ab")
    for part in ("q_state_dict", "target_state_dict", "replay"):
        for name, value in a[part].items():
            saved = b[part][name]
            assert torch.equal(saved, value) if torch.is_tensor(value) else saved == value, name
    assert a["replay"]["frames_written"] > 16 * len(a["replay"]["piece_last"])  # went round
    assert a["resume"]["summary_digest"] == b["resume"]["summary_digest"]
    for index, moments in a["optimizer"]["state"].items():
        assert all(torch.equal(b["optimizer"]["state"][index][k], v) for k, v in moments.items())
    chorales = resumed.compose(3, seed=5)
    assert chorales == straight.compose(3, seed=5)
    assert all(chorale.num_steps == 16 * config.bars for chorale in chorales)  # whole ones
    if config.phrases:  # phrases began, each with its primer, before and after the stop
        assert len(set(a["replay"]["primer_lengths"].tolist())) > 2
    if "," in config.key:  # pieces in both keys were kept
        assert set(a["replay"]["state_key"].tolist()) == {0, 21}


def test_a_run_from_before_the_piece_position_resumes_without_it(prior, tmp_path):
    """A checkpoint whose settings and replay know nothing of the place in the piece, of the
    last frames' marks nor of the pieces' keys (as saved before they existed) loads and resumes
    with the place off, as the run was trained, in its one key."""
    config = RLTunerConfig(steps=200, **SMALL)
    train_rl_tuner(replace(config, piece_position=False), tmp_path, prior=prior, progress=False)
    checkpoint = torch.load(tmp_path / "agent.pt", weights_only=True)
    del checkpoint["config"]["piece_position"]
    for name in ("state_place", "next_place", "current_place", "last_frames"):
        del checkpoint["replay"][name]
    for side in ("state", "next", "current"):
        del checkpoint["replay"][f"{side}_key"]
    torch.save(checkpoint, tmp_path / "agent.pt")
    assert not RLTuner.load(tmp_path)[0].config.piece_position
    resumed = train_rl_tuner(replace(config, steps=400), tmp_path, resume=True, progress=False)
    assert not resumed.config.piece_position and read_agent_info(tmp_path)["trained_steps"] >= 400


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


def test_maskable_ppo_learns_on_the_env():
    """A rule that costs 1 per note of a time step: MaskablePPO learns to end time steps sooner
    (the probability of "end" before a frame's first note rises from about 1 in 97)."""
    from sb3_contrib import MaskablePPO

    from musicgym.rules import ChoraleContext, FunctionRule

    notes = FunctionRule("notes", lambda c: -len(c.sonority.pitches), context=ChoraleContext)
    env = gym.make(CHORALES, prior=None, bars=1, rules=[notes])
    model = MaskablePPO(
        "MlpPolicy", env, n_steps=256, n_epochs=4, learning_rate=3e-3, gamma=0.9, seed=0
    )

    def probability_of_ending() -> float:
        observation, _ = env.reset(seed=1)
        distribution = model.policy.get_distribution(
            model.policy.obs_to_tensor(observation)[0], action_masks=env.unwrapped.action_masks()
        )
        return float(distribution.distribution.probs[0, -1].detach())

    before = probability_of_ending()
    model.learn(6_144)
    assert before < 0.05 and probability_of_ending() > 0.1  # measured: 0.010 -> 0.26


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


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--algo", "rltuner-q", "--prior", "note_rnn", "--ending-share", "0.2"], "ending.share"),
        (["--algo", "rltuner-q", "--env", CHORALES, "--ending-share", "2"], "ending.share"),
    ],
)
def test_chorale_options_elsewhere_are_one_line(options, message, tmp_path, capsys):
    from musicgym.cli import main

    arguments = ["agent", "train", *options, "--steps", "64", "--no-progress"]
    assert main([*arguments, "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip()
    assert re.search(message, error) and len(error.splitlines()) == 1


def test_ending_share_draws_that_share_among_the_last_beats(prior):
    """A quarter of a batch of 32 comes from the last beats of the chorales (of one bar: their
    frames 12 to 15), the rest uniformly (one in 4)."""
    config = RLTunerConfig(**{**SMALL, "ending_share": 0.25})
    tuner = RLTuner(config, prior)
    replay: ChoraleReplay = tuner.part.make_replay(config.buffer_size, 2)
    envs = tuner.make_envs(2)
    observations, infos = envs.reset(seed=0)
    replay.begin(observations, infos)
    end, resetting = end_action(prior.num_pitches), np.zeros(2, bool)
    for _ in range(120):  # silent frames: a chorale of 16 frames ends every 16 steps
        actions = np.full(2, end)
        observations, rewards, terminations, _, infos = envs.step(actions)
        replay.store(actions, rewards, terminations, ~resetting, observations, infos)
        resetting = terminations
    batch = replay.sample(32, np.random.default_rng(0), torch.device("cpu"))
    places = batch.states.place.tolist()
    in_last_beat = [place >= 12 for place in places]
    assert all(in_last_beat[-8:]) and sum(in_last_beat[:24]) < 12  # 8 of 32 from the endings


# --------------------------------------------------------------------------- rule features
def test_action_outcomes_are_what_the_rules_judge():
    """On random frames: the outcome of striking or holding pitch ``p`` above the decided notes
    is whether the voice of that rank and a voice below it form parallel fifths (octaves) when
    matched by rank with the frame before, as :func:`parallel_perfects` judges each pair of
    voices; those of "end" are :func:`parallel_perfects`, :func:`hidden_perfect` and
    :func:`voice_overlap` of the frame it closes, on a beat whether it has other than four
    voices and, in the last beat, its :func:`cadence_parts` in each state's key (A minor,
    where a Picardy third counts, A major or C major)."""
    from musicgym.agents.rl_tuner.chorale import RULE_OUTCOMES, action_outcomes, outcome_rows
    from musicgym.music.harmony import (
        Sonority,
        cadence_parts,
        hidden_perfect,
        parallel_perfects,
        voice_overlap,
    )
    from musicgym.music.keys import Key

    def notes(pitches: list[int]) -> Sonority:
        return Sonority(tuple(pitches), (True,) * len(pitches))

    rng, N, lowest, count = np.random.default_rng(0), 24, 48, 3000
    previous = torch.zeros(count, N, dtype=torch.bool)
    decided = torch.zeros_like(previous)
    for i in range(count):
        previous[i, rng.choice(N, rng.integers(0, 5), replace=False)] = True
        decided[i, rng.choice(N - 4, rng.integers(0, 5), replace=False)] = True
        if i % 4 == 0:  # a frame of the A minor (or major) triad only, for the cadence parts
            decided[i] = False
            decided[i, rng.choice([9, 12, 16, 13, 21, 4], rng.integers(1, 4), replace=False)] = True
    on_beat, in_last_beat = torch.from_numpy(rng.random((2, count)) < 0.5)
    keys = [Key.parse(name) for name in rng.choice(["A minor", "A major", "C major"], count)]
    indices = torch.tensor([key.index for key in keys])
    judged = action_outcomes(previous, decided, on_beat, in_last_beat, lowest, indices)
    outcomes = outcome_rows(*judged)
    assert outcomes.shape == (count, 2 * N + 1, len(RULE_OUTCOMES)) and len(RULE_OUTCOMES) == 11
    assert torch.equal(outcomes[:, :N], outcomes[:, N : 2 * N])
    assert not outcomes[:, :N, 2:].any() and not outcomes[:, -1, :2].any()
    found = np.zeros(5, int)  # parallels of notes, of frames, cadences, hidden, crossings
    for i in range(count):
        before = [lowest + int(p) for p in np.flatnonzero(previous[i])]
        now = [lowest + int(p) for p in np.flatnonzero(decided[i])]
        closed = parallel_perfects(notes(before), notes(now))
        parts = [bool(in_last_beat[i]) and part for part in cadence_parts(notes(now), keys[i])]
        leading = [
            hidden_perfect(notes(before), notes(now)),
            voice_overlap(notes(before), notes(now)),
            bool(on_beat[i]) and len(now) != 4,
        ]
        expected = ["fifth" in closed, "octave" in closed, *leading, *parts, all(parts)]
        assert outcomes[i, -1, 2:].tolist() == expected, i
        found[1:] += [bool(closed), all(parts), *leading[:2]]
        for p in range(N):
            pitch, rank = lowest + p, len(now)
            if now and pitch <= now[-1]:  # not a note an action may add
                continue
            made = set()
            for j in range(rank if rank < len(before) else 0):
                made |= parallel_perfects(notes([before[j], before[rank]]), notes([now[j], pitch]))
            assert outcomes[i, p, :2].tolist() == ["fifth" in made, "octave" in made], (i, p)
            found[0] += bool(made)
    # the random frames made some of each to check
    assert (found > [20, 10, 3, 10, 10]).all(), found


@pytest.mark.parametrize("episodes", [PHRASES, {"key": "C major,A minor"}], ids=["phrases", "keys"])
def test_rule_outcomes_in_the_replay_are_those_the_agent_saw(prior, episodes):
    """With ``rule_features`` (and phrases, each with its primer, or each piece in a key drawn
    from two), the outcomes the replay recomputes for its kept transitions (the frame before
    from the pieces' notes and primers, the key from each transition's own) equal those the
    agent read from the observations when it acted."""
    config = RLTunerConfig(**{**SMALL, **episodes, "rule_features": True, "num_envs": 3})
    tuner = RLTuner(config, prior)
    replay: ChoraleReplay = tuner.part.make_replay(config.buffer_size, 3)
    envs, rng = tuner.make_envs(3, training=True), np.random.default_rng(2)
    observations, infos = envs.reset(seed=0)
    replay.begin(observations, infos)
    seen, resetting, end = {}, np.zeros(3, bool), end_action(prior.num_pitches)
    for _ in range(200):
        states = tuner.part.observed_states(observations, torch.device("cpu"))
        notes = [np.flatnonzero(valid[:-1]) for valid in observations["action_mask"]]
        actions = np.array([rng.choice(n) if n.size and rng.random() > 0.3 else end for n in notes])
        number = replay.count
        observations, rewards, terminations, _, infos = envs.step(actions)
        replay.store(actions, rewards, terminations, ~resetting, observations, infos)
        for i in np.flatnonzero(~resetting):
            seen[number] = states.outcomes[i]
            number += 1
        resetting = terminations
    kept = np.array([n for n in seen if n >= replay.count - replay.capacity])
    slots = kept % replay.capacity
    valid = replay._valid(slots)
    recomputed = replay.states(slots[valid], "state", torch.device("cpu"))
    assert torch.equal(recomputed.outcomes, torch.stack([seen[n] for n in kept[valid]]))
    assert recomputed.outcomes[..., :2].sum() > 0 and valid.sum() > 100
    if "key" in episodes:
        assert set(recomputed.key.tolist()) == {0, 21}  # C major, A minor
