"""Tests of the Bi-axial LSTM prior: kernel, likelihood, incremental API, training, checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from musicgym.errors import CheckpointError
from musicgym.music.notestate import NoteState
from musicgym.prior import FramePrior
from musicgym.prior import resolve_prior as load_frame_prior
from musicgym.priors.model import BiaxialConfig, BiaxialLSTM, frame_log_likelihood
from musicgym.priors.registry import CHECKPOINT_DIR, save_checkpoint
from musicgym.priors.registry import read_checkpoint as load_checkpoint
from musicgym.priors.train import SegmentSampler, TrainConfig, evaluate_log_likelihood, train

TINY = {"time_sizes": (8, 6), "note_sizes": (5, 4), "dropout": 0.0}


def tiny_model(seed: int = 0, **overrides) -> BiaxialLSTM:
    torch.manual_seed(seed)
    config = BiaxialConfig(**{"lowest_pitch": 48, "num_pitches": 16, **TINY, **overrides})
    return BiaxialLSTM(config).eval()


def random_note_states(batch: int, steps: int, pitches: int, seed: int = 0) -> torch.Tensor:
    """``(B, T, N, 2)`` uint8 with articulate only where play."""
    g = torch.Generator().manual_seed(seed)
    play = (torch.rand(batch, steps, pitches, generator=g) < 0.3).to(torch.uint8)
    articulate = (torch.rand(batch, steps, pitches, generator=g) < 0.5).to(torch.uint8) & play
    return torch.stack([play, articulate], -1)


# --- input kernel ---------------------------------------------------------------------------------


def test_kernel_features_by_hand():
    """Pitches 60..63, vicinity 1: note 0 (C) struck, note 3 (Eb) held."""
    model = tiny_model(lowest_pitch=60, num_pitches=4, vicinity=1)
    frame = torch.zeros(1, 1, 4, 2)
    frame[0, 0, 0] = torch.tensor([1.0, 1.0])
    frame[0, 0, 3] = torch.tensor([1.0, 0.0])
    features = model.input_features(frame, torch.tensor([[5]]))[0, 0]  # (N, F)
    assert features.shape == (4, 1 + 12 + 6 + 12 + 4)

    def expected(pitch_class, position, vicinity, context_ones):
        context = np.zeros(12)
        context[list(context_ones)] = 1
        return np.concatenate(
            [[position], np.eye(12)[pitch_class], vicinity, context, [1, 0, 1, 0]]  # 5 = 0b0101
        )

    # lowest note: nothing below it (no wraparound to the held top note), itself struck
    np.testing.assert_allclose(
        features[0], expected(0, -4 / 32, [0, 0, 1, 1, 0, 0], {0, 3}), atol=1e-7
    )
    # note 1 (C#): C struck below, D silent above; C is 11 semitones above C#, Eb 2 above
    np.testing.assert_allclose(
        features[1], expected(1, -3 / 32, [1, 1, 0, 0, 0, 0], {11, 2}), atol=1e-7
    )
    # highest note: itself held, nothing above it
    np.testing.assert_allclose(
        features[3], expected(3, -1 / 32, [0, 0, 1, 0, 0, 0], {0, 9}), atol=1e-7
    )


@pytest.mark.parametrize("step, bits", [(0, [0, 0, 0, 0]), (6, [0, 1, 1, 0]), (15, [1, 1, 1, 1])])
def test_beat_bits(step, bits):
    model = tiny_model()
    features = model.input_features(torch.zeros(1, 1, 16, 2), torch.tensor([[step]]))
    assert features[0, 0, :, -4].tolist() == [float(bits[0])] * 16
    assert features[0, 0, 7, -4:].tolist() == [float(b) for b in bits]


@pytest.mark.parametrize("sounding", [0, 47])
def test_vicinity_reads_zero_beyond_the_edges(sounding):
    """Default 48 pitches, vicinity 12: one note at an edge shows only in its own window."""
    model = tiny_model(num_pitches=48)
    frame = torch.zeros(1, 1, 48, 2)
    frame[0, 0, sounding] = 1.0
    vicinity = model.input_features(frame, torch.zeros(1, 1, dtype=torch.long))[0, 0, :, 13:63]
    for n in range(48):
        window = vicinity[n].reshape(25, 2)  # offsets -12..12
        offset = sounding - n
        expected = torch.zeros(25, 2)
        if abs(offset) <= 12:
            expected[offset + 12] = 1.0
        assert torch.equal(window, expected), n


# --- likelihood -----------------------------------------------------------------------------------


def test_articulation_counts_only_where_the_note_plays():
    frames = torch.tensor([[[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]]])  # (1, N=3, 2)
    logits = torch.zeros(1, 3, 2)
    base = frame_log_likelihood(logits, frames)
    silent_note = logits.clone()
    silent_note[0, 1, 1] = 9.0  # articulate logit of the silent note
    assert torch.allclose(frame_log_likelihood(silent_note, frames), base)
    held_note = logits.clone()
    held_note[0, 2, 1] = 9.0  # articulate logit of the held note: counts
    assert not torch.allclose(frame_log_likelihood(held_note, frames), base)
    assert torch.allclose(base, torch.tensor([5 * math.log(0.5)]))
    assert torch.allclose(
        frame_log_likelihood(logits, frames, play_only=True), torch.tensor([3 * math.log(0.5)])
    )


@pytest.mark.parametrize("play_only", [False, True])
def test_log_likelihood_is_a_sum_of_bernoulli_log_probabilities(play_only):
    model = tiny_model()
    x = random_note_states(2, 5, 16)
    logits = model(x).detach().double()
    expected = np.zeros((2, 5))
    for b, t, n in np.ndindex(2, 5, 16):
        p_play = 1 / (1 + math.exp(-float(logits[b, t, n, 0])))
        p_art = 1 / (1 + math.exp(-float(logits[b, t, n, 1])))
        play, art = int(x[b, t, n, 0]), int(x[b, t, n, 1])
        expected[b, t] += math.log(p_play if play else 1 - p_play)
        if play and not play_only:
            expected[b, t] += math.log(p_art if art else 1 - p_art)
    got = model.log_likelihood(x, play_only=play_only)
    assert got.shape == (2, 5)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_forward_is_causal():
    """The logits of frame t depend on frames <= t only (frame t through the note axis)."""
    model = tiny_model()
    x = random_note_states(1, 6, 16)
    changed = x.clone()
    changed[:, 3:] = 1 - changed[:, 3:]
    changed[..., 1] &= changed[..., 0]
    assert torch.equal(model(x)[:, :3], model(changed)[:, :3])
    assert not torch.equal(model(x)[:, 3:], model(changed)[:, 3:])


# --- incremental API ------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{}, {"time_sizes": (7,), "note_sizes": (6, 5, 4)}])
def test_incremental_scores_equal_the_full_forward_pass(overrides):
    model = tiny_model(**overrides)
    assert isinstance(model, FramePrior)
    B, T, C = 3, 6, 4
    x = random_note_states(B, T, 16)
    full = model.log_likelihood(x)  # (B, T)
    decoys = random_note_states(B, T * C, 16, seed=1).reshape(B, T, C, 16, 2)
    state = model.initial_state(B)
    with torch.no_grad():
        for t in range(T):
            candidates = decoys[:, t].clone()
            candidates[:, 2] = x[:, t]  # the true frame among the candidates
            scores = model.score_frames(state, candidates)  # (B, C)
            assert scores.shape == (B, C)
            torch.testing.assert_close(scores[:, 2], full[:, t], rtol=1e-5, atol=1e-5)
            state = model.advance(state, x[:, t])


def naive_scores(model: BiaxialLSTM, time_out, candidates, play_only=False) -> torch.Tensor:
    """Every candidate scored on its own over every note: ``(B, C)``."""
    B, C = candidates.shape[:2]
    scores = torch.empty(B, C)
    for b in range(B):
        for c in range(C):
            logits = model._note_axis(time_out[b : b + 1], candidates[b, c][None])
            scores[b, c] = frame_log_likelihood(logits, candidates[b, c][None], play_only)[0]
    return scores


@pytest.mark.parametrize("groups", [None, 0, 1, 3, 6, 20])
@pytest.mark.parametrize("note_sizes", [(5,), (5, 4, 3)])
@pytest.mark.parametrize("play_only", [False, True])
def test_shared_prefix_scores_equal_the_naive_scores(groups, note_sizes, play_only):
    """Arbitrary candidates: dense and sparse frames, articulate-only bits, notes at the bottom
    and the top, silent frames; the shared-prefix path equals scoring each one on its own."""
    model = tiny_model(note_sizes=note_sizes)
    B, C, N = 5, 60, 16
    state = model.initial_state(B)
    state = model.advance(state, random_note_states(B, 1, N, seed=3)[:, 0])
    generator = torch.Generator().manual_seed(4)
    density = torch.rand(B, C, 1, 1, generator=generator) ** 3  # from near-silent to dense
    candidates = (torch.rand(B, C, N, 2, generator=generator) < density).float()
    candidates[:, :4] = 0.0  # silent
    candidates[:, 4, 0] = torch.tensor([1.0, 1.0])  # the lowest note only
    candidates[:, 5, -1] = torch.tensor([1.0, 0.0])  # the highest note, held
    candidates[:, 6, 7] = torch.tensor([0.0, 1.0])  # an articulation without play
    naive = naive_scores(model, state.time_out, candidates, play_only)
    with torch.no_grad():
        shared = model.score_candidates(state.time_out, candidates, play_only, groups)
    torch.testing.assert_close(shared, naive, atol=1e-5, rtol=1e-5)
    if groups is None:  # score_frames takes the same path
        scores = model.score_frames(state, candidates, play_only)
        torch.testing.assert_close(scores, naive, atol=1e-5, rtol=1e-5)


def test_shared_prefix_scores_are_differentiable():
    model = tiny_model()
    time_out = model.initial_state(2).time_out.detach().requires_grad_()
    candidates = torch.rand(2, 200, 16, 2, generator=torch.Generator().manual_seed(0)) < 0.1
    scores = model.score_candidates(time_out, candidates.float(), groups=4)
    scores.sum().backward()
    assert time_out.grad is not None and time_out.grad.abs().sum() > 0
    assert model.note_lstms[0].weight_hh_l0.grad.abs().sum() > 0


def test_select_and_assign_state_move_whole_streams():
    model = tiny_model()
    x = random_note_states(3, 4, 16)
    full = model.log_likelihood(x)
    state = model.initial_state(3)
    for t in range(3):
        state = model.advance(state, x[:, t])
    reversed_state = model.select_state(state, torch.tensor([2, 1, 0]))
    scores = model.score_frames(reversed_state, x[[2, 1, 0], 3][:, None])[:, 0]
    torch.testing.assert_close(scores, full[[2, 1, 0], 3], rtol=1e-5, atol=1e-5)
    # reset stream 1 to the start: it scores frame 0 again
    fresh = model.initial_state(1)
    state = model.assign_state(state, torch.tensor([1]), fresh)
    scores = model.score_frames(state, x[:, None, 0])[:, 0]
    torch.testing.assert_close(scores[1], full[1, 0], rtol=1e-5, atol=1e-5)
    assert state.step.tolist() == [3, 0, 3]


# --- sampling -------------------------------------------------------------------------------------


def test_sampling_is_reproducible_by_seed():
    model = tiny_model()
    first = model.sample(12, seed=3)
    assert first.matrix.shape == (12, 16, 2)
    assert np.array_equal(first.matrix, model.sample(12, seed=3).matrix)
    assert not np.array_equal(first.matrix, model.sample(12, seed=4).matrix)


def test_sampling_continues_a_primer():
    model = tiny_model()
    primer = NoteState(random_note_states(1, 5, 16)[0].numpy(), 48, 4)
    piece = model.sample(7, primer=primer, seed=0)
    assert piece.num_steps == 12
    assert np.array_equal(piece.matrix[:5], primer.matrix)


def test_avoid_silence_breaks_long_silences():
    model = tiny_model()
    with torch.no_grad():
        model.head.bias[0] = -12.0  # P(play) ~ 6e-6 per note
    assert model.sample(50, seed=0, avoid_silence=False).play.sum() == 0
    assert model.sample(50, seed=0, avoid_silence=True).play.sum() > 0


# --- training -------------------------------------------------------------------------------------


def test_a_few_optimizer_steps_lower_the_loss():
    model = tiny_model().train()
    x = torch.zeros(4, 16, 16, 2, dtype=torch.uint8)
    for t in range(16):  # a repeating broken chord: nearly deterministic given the past
        x[:, t, [t % 4, 4 + t % 4, 9], 0] = 1
        x[:, t, [t % 4, 4 + t % 4], 1] = 1
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-2)
    losses = []
    for _ in range(40):
        loss = -model.log_likelihood(x).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0]


def test_segments_start_on_bars_and_stay_in_range():
    pieces = [NoteState(random_note_states(1, 40, 16, seed=i)[0].numpy(), 48, 1) for i in range(3)]
    sampler = SegmentSampler(pieces, 16, 4, 6, torch.Generator().manual_seed(0))
    assert all(start % 4 == 0 and start + 16 <= 40 for _, start in sampler.starts)
    segments, mask = sampler.batch(8)
    assert segments.shape == (8, 16, 16, 2) and mask.shape == (8, 16)
    assert (segments[..., 1] <= segments[..., 0]).all()
    played = [int(p.play.sum()) for p in pieces]  # transposition keeps every note
    assert int(segments[..., 0].sum()) > 0 and max(played) > 0


@pytest.fixture
def jsb_file(tmp_path):
    """A small JSB-format file: chords cycling through a progression."""
    rng = np.random.default_rng(0)
    chords = [[60, 64, 67], [62, 65, 69], [59, 62, 67], [60, 64, 67, 72]]

    def piece():
        length = int(rng.integers(12, 24))
        return [chords[(t // 2) % 4] for t in range(length)]

    data = {
        split: [piece() for _ in range(n)] for split, n in (("train", 6), ("valid", 2), ("test", 2))
    }
    path = tmp_path / "jsb.json"
    path.write_text(json.dumps(data))
    return path


def tiny_train_config(jsb_file, run_dir, **overrides) -> TrainConfig:
    values = {
        "data": f"jsb:{jsb_file}",
        "run_dir": str(run_dir),
        "resolution": 1,
        "lowest_pitch": 55,
        "num_pitches": 24,
        "time_sizes": (8,),
        "note_sizes": (6,),
        "dropout": 0.1,
        "learning_rate": 1e-2,
        "batch_size": 4,
        "segment_bars": 2,
        "valid_every": 3,
        "max_steps": 9,
        "threads": 1,
        "progress": False,
    }
    values.update(overrides)
    return TrainConfig(**values)


def test_training_improves_valid_and_resume_continues_exactly(jsb_file, tmp_path):
    straight = train(tiny_train_config(jsb_file, tmp_path / "a", max_steps=9))
    history = load_checkpoint(tmp_path / "a" / "last.pt")["history"]
    assert history[-1][3] > history[0][3]  # valid log-likelihood went up

    train(tiny_train_config(jsb_file, tmp_path / "b", max_steps=5))
    stopped = load_checkpoint(tmp_path / "b" / "last.pt")
    assert stopped["step"] == 5
    resumed = train(tiny_train_config(jsb_file, tmp_path / "b", max_steps=9, resume=True))
    assert resumed["step"] == straight["step"] == 9
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    for name, weight in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], weight, rtol=0, atol=0)
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"] == 9
    torch.testing.assert_close(
        a["optimizer"]["state"][0]["exp_avg_sq"], b["optimizer"]["state"][0]["exp_avg_sq"]
    )


def test_shipped_copy_and_model_card(jsb_file, tmp_path):
    out = tmp_path / "ship" / "tiny.pt"
    summary = train(tiny_train_config(jsb_file, tmp_path / "run", max_steps=3, out=str(out)))
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["command"].startswith("musicgym prior train --data jsb:")
    assert card["likelihood"] == "play bits only"
    assert card["test_log_likelihood_per_step"] == pytest.approx(
        summary["test_log_likelihood_per_step"]
    )
    shipped = load_checkpoint(out)
    assert "optimizer" not in shipped
    model = load_frame_prior(out)
    from musicgym.priors.data import load_dataset

    test = load_dataset(f"jsb:{jsb_file}", lowest_pitch=55, num_pitches=24).test
    assert evaluate_log_likelihood(model, test, play_only=True) == pytest.approx(
        card["test_log_likelihood_per_step"]
    )


# --- checkpoints ----------------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path):
    model = tiny_model(seed=5, dropout=0.3)
    path = tmp_path / "prior.pt"
    save_checkpoint(path, model, step=17, best_valid=-3.5, data={"name": "synthetic"})
    assert not list(tmp_path.glob("*.tmp"))
    checkpoint = load_checkpoint(path)
    assert (checkpoint["model"], checkpoint["step"], checkpoint["best_valid"]) == (
        "biaxial-lstm",
        17,
        -3.5,
    )
    loaded = load_frame_prior(path)
    assert loaded.config == model.config
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x = random_note_states(2, 5, 16)
    torch.testing.assert_close(loaded.log_likelihood(x), model.log_likelihood(x), rtol=0, atol=0)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "gpt.pt"
    torch.save({"model": "nanogpt", "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=r"gpt\.pt: model 'nanogpt', which no installed"):
        load_frame_prior(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "truncated"])
def test_corrupt_checkpoint_is_refused(tmp_path, content):
    path = tmp_path / "broken.pt"
    if content == "truncated":
        save_checkpoint(path, tiny_model())
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"broken\.pt") as error:
        load_frame_prior(path)
    assert "\n" not in str(error.value)


def test_weights_of_another_shape_are_refused(tmp_path):
    path = tmp_path / "odd.pt"
    save_checkpoint(path, tiny_model())
    checkpoint = load_checkpoint(path)
    checkpoint["config"]["time_sizes"] = (9, 6)
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_frame_prior(path)


def test_unknown_prior_name_is_refused():
    with pytest.raises(CheckpointError, match="no shipped prior"):
        load_frame_prior("no-such-prior")


# --- shipped checkpoints --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, resolution",
    [("bach16", 4), ("melody16", 4), ("melody16c", 4), ("note_rnn", 4), ("jsb_quarter", 1)],
)
def test_shipped_priors_load_by_name_with_their_card(name, resolution):
    path = CHECKPOINT_DIR / f"{name}.pt"
    assert path.stat().st_size < 20e6
    model = load_frame_prior(name)
    assert model.resolution == resolution
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    card = json.loads(path.with_suffix(".json").read_text())
    checkpoint = load_checkpoint(path)
    assert card["step"] == checkpoint["step"]
    assert card["valid_log_likelihood_per_step"] == checkpoint["valid_log_likelihood"]
    assert card["command"].startswith("musicgym prior train")


def test_bach16_covers_the_melody_tokens_and_samples_music():
    model = load_frame_prior("bach16")
    assert model.lowest_pitch <= 48 and model.lowest_pitch + model.num_pitches - 1 >= 83
    piece = model.sample(32, seed=0)
    polyphony = piece.play.sum(axis=1)
    assert 2 <= polyphony.mean() <= 6  # four-part writing, not silence or noise


def test_melody16_is_a_melody_prior_over_exactly_the_melody_tokens():
    model = load_frame_prior("melody16")
    assert (model.lowest_pitch, model.num_pitches) == (48, 36)  # MIDI 48..83: tokens 2..37
    polyphony = model.sample(64, seed=0).play.sum(axis=1)
    assert polyphony.max() <= 2 and polyphony.mean() >= 0.5  # one line, mostly sounding


# --- training speed: chunked LSTM calls and shared dropout masks ---------------------------------


@pytest.mark.parametrize("name", ["bach16", "jsb_quarter", "melody16", "melody16c"])
def test_chunked_lstm_calls_give_the_whole_calls_log_likelihoods(name, monkeypatch):
    from musicgym.priors import model as prior_model

    model = load_frame_prior(name)
    x = random_note_states(8, 64, model.num_pitches, seed=3)  # 8 x 64 x N rows: chunked
    assert 8 * 64 * model.num_pitches > prior_model.CHUNK_MIN_ROWS
    chunked = model.log_likelihood(x)
    monkeypatch.setattr(prior_model, "CHUNK_MIN_ROWS", math.inf)
    torch.testing.assert_close(chunked, model.log_likelihood(x), rtol=1e-5, atol=1e-4)


def test_shipped_jsb_quarter_scores_the_test_figure_of_its_card():
    from musicgym.priors.data import load_dataset
    from tests.test_data import JSB_QUARTER as DEFAULT_JSB

    if not DEFAULT_JSB.is_file():
        pytest.skip(f"{DEFAULT_JSB} is not there")
    model = load_frame_prior("jsb_quarter")
    card = json.loads((CHECKPOINT_DIR / "jsb_quarter.json").read_text())
    test = load_dataset(
        f"jsb:{DEFAULT_JSB}", lowest_pitch=model.lowest_pitch, num_pitches=model.num_pitches
    ).test
    assert evaluate_log_likelihood(model, test, play_only=True) == pytest.approx(
        card["test_log_likelihood_per_step"], abs=1e-4
    )


def test_dropout_masks_are_shared_along_each_sequence():
    model = tiny_model(seed=2, time_sizes=(32,), dropout=0.5).train()
    x = random_note_states(3, 20, 16, seed=4).float()
    features = model.input_features(x, torch.arange(20).expand(3, 20))
    time_out, _ = model._time_axis(features)  # (B, T, N, H)
    dropped = time_out == 0  # an LSTM output is never exactly 0 unless dropped
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # one mask for all steps
    assert 0.35 < dropped.float().mean() < 0.65
    assert not (model.eval()._time_axis(features)[0] == 0).any()  # no dropout in eval mode
