"""``musicgym bench chorales --weights``: the measurements behind the weights of a chorale rule
preset (:func:`rule_weight_evidence`), and ``--profiles``: Bach's profiles
(:func:`bach_profiles`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from musicgym.benchmarks.agents_bench import AgentsBenchConfig, reference_data
from musicgym.config import CHORALE_DEFAULTS
from musicgym.errors import ArgumentError
from musicgym.music.harmony import find_key, sonority
from musicgym.tasks import CHOOSING_SPLIT, CHORALE

MIN_DIFFERENCE = 0.5
"""How much lower than Bach's frame a rule must value a sample for the sample to break it. The
spec's rules count whole violations (differences of 1 or more), so for them it changes nothing;
a profile rule (:class:`~musicgym.rules.chorale.ProfileRule`) in Bach's own states, whose profile
is already near Bach's, values most samples only a little lower than Bach's frame, and the gap per
unit of so small a difference would ask for a weight that buys nothing where it matters. Half a
nat is about what a note costs, near the piece's end, of a pitch class the piece plays 1.65
times as often as Bach."""

WINNING_PERCENTILE = 90.0
"""The percentile of what the prior gains by breaking a rule at which the measured weight wins
by default: such a weight makes the rule win in 9 of 10 states where the prior would break it."""


def rule_weight_evidence(
    prior_name: str = CHORALE_DEFAULTS.prior,
    bars: int = 4,
    samples: int = 16,
    seed: int = 0,
    c: float = CHORALE_DEFAULTS.c,
    rules: str = CHORALE_DEFAULTS.rules,
    ending_bars: int = 1,
    min_difference: float = MIN_DIFFERENCE,
    percentile: float = WINNING_PERCENTILE,
    split: str = CHOOSING_SPLIT,
) -> dict[str, dict[str, float]]:
    """What each rule of ``rules`` (a preset name or rule names, default ``"chorale"``) must
    outweigh: in every state of Bach's chorales of ``split`` (the validation split by default:
    the bench's Bach column cut from it,
    :func:`~musicgym.benchmarks.agents_bench.reference_data`, teacher-forced), ``samples``
    frames are drawn from the prior; among those the rule judges worse than Bach's own frame,
    the most likely one's ``log p`` gap to Bach's frame, per unit of the rule's value, is what
    the prior gains by breaking the rule there (a sample breaks it when the rule values it at
    least ``min_difference`` below Bach's frame: every sample the rule judges worse for the
    rules of whole violations, and for the profile rules a difference that matters, see
    :data:`MIN_DIFFERENCE`). A rule that judges the ending only
    (:class:`~musicgym.rules.chorale.EndingRule`) is measured on endings instead: from
    ``ending_bars`` bars before each chorale's end, ``samples`` endings are drawn frame by
    frame, and the gap is the most likely worse ending's ``log p`` less that of Bach's ending. A
    weight of at least ``c`` times the gap makes the rule win. Prints and returns, per rule, the
    states with such a sample, the median and the ``percentile``-th percentile of the gap, the
    weight that wins there (``c`` times that percentile), and the weight ``rules`` gives it."""
    import torch

    from musicgym.agents.common import load_prior
    from musicgym.rules import ChoraleContext, parse_rules, resolve_rules
    from musicgym.rules.chorale import EndingRule

    prior = load_prior(prior_name)
    weighted = resolve_rules(parse_rules(rules), ChoraleContext)
    generator = torch.Generator().manual_seed(seed)
    gaps: dict[str, list[float]] = {rule.name: [] for rule, _ in weighted}
    frame_rules = [rule for rule, _ in weighted if not isinstance(rule, EndingRule)]
    ending_rules = [rule for rule, _ in weighted if isinstance(rule, EndingRule)]
    states = 0
    config = AgentsBenchConfig(env=CHORALE.env_id, prior=prior_name, bars=bars, split=split)
    reference = reference_data(config)
    if reference is None:
        raise ArgumentError(f"prior {prior_name}: no Bach chorales to measure the rules on")
    for piece in reference[1]:
        key, frames = find_key(piece), torch.from_numpy(piece.matrix.astype(np.float32))
        length, resolution = len(frames), piece.resolution
        ending_start = max(0, length - ending_bars * 4 * resolution)
        state, chords, bach_log_p, endings = prior.initial_state(samples), [], [], None
        for t, frame in enumerate(frames):
            if t == ending_start and ending_rules:
                endings = _sample_endings(prior, state, length - t, samples, generator)
            drawn = prior.sample_frames(state, generator)  # (S, N, 2)
            candidates = torch.cat([frame[None], drawn])[None]
            first = prior.select_state(state, torch.zeros(1, dtype=torch.long))
            scores = prior.score_frames(first, candidates)[0].double().numpy()
            bach_log_p.append(scores[0])
            own = sonority(piece.matrix[t], piece.lowest_pitch)
            others = [sonority(d, piece.lowest_pitch) for d in drawn.numpy()]
            for rule in frame_rules:
                context = ChoraleContext(tuple(chords), own, length, key, resolution)
                bach_value, best = rule(context), None
                for k, chord in enumerate(others):
                    value = rule(ChoraleContext(tuple(chords), chord, length, key, resolution))
                    if value <= bach_value - min_difference:
                        gap = (scores[k + 1] - scores[0]) / (bach_value - value)
                        best = gap if best is None else max(best, gap)
                if best is not None:
                    gaps[rule.name].append(best)
            chords.append(own)
            states += 1
            state = prior.advance(state, frame[None].expand(samples, -1, -1))
        if endings is None:
            continue
        ending_frames, ending_log_p = endings
        bach_ending_log_p = float(np.sum(bach_log_p[ending_start:]))
        before = tuple(chords[:ending_start])
        for rule in ending_rules:
            own = ChoraleContext(tuple(chords[:-1]), chords[-1], length, key, resolution)
            bach_value, best = rule.ending(own), None
            for drawn, log_p in zip(ending_frames, ending_log_p):
                ending = [sonority(f, piece.lowest_pitch) for f in drawn]
                sampled = (*before, *ending)
                context = ChoraleContext(sampled[:-1], sampled[-1], length, key, resolution)
                value = rule.ending(context)
                if value <= bach_value - min_difference:
                    gap = (log_p - bach_ending_log_p) / (bach_value - value)
                    best = gap if best is None else max(best, gap)
            if best is not None:
                gaps[rule.name].append(best)
    evidence = {}
    print(f"{states} states of Bach's {split} chorales, {samples} prior samples each, c = {c}")
    if ending_rules:
        print(
            f"rules on the ending ({', '.join(r.name for r in ending_rules)}): {samples} endings "
            f"of {ending_bars} bar(s) sampled from each chorale's state before them"
        )
    tail = f"p{percentile:g}"
    print(f"{'rule':<26} {'states':>7} {'median':>8} {tail:>8} {'wins':>6} {'preset':>7}")
    for rule, weight in weighted:
        found = np.asarray(gaps[rule.name])
        median, high = (
            (np.median(found), np.percentile(found, percentile)) if found.size else (0.0, 0.0)
        )
        evidence[rule.name] = {
            "states": float(found.size),
            "median_gap": float(median),
            "percentile": percentile,
            "percentile_gap": float(high),
            "winning_weight": float(max(c * high, 0.0)),
            "preset_weight": weight,
        }
        print(
            f"{rule.name:<26} {found.size:>7d} {median:>8.2f} {high:>8.2f} "
            f"{max(c * high, 0.0):>6.2f} {weight:>7.1f}"
        )
    return evidence


def _sample_endings(
    prior: Any, state: Any, frames: int, samples: int, generator: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``samples`` endings of ``frames`` frames drawn from the prior from ``state`` (of
    ``samples`` streams, left as it was): their frames ``(S, F, N, 2)`` and ``log p`` ``(S,)``."""
    import torch

    state = prior.select_state(state, torch.arange(samples))  # a copy: advance may update in place
    drawn, log_p = [], torch.zeros(samples, dtype=torch.float64)
    for _ in range(frames):
        frame = prior.sample_frames(state, generator)  # (S, N, 2)
        log_p += prior.score_frames(state, frame[:, None])[:, 0].double()
        drawn.append(frame)
        state = prior.advance(state, frame)
    return torch.stack(drawn, 1).numpy(), log_p.numpy()


def bach_profiles(prior_name: str = CHORALE_DEFAULTS.prior) -> dict[str, dict[str, list[float]]]:
    """The shares of every :data:`~musicgym.music.harmony.PROFILES` category in the training
    split of the prior's chorales, each piece in the key
    :func:`~musicgym.music.harmony.find_key` finds
    (:func:`~musicgym.metrics.chorale.profile_shares`), rounded to 4 places: what
    :data:`~musicgym.music.harmony.BACH_PROFILES` holds. Prints and returns them."""
    from musicgym.metrics.chorale import profile_shares
    from musicgym.priors.data import load_dataset
    from musicgym.priors.registry import read_checkpoint

    data = read_checkpoint(prior_name).get("data") or {}
    if "name" not in data:
        raise ArgumentError(f"prior {prior_name}: its checkpoint names no dataset")
    dataset = load_dataset(
        data["name"],
        resolution=data.get("resolution"),
        lowest_pitch=data.get("lowest_pitch"),
        num_pitches=data.get("num_pitches"),
        progress=True,
    )
    shares = profile_shares(dataset.train)
    rounded = {
        name: {mode: [round(s, 4) for s in modes[mode]] for mode in sorted(modes)}
        for name, modes in shares.items()
    }
    print(f"the {len(dataset.train)} training chorales of {data['name']}:")
    for name, modes in rounded.items():
        for mode, values in modes.items():
            print(f"{name} {mode}: {values}")
    return rounded
