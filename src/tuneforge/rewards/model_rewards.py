"""Rewards computed by another model: a trained reward-model run, or an LLM judge.

Both read the prompt's messages (not only its rendered text), so they receive the records: the
reward model scores (prompt messages, completion) rendered exactly as in reward training
(:func:`tuneforge.serve.score.score_responses`); the judge is a local model or an OpenAI-compatible
endpoint through the backends of ``tuneforge data clean``'s judge (:mod:`tuneforge.datatools.judge`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tuneforge.config.pipeline import JudgeStep
from tuneforge.config.rewards import JudgeReward, RewardModelReward
from tuneforge.data.records import PromptRecord
from tuneforge.datatools.judge import RUBRICS, make_backend, parse_verdict
from tuneforge.errors import ConfigError
from tuneforge.serve.score import score_responses
from tuneforge.targets import load_run

RecordsRewardFn = Callable[[Sequence[PromptRecord], Sequence[str]], list[float | None]]


def reward_model_reward(spec: RewardModelReward) -> RecordsRewardFn:
    """The run's scalar score of each (prompt, completion), loaded once here."""
    loaded = load_run(spec.run)
    if loaded.recipe.objective.type != "reward":
        raise ConfigError(
            f"objective.rewards reward_model.run: {spec.run} was trained with objective.type '{loaded.recipe.objective.type}', not reward",
            hint="point run at a run directory trained with objective.type: reward",
        )

    def reward(records: Sequence[PromptRecord], completions: Sequence[str]) -> list[float | None]:
        pairs = [(r.messages, c) for r, c in zip(records, completions)]
        return list(score_responses(loaded.model, loaded.tokenizer, pairs, batch_size=spec.batch_size))

    return reward


def judge_request(record: PromptRecord, completion: str, spec: JudgeReward) -> str:
    """What the judge is asked: the instruction (or rubric), the conversation, the answer, a reference if any."""
    conversation = "\n\n".join(f"{m.role}: {m.content}" for m in record.messages if m.role != "system")
    body = f"Request:\n{conversation}\n\nResponse:\n{completion}"
    if spec.reference_column and record.columns.get(spec.reference_column) is not None:
        body += f"\n\nReference answer:\n{record.columns[spec.reference_column]}"
    instruction = spec.instruction or RUBRICS[spec.rubric]
    return f'{instruction}\n\n{body}\n\nAnswer as JSON: {{"score": <1-5>, "reason": "<one sentence>"}}'


def judge_reward(spec: JudgeReward) -> RecordsRewardFn:
    """(score - 1) / 4 in [0, 1] from the judge's 1-5 verdict; None when the reply holds no score."""
    step = JudgeStep(
        model=spec.model,
        endpoint=spec.endpoint,
        endpoint_model=spec.endpoint_model,
        api_key_env=spec.api_key_env,
        max_new_tokens=spec.max_new_tokens,
    )
    backend = make_backend(step)

    def reward(records: Sequence[PromptRecord], completions: Sequence[str]) -> list[float | None]:
        replies = backend.ask([judge_request(r, c, spec) for r, c in zip(records, completions)])
        scores = [parse_verdict(reply)[0] for reply in replies]
        return [None if s is None else (s - 1) / 4 for s in scores]

    return reward
