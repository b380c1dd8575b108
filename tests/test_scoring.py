"""The Bi-axial LSTM's fast scoring paths equal a straightforward computation on every shipped
Bi-axial prior: candidate frames (``score_frames``), the melody env's action log-probabilities and
the chorale env's note-axis log-probabilities, over several steps of real states."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from musicgym.envs.decisions import DecisionStepper
from musicgym.envs.stepper import TokenStepper
from musicgym.music.keys import Key
from musicgym.prior import resolve_prior
from musicgym.prior_frames import candidate_frames, renormalise
from musicgym.priors.model import BiaxialLSTM, frame_log_likelihood
from musicgym.priors.registry import shipped_priors

BIAXIAL = [name for name in shipped_priors() if isinstance(resolve_prior(name), BiaxialLSTM)]
TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}  # float32 carries ~7 digits of a -40 frame


def test_every_shipped_biaxial_prior_is_covered():
    assert {"bach16", "jsb_quarter", "melody16", "melody16c"} <= set(BIAXIAL)


@pytest.fixture(scope="module", params=BIAXIAL)
def prior(request) -> BiaxialLSTM:
    return resolve_prior(request.param)


def reference_scores(prior: BiaxialLSTM, time_out: torch.Tensor, candidates: torch.Tensor):
    """Every candidate frame ``(B, C, N, 2)`` scored on its own: the note axis teacher-forced
    over all its notes, one ``nn.LSTM`` call per layer, then the log-likelihood: ``(B, C)``."""
    B, C, N, _ = candidates.shape
    frames = candidates.float().reshape(B * C, N, 2)
    x = torch.cat([time_out.repeat_interleave(C, 0), F.pad(frames[:, :-1], (0, 0, 1, 0))], -1)
    for lstm in prior.note_lstms:
        x, _ = lstm(x)
    return frame_log_likelihood(prior.head(x), frames).view(B, C)


@torch.no_grad()
@pytest.mark.parametrize("B", [1, 64])
def test_score_frames_of_chorale_like_frames_equal_the_reference(prior, B):
    """Random frames of 1 to 6 notes, silent frames and the lowest and highest notes, from the
    states of random pieces: one stream (dense, layer 0's time-axis projection selected per
    note) and 64 (the wave path)."""
    C, N = 8, prior.num_pitches
    generator = torch.Generator().manual_seed(0)
    state = prior.initial_state(B)
    for _ in range(3):
        notes = torch.rand(B, C, N, generator=generator).argsort(-1) < torch.randint(
            1, 7, (B, C, 1), generator=generator
        )
        articulated = torch.rand(B, C, N, generator=generator) < 0.7
        candidates = torch.stack([notes, notes & articulated], -1).float()
        candidates[:, 0] = 0.0
        candidates[:, 1, 0], candidates[:, 2, -1] = 1.0, torch.tensor([1.0, 0.0])
        scores = prior.score_frames(state, candidates)
        torch.testing.assert_close(
            scores, reference_scores(prior, state.time_out, candidates), **TOLERANCE
        )
        state = prior.advance(state, candidates[:, 3])


@torch.no_grad()
@pytest.mark.parametrize("B", [1, 64])
def test_melody_action_log_probs_equal_the_reference_over_a_melody(prior, B):
    """``log p(a | s)`` of the 38 tokens of ``B`` melodies (each in its own key) along random
    melodies, as the environment computes them, against the reference scores renormalised: one
    env (layer 0's time-axis projection selected per note) and 64 (the wave path)."""
    names = ("C major", "D major", "A minor", "F# major")
    keys = [Key.parse(names[i % len(names)]) for i in range(B)]
    stepper = TokenStepper(prior, B)
    stepper.restart(list(range(B)), [[]] * B, keys)
    rng = np.random.default_rng(0)
    for _ in range(6):
        log_probs = stepper.action_log_probs()
        lowest = prior.lowest_pitch - stepper.transpose
        candidates = candidate_frames(stepper.sounding, lowest, prior.num_pitches)
        scores = reference_scores(prior, stepper.state.time_out, candidates)
        expected = renormalise(scores.double(), stepper.sounding < 0)
        torch.testing.assert_close(log_probs, expected, **TOLERANCE)
        stepper.play(torch.as_tensor(rng.integers(0, 38, B)))


@torch.no_grad()
def test_chorale_note_log_probs_equal_the_reference_over_several_decisions(prior):
    """The note axis' ``(not played, articulated, held)`` log-probabilities at every undecided
    pitch of 8 streams, decision by decision through two frames, against the note axis run over
    each stream's frame so far on its own."""
    B, N = 8, prior.num_pitches
    stepper = DecisionStepper(N, B, prior)
    rng = np.random.default_rng(1)
    frames_done = np.zeros(B, int)
    while frames_done.min() < 2:
        scores = prior.note_log_probs(stepper.state, stepper.note_axis)  # (B, N, 3)
        for b in range(B):
            decided = torch.as_tensor(stepper.frame[b], dtype=torch.float32)[None]
            x = torch.cat(
                [stepper.state.time_out[b : b + 1], F.pad(decided[:, :-1], (0, 0, 1, 0))], -1
            )
            for lstm in prior.note_lstms:
                x, _ = lstm(x)
            logits = prior.head(x)[0]
            expected = torch.stack(
                [
                    F.logsigmoid(-logits[:, 0]),
                    F.logsigmoid(logits[:, 0]) + F.logsigmoid(logits[:, 1]),
                    F.logsigmoid(logits[:, 0]) + F.logsigmoid(-logits[:, 1]),
                ],
                -1,
            )
            open_pitch = int(stepper.next_pitch[b])
            expected[:open_pitch] = -math.inf
            torch.testing.assert_close(scores[b], expected, **TOLERANCE)
        valid = stepper.valid_actions()
        ending = rng.random(B) < 0.3
        actions = np.array(
            [len(v) - 1 if end else rng.choice(np.flatnonzero(v)) for v, end in zip(valid, ending)]
        )
        frames_done += np.array([i in stepper.decide(actions, np.ones(B, bool)) for i in range(B)])
