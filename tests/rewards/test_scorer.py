"""The weighted total, None handling, the per-step stats, and errors that name a broken user function."""

from __future__ import annotations

import math

import pytest

from tuneforge.config.rewards import reward_spec
from tuneforge.data.records import Message, PromptRecord
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.objectives.reward_scores import RewardScores
from tuneforge.rewards import build_scorer, reward_stats

USER_CODE = '''
def half(prompts, completions, **columns):
    return [0.5 if c else None for c in completions]

def echo_columns(prompts, completions, answer, level=None, bonus=0.0):
    return [float(a == c) + bonus + (0.0 if level is None else float(level[i] or 0)) for i, (a, c) in enumerate(zip(answer, completions))]

def seen_prompts(prompts, completions, **columns):
    return [float(p.startswith("<|im_start|>")) for p in prompts]

def boom(prompts, completions, **columns):
    raise ValueError("bad input")

def short(prompts, completions, **columns):
    return [1.0]

def texty(prompts, completions, **columns):
    return ["1"] * len(completions)

def nan(prompts, completions, **columns):
    return [float("nan")] * len(completions)
'''


def rec(answer="4", **extra) -> PromptRecord:
    return PromptRecord((Message("user", "2+2?"),), "f.jsonl:1", {"answer": answer, **extra})


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(USER_CODE)
    return path


def scorer_for(specs, **kw):
    return build_scorer([reward_spec(s) for s in specs], **kw)


def test_weighted_total_counts_none_as_zero(user_file):
    scorer = scorer_for([
        {"type": "answer_match", "weight": 2.0},
        {"type": "format", "weight": 0.5},
        {"type": "function", "function": f"{user_file}:half", "weight": -1.0},
    ])  # fmt: skip
    records = [rec("4"), rec("4"), rec(None), rec("4")]
    scores = scorer(records, ["#### 4", "#### 5", "#### 4", ""])
    assert scores.per_reward == {"answer_match": [1.0, 0.0, None, 0.0], "format": [1.0, 1.0, 1.0, 0.0], "half": [0.5, 0.5, 0.5, None]}
    assert scores.total == [2.0 + 0.5 - 0.5, 0.5 - 0.5, 0.5 - 0.5, 0.0]
    assert scorer.names == ["answer_match", "format", "half"]


def test_columns_kwargs_and_rendered_prompts(user_file, tokenizer):
    scorer = scorer_for([{"type": "function", "function": f"{user_file}:echo_columns", "kwargs": {"bonus": 0.25}}])
    records = [rec("a", level=1), rec("b"), rec("c", level=2)]  # 'level' missing in one row -> None there
    assert scorer(records, ["a", "x", "c"]).total == [2.25, 0.25, 3.25]
    rendered = scorer_for([{"type": "function", "function": f"{user_file}:seen_prompts"}], tokenizer=tokenizer)
    assert rendered([rec()], ["x"]).total == [1.0]  # the chat template was applied
    plain = scorer_for([{"type": "function", "function": f"{user_file}:seen_prompts"}])
    assert plain([rec()], ["x"]).total == [0.0]


def test_module_function_form(user_file, monkeypatch):
    monkeypatch.syspath_prepend(str(user_file.parent))
    scorer = scorer_for([{"type": "function", "function": "my_rewards:half"}])
    assert scorer([rec()], ["x"]).total == [0.5]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("boom", r"reward 'boom' \(function .*:boom\) raised ValueError: bad input"),
        ("short", r"reward 'short' \(function .*:short\) returned 1 values for 2 completions"),
        ("texty", r"reward 'texty' .* returned str '1' at index 0, not a number or None"),
        ("nan", r"reward 'nan' .* returned nan at index 0"),
    ],
)
def test_broken_user_function_names_itself(user_file, name, message):
    scorer = scorer_for([{"type": "function", "function": f"{user_file}:{name}"}])
    with pytest.raises(TuneforgeError, match=message):
        scorer([rec(), rec()], ["a", "b"])


def test_missing_function_module_or_file(user_file):
    with pytest.raises(ConfigError, match="has no function 'nothing'"):
        scorer_for([{"type": "function", "function": f"{user_file}:nothing"}])
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_xyz'"):
        scorer_for([{"type": "function", "function": "no_such_module_xyz:f"}])
    with pytest.raises(ConfigError, match="does not exist"):
        scorer_for([{"type": "function", "function": "missing/file.py:f"}])


def test_names_are_numbered_or_must_be_unique():
    assert scorer_for([{"type": "format"}, {"type": "format", "marker": "=>"}]).names == ["format", "format_2"]
    with pytest.raises(ConfigError, match="more than one reward"):
        scorer_for([{"type": "format", "name": "f"}, {"type": "integer", "name": "f"}])


def test_reward_stats_closed_form():
    scores = RewardScores(total=[1.0, 1.0, 0.0, 2.0], per_reward={"a": [1.0, 1.0, None, 0.0]})
    stats = reward_stats(scores, group_size=2)
    assert stats["reward"] == 1.0 and stats["reward_std"] == pytest.approx(math.sqrt(0.5))
    assert stats["rewards/a/mean"] == pytest.approx(2 / 3)
    assert stats["rewards/a/std"] == pytest.approx(math.sqrt(2 / 9))
    assert stats["rewards/a/applied"] == 0.75
    assert stats["frac_reward_zero_std"] == 0.5  # group [1, 1] has no variance, [0, 2] has
    with pytest.raises(ValueError, match="groups of 3"):
        reward_stats(scores, group_size=3)
