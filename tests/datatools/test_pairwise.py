"""Both-orders pairwise judging: a judge with a known preference, and one that only likes position 1."""

from __future__ import annotations

import re

from tuneforge.datatools.pairwise import combine, compare_both_orders, parse_choice, tally


class PrefersLonger:
    """Picks the longer answer, wherever it is shown: a consistent judge."""

    def ask(self, prompts: list[str]) -> list[str]:
        out = []
        for p in prompts:
            one, two = re.search(r"Answer 1:\n(.*)\n\nAnswer 2:\n(.*)\n\nReply", p, re.DOTALL).groups()
            out.append('{"better": %d, "reason": "longer"}' % (1 if len(one) > len(two) else 2))
        return out


class AlwaysFirst:
    def ask(self, prompts: list[str]) -> list[str]:
        return ['{"better": 1, "reason": "first"}'] * len(prompts)


def test_consistent_judge_picks_its_preference_in_both_orders() -> None:
    verdicts = compare_both_orders(PrefersLonger(), ["q1", "q2"], ["short", "a much longer answer"], ["a longer answer", "tiny"])
    assert [v.winner for v in verdicts] == ["b", "a"]
    assert all(v.consistent for v in verdicts)
    assert verdicts[0].ab_choice == "2" and verdicts[0].ba_choice == "1"
    assert tally(verdicts) == {"pairs": 2, "wins_a": 1, "wins_b": 1, "ties": 0, "inconsistent": 0, "win_rate_a": 0.5}


def test_position_biased_judge_gives_only_counted_ties() -> None:
    verdicts = compare_both_orders(AlwaysFirst(), ["q"] * 3, ["x"] * 3, ["y"] * 3)
    assert [v.winner for v in verdicts] == ["tie"] * 3
    t = tally(verdicts)
    assert t["ties"] == 3 and t["inconsistent"] == 3 and t["win_rate_a"] == 0.5


def test_parse_choice_and_combine() -> None:
    assert parse_choice('sure: {"better": "2", "reason": "clearer"}') == ("2", "clearer")
    assert parse_choice("Answer 1 is better.")[0] == "1"
    assert parse_choice("no idea")[0] is None
    assert combine("1", "2") == ("a", True)
    assert combine("2", "1") == ("b", True)
    assert combine("1", None) == ("tie", False)


# ---- verdicts from a local judge's next-token probabilities (judge.verdict: probabilities) -------------------------


class BiasedProbabilities:
    """P(answer 1 better) = sigmoid(bias + quality(1) - quality(2)), quality = length / 10: a known preference
    (the longer answer) under a strong pull towards position 1, as a small judge has."""

    verdict_probabilities = True

    def __init__(self, bias: float = 2.0) -> None:
        self.bias = bias

    def first_probabilities(self, prompts: list[str]) -> list[float]:
        import math

        out = []
        for p in prompts:
            one, two = re.search(r"Answer 1:\n(.*)\n\nAnswer 2:\n(.*)\n\nReply", p, re.DOTALL).groups()
            out.append(1 / (1 + math.exp(-(self.bias + (len(one) - len(two)) / 10))))
        return out

    def ask(self, prompts: list[str]) -> list[str]:
        raise AssertionError("a probability judge is never asked for a reply in a pairwise comparison")


def test_probability_verdict_cancels_a_constant_position_bias() -> None:
    from tuneforge.datatools.pairwise import PROBABILITY_MARGIN, probability_verdict

    v = probability_verdict(0.9, 0.7)  # both orders prefer position 1, a-first more so: a is better
    assert (v.winner, v.consistent, v.ab_choice, v.ba_choice) == ("a", True, "1", "1")
    assert "+0.200" in v.ab_reason and "0.900 with a first" in v.ab_reason and "0.700 with b first" in v.ba_reason
    assert probability_verdict(0.3, 0.6).winner == "b"
    close = probability_verdict(0.8, 0.8 - PROBABILITY_MARGIN / 2)
    assert (close.winner, close.consistent) == ("tie", False)


def test_probability_judge_labels_its_preference_despite_the_bias() -> None:
    answers_a = ["a long and careful answer", "no", "a detailed reply here"]
    answers_b = ["short", "a longer second answer", "tiny"]
    verdicts = compare_both_orders(BiasedProbabilities(), ["q"] * 3, answers_a, answers_b)
    assert [v.winner for v in verdicts] == ["a", "b", "a"]  # the longer answer, wherever it was shown
    assert all(v.ab_choice == v.ba_choice == "1" for v in verdicts)  # each order alone always picks position 1
    # with replies, the same judge labels nothing: every pair is an inconsistent tie
    assert all(v.winner == "tie" for v in compare_both_orders(AlwaysFirst(), ["q"] * 3, answers_a, answers_b))
