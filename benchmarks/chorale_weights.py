"""``musicgym bench chorales --weights``: the measurements behind the weights of the ``"chorale"``
rule preset (:func:`rule_weight_evidence`)."""

from __future__ import annotations

import numpy as np

from musicgym.benchmarks.agents_bench import AgentsBenchConfig, reference_data
from musicgym.config import CHORALE_DEFAULTS
from musicgym.errors import ArgumentError
from musicgym.metrics import find_key
from musicgym.tasks import CHORALE


def rule_weight_evidence(
    prior_name: str = CHORALE_DEFAULTS.prior,
    bars: int = 4,
    samples: int = 16,
    seed: int = 0,
    c: float = CHORALE_DEFAULTS.c,
) -> dict[str, dict[str, float]]:
    """What each rule of the ``"chorale"`` preset must outweigh: in every state of Bach's test
    chorales (the bench's Bach column, :func:`~musicgym.benchmarks.agents_bench.reference_data`,
    teacher-forced), ``samples`` frames are drawn from the prior; among those the rule judges
    worse than Bach's own frame, the most likely one's ``log p`` gap
    to Bach's frame, per unit of the rule's value, is what the prior gains by breaking the rule
    there. A weight of at least ``c`` times that gap makes the rule win. Prints and returns, per
    rule, the states with such a sample, the median and 90th percentile of the gap, the weight
    that wins at the 90th percentile, and the preset's weight."""
    import torch

    from musicgym.agents.common import load_prior
    from musicgym.metrics.chorale import sonority
    from musicgym.rules import PRESETS, ChoraleContext, resolve_rules

    prior = load_prior(prior_name)
    rules = resolve_rules(PRESETS["chorale"], ChoraleContext)
    generator = torch.Generator().manual_seed(seed)
    gaps: dict[str, list[float]] = {rule.name: [] for rule, _ in rules}
    states = 0
    config = AgentsBenchConfig(env=CHORALE.env_id, prior=prior_name, bars=bars)
    reference = reference_data(config)
    if reference is None:
        raise ArgumentError(f"prior {prior_name}: no Bach chorales to measure the rules on")
    for piece in reference[1]:
        key, frames = find_key(piece), torch.from_numpy(piece.matrix.astype(np.float32))
        state, chords = prior.initial_state(samples), []
        for t, frame in enumerate(frames):
            drawn = prior.sample_frames(state, generator)  # (S, N, 2)
            candidates = torch.cat([frame[None], drawn])[None]
            first = prior.select_state(state, torch.zeros(1, dtype=torch.long))
            scores = prior.score_frames(first, candidates)[0].double().numpy()
            own = sonority(piece.matrix[t], piece.lowest_pitch)
            others = [sonority(d, piece.lowest_pitch) for d in drawn.numpy()]
            for rule, _ in rules:
                context = ChoraleContext(tuple(chords), own, len(frames), key, piece.resolution)
                bach_value, best = rule(context), None
                for k, chord in enumerate(others):
                    value = rule(ChoraleContext(tuple(chords), chord, len(frames), key))
                    if value < bach_value:
                        gap = (scores[k + 1] - scores[0]) / (bach_value - value)
                        best = gap if best is None else max(best, gap)
                if best is not None:
                    gaps[rule.name].append(best)
            chords.append(own)
            states += 1
            state = prior.advance(state, frame[None].expand(samples, -1, -1))
    evidence = {}
    print(f"{states} states of Bach's test chorales, {samples} prior samples each, c = {c}")
    print(f"{'rule':<26} {'states':>7} {'median':>8} {'p90':>8} {'wins':>6} {'preset':>7}")
    for rule, weight in rules:
        found = np.asarray(gaps[rule.name])
        median, p90 = (np.median(found), np.percentile(found, 90)) if found.size else (0.0, 0.0)
        evidence[rule.name] = {
            "states": float(found.size),
            "median_gap": float(median),
            "p90_gap": float(p90),
            "winning_weight": float(max(c * p90, 0.0)),
            "preset_weight": weight,
        }
        print(
            f"{rule.name:<26} {found.size:>7d} {median:>8.2f} {p90:>8.2f} "
            f"{max(c * p90, 0.0):>6.2f} {weight:>7.1f}"
        )
    return evidence
