"""The selection rule: highest score; ties → smaller |γ|, then lower layer; ties and item counts reported."""

from __future__ import annotations

import pytest

from jaxsteer.errors import InputError
from jaxsteer.study.selection import TIE_TOL, best_of_table, best_point, sweep_table


def test_the_highest_score_wins_whatever_its_place():
    points = [(1, 0.0), (1, 1.0), (2, 0.0), (2, 1.0)]
    for winner in range(4):
        scores = [10.0] * 4
        scores[winner] = 11.0
        best = best_point(points, scores)
        assert (best.layer, best.gamma, best.score) == (*points[winner], 11.0)
        assert not best.tie and best.ties == (points[winner],) and best.others == ()


def test_ties_go_to_the_smaller_gamma_then_the_lower_layer():
    # given in an order where neither "first" nor "last" is the rule's winner
    points = [(4, 2.0), (6, 1.0), (5, 1.0), (3, 0.5), (2, 3.0)]
    scores = [60.0, 60.0, 60.0, 40.0, 60.0]
    best = best_point(points, scores)
    assert (best.layer, best.gamma) == (5, 1.0)  # γ = 1 beats γ = 2 and 3; layer 5 beats layer 6
    assert best.tie and best.ties == ((4, 2.0), (6, 1.0), (5, 1.0), (2, 3.0))  # input order, the winner included
    assert best.others == ((4, 2.0), (6, 1.0), (2, 3.0))
    # within the same γ only the layer decides
    assert (best_point([(3, 1.0), (1, 1.0), (2, 1.0)], [7, 7, 7]).layer) == 1


def test_a_negative_gamma_never_wins_a_tie_against_a_weaker_one():
    """The weaker intervention is the smaller |γ|: −4 must not beat 0 (the signed γ once let it)."""
    best = best_point([(3, -4.0), (3, 0.0), (3, 4.0)], [50.0, 50.0, 50.0])
    assert (best.layer, best.gamma) == (3, 0.0)
    assert best_point([(3, 2.0), (3, -1.0), (3, 1.0)], [9, 9, 9]).gamma == -1.0  # |γ| first, then −γ before +γ
    assert best_point([(5, -1.0), (3, 1.0)], [9, 9]).layer == 3  # equal |γ|: the lower layer, whatever the sign


def test_ties_are_equal_up_to_the_tolerance_only():
    best = best_point([(1, 2.0), (1, 1.0)], [50.0, 50.0 - TIE_TOL / 2])
    assert best.gamma == 1.0 and best.tie  # rounding noise of a mean is a tie
    best = best_point([(1, 2.0), (1, 1.0)], [50.0, 50.0 - 1e-6])
    assert best.gamma == 2.0 and not best.tie
    assert best.score == 50.0


@pytest.mark.parametrize(
    "points, scores, needle",
    [([], [], "one score per point"), ([(1, 0.0)], [1.0, 2.0], "one score per point"),
     ([(1, 0.0), (2, 0.5)], [1.0, float("nan")], "layer 2 γ=0.5 is not finite")],
)  # fmt: skip
def test_bad_score_lists_are_input_errors(points, scores, needle):
    with pytest.raises(InputError, match=needle):
        best_point(points, scores)


def test_sweep_table_means_over_languages_and_counts_items():
    rows = [
        {"lang": "zh", "layer": 3, "gamma": 0.0, "gmmlu_accuracy": 40.0, "n": 5},
        {"lang": "zh", "layer": 3, "gamma": 2.0, "gmmlu_accuracy": 60.0, "n": 5},
        {"lang": "ko", "layer": 3, "gamma": 0.0, "gmmlu_accuracy": 80.0, "n": 4},
        {"lang": "ko", "layer": 3, "gamma": 2.0, "gmmlu_accuracy": 50.0, "n": 4},
    ]
    table = sweep_table(rows)
    assert table == [
        {"layer": 3, "gamma": 0.0, "metric": 60.0, "n": 9},
        {"layer": 3, "gamma": 2.0, "metric": 55.0, "n": 9},
    ]
    best = best_of_table(table)
    assert (best.layer, best.gamma, best.score, best.n, best.tie) == (3, 0.0, 60.0, 9, False)
    assert sweep_table([{k: v for k, v in rows[0].items() if k != "n"}])[0]["n"] is None


def test_a_tie_at_gamma_zero_on_few_items_says_so():
    table = [{"layer": 2, "gamma": g, "metric": 40.0, "n": 5} for g in (0.0, 1.0, 2.0)]
    table.append({"layer": 4, "gamma": 1.0, "metric": 20.0, "n": 5})
    best = best_of_table(table)
    assert (best.layer, best.gamma, best.n) == (2, 0.0, 5) and best.others == ((2, 1.0), (2, 2.0))
    line = best.describe()
    assert "n=5 items" in line and "a tie with 2 other point(s): layer 2 γ=1, layer 2 γ=2" in line
    assert "γ = 0 is the unsteered model" in line
    record = best.to_dict()
    assert record == {
        "layer": 2,
        "gamma": 0.0,
        "metric": 40.0,
        "n": 5,
        "tie": True,
        "ties": [{"layer": 2, "gamma": 0.0}, {"layer": 2, "gamma": 1.0}, {"layer": 2, "gamma": 2.0}],
    }
    clear = best_of_table([{"layer": 1, "gamma": 1.0, "metric": 70.0, "n": 5}, *table])
    assert "tie" not in clear.describe() and "unsteered" not in clear.describe()
