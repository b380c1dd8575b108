"""The constrained fine-tuner (musicgym.agents.dpg): constraints parsed and judged per piece, the
multipliers' bounded steps, a round that raises a short constraint's share, exact resume, bad
settings in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicgym.agents.dpg import (
    OUTCOME_COUNTS,
    DPGConfig,
    outcome_tilts,
    parse_constraints,
    step_multipliers,
)
from musicgym.agents.dpo import play_round
from musicgym.agents.rl_tuner import RLTuner
from musicgym.agents.rl_tuner.targets import make_optimizer
from musicgym.cli import main
from musicgym.metrics import statistic_contributions
from musicgym.music.melody import RULE_OUTCOMES
from tests.test_agents import tiny_prior
from tests.test_dpo import piece_likelihoods, resumed_equals_straight


class Writer:
    def add_scalar(self, *args):
        pass


def test_a_constraint_is_met_where_its_mean_gap_is_not_negative():
    at_least, at_most = parse_constraints("notes_in_motif>=50, notes_not_in_key <= 25")
    assert at_least.at_least and not at_most.at_least and at_most.target == 25
    # 8 tokens: C D E F (in key, a motif from the 3rd distinct pitch on), then F# held
    melodies = [[14, 16, 18, 19, 20, 1, 1, 1], [14, 1, 1, 1, 1, 1, 1, 1]]
    contributions = statistic_contributions(melodies, "C major")
    in_motif = contributions["notes_in_motif"][:, 0]  # steps in a motif of each melody
    np.testing.assert_allclose(at_least.shares(contributions), in_motif - 4)
    np.testing.assert_allclose(at_most.shares(contributions), [-(1 - 2), -(0 - 2)])


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("notes_in_motif>60", "is not STATISTIC>=N"),
        ("notes_in_moti>=60", "not a percentage statistic"),
        ("autocorrelation_lag1<=10", "not a percentage statistic"),
        ("notes_in_motif>=160", "expected 0 to 100"),
    ],
)
def test_a_bad_constraint_says_which(text, says):
    with pytest.raises(Exception, match=says):
        parse_constraints(text)


def step(constraints, integrals, gaps, config):
    """:func:`step_multipliers` after a round of pieces with ``gaps``, its own variance alone."""
    return step_multipliers(constraints, integrals, gaps.mean(0), gaps.var(0), config)


def test_multipliers_step_toward_their_constraint_no_further_than_the_bound():
    constraints = parse_constraints("notes_in_motif>=50,notes_not_in_key<=10")
    config = DPGConfig(multiplier_rate=1.0, max_tilt=0.5, proportional_gain=0.0)
    gaps = np.array([[-4.0, 1.0], [-2.0, 1.0], [-3.0, 1.0]])  # motif short; key met, no spread
    integrals, multipliers = step(constraints, np.array([0.0, 0.2]), gaps, config)
    spread = gaps[:, 0].std()
    assert integrals["notes_in_motif"] == pytest.approx(0.5 / spread)  # the bound, not 3 / var
    assert integrals["notes_not_in_key"] == 0.0  # met by 1 a piece: down, never below 0
    assert multipliers == integrals  # no proportional term
    small, _ = step(constraints, np.zeros(2), gaps * 0.01, config)
    assert 0 < small["notes_in_motif"] < 0.5 / (spread * 0.01)


def test_the_proportional_term_answers_this_rounds_gap_alone():
    constraints = parse_constraints("melodies_starting_with_tonic>=50")
    config = DPGConfig(multiplier_rate=0.1, proportional_gain=2.0, max_tilt=10.0)
    above = np.array([[0.5], [0.5], [-0.5]])  # two of three start on the tonic: above 50%
    integrals, multipliers = step(constraints, np.array([1.0]), above, config)
    newton = -above.mean() / above.var()
    assert integrals["melodies_starting_with_tonic"] == pytest.approx(1.0 + 0.1 * newton)
    expected = max(0.0, integrals["melodies_starting_with_tonic"] + 2.0 * newton)
    assert multipliers["melodies_starting_with_tonic"] == pytest.approx(expected)


def test_the_policy_tilts_each_rule_outcome_as_the_target_does():
    constraints = parse_constraints("leaps_resolved>=96,notes_excessively_repeated<=0")
    assert list(OUTCOME_COUNTS) == list(RULE_OUTCOMES)
    tilts = outcome_tilts(constraints, np.array([2.0, 5.0]))
    # resolve, double, repeat excessively; the other outcomes are not constrained here
    np.testing.assert_allclose(tilts, [2 * (1 - 0.96), 2 * -0.96, -5.0, 0, 0, 0, 0])
    config = DPGConfig(length=16, constraints="leaps_resolved>=96,notes_excessively_repeated<=0")
    agent = RLTuner(config.tuner_config(), tiny_prior())
    config.start_round(agent, {"multipliers": {"leaps_resolved": 2.0}})
    weights = agent.q_network.rule_weights
    torch.testing.assert_close(weights, torch.tensor([0.08, -1.92, 0, 0, 0, 0, 0]))
    assert not weights.requires_grad  # set from the multipliers, not learned
    optimizer = make_optimizer(agent.config, agent.q_network)
    assert all(p is not weights for group in optimizer.param_groups for p in group["params"])


def test_a_round_moves_the_policy_toward_pieces_that_meet_a_short_constraint():
    torch.manual_seed(0)
    config = DPGConfig(pieces=32, epochs=8, learning_rate=3e-3, length=16,
                       constraints="notes_not_in_key<=0")  # fmt: skip
    agent = RLTuner(config.tuner_config(), tiny_prior())
    episodes = agent.play(32, seed=4, record=True)
    with torch.no_grad():
        policy, prior = piece_likelihoods(agent, episodes)
    torch.testing.assert_close(policy, prior, atol=1e-4, rtol=1e-5)  # it starts as the prior
    multiplier = {"notes_not_in_key": 2.0}
    state = {"round": 0, "played": 0, "multipliers": multiplier, "integrals": multiplier}
    state["variances"] = {"notes_not_in_key": 5.0}  # the rounds before
    replay = agent.play  # the round plays these same pieces
    agent.play = lambda *args, **kwargs: episodes
    play_round(agent, optimizer := torch.optim.Adam(agent.q_network.parameters(), 3e-3), config,
               state, Writer())  # fmt: skip
    agent.play = replay
    del optimizer
    with torch.no_grad():
        after, _ = piece_likelihoods(agent, episodes)
    out_of_key = statistic_contributions(episodes.pieces, "C major")["notes_not_in_key"][:, 0]
    gained = (after - policy).numpy()
    assert np.corrcoef(-out_of_key, gained)[0, 1] > 0.5  # the fewer out of key, the more gained
    assert state["integrals"]["notes_not_in_key"] > 2.0  # still short: the multiplier grows
    memory = config.variance_memory
    remembered = memory * 5.0 + (1 - memory) * out_of_key.var()
    assert state["variances"]["notes_not_in_key"] == pytest.approx(remembered)


def test_a_resumed_run_ends_where_the_uninterrupted_one_ends(tmp_path):
    a, b = resumed_equals_straight(DPGConfig, 128, 200, tmp_path, pieces=4, epochs=2, length=16)
    assert a == b and a["multipliers"]


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("--pieces=0", "pieces"),
        ("--max-tilt=0", "--max-tilt"),
        ("--constraints=notes_in_motif=60", "constraints"),
        ("--env=ChoraleComposition-v0", "env"),
    ],
)
def test_bad_dpg_settings_are_one_line(tmp_path, capsys, option, says):
    arguments = ["agent", "train", "--algo", "dpg", "--steps", "64", "--out", str(tmp_path)]
    assert main([*arguments, option]) == 2
    error = capsys.readouterr().err.strip()
    assert says in error and "\n" not in error


def test_a_round_where_every_step_earns_alike_never_makes_a_nan():
    """At the start (the policy is the prior, every multiplier 0) every step earns 0 but for the
    float noise of log(pi/p): no NaN or infinity in the policy or the multipliers."""
    config = DPGConfig(pieces=8, epochs=2, length=16)
    agent = RLTuner(config.tuner_config(), tiny_prior())
    optimizer = torch.optim.Adam(agent.q_network.parameters(), 1e-3)
    state = {"round": 0, "played": 0}
    play_round(agent, optimizer, config, state, Writer())
    assert all(torch.isfinite(t).all() for t in agent.q_network.state_dict().values())
    assert all(np.isfinite(v) for v in state["multipliers"].values())
