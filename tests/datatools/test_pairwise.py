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
