"""The server's limits: how much one request may ask for, and how much work may wait.

Each limit turns a request that would exhaust the machine (a 100 MB body, a 50k-token prompt, a
``max_tokens`` of a million, a thousand clients at once) into a 4xx answer before any generation
starts. The defaults fit a small model on a laptop CPU; a GPU server raises them on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuneforge.serve.http_errors import APIError


@dataclass(frozen=True)
class ServeLimits:
    """Per-request and per-server bounds (all enforced before generation)."""

    max_body_bytes: int = 1_000_000  # request body; larger is 413
    max_prompt_tokens: int = 4096  # rendered prompt; more is 400 context_length_exceeded
    max_tokens: int = 2048  # the largest max_tokens a request may ask for
    default_max_tokens: int = 256  # chat requests without max_tokens (completions: OpenAI's 16)
    queue_size: int = 64  # requests waiting for the engine; a full queue answers 429
    max_batch: int = 16  # requests generated together in one batched generate
    batch_wait_ms: float = 5.0  # how long the engine collects requests before a batch starts
    max_stop: int = 4  # stop sequences per request (OpenAI's limit)
    max_stop_chars: int = 64  # characters per stop sequence


def check_stop(stop: str | list[str] | None, limits: ServeLimits) -> tuple[str, ...]:
    """The request's stop sequences as a tuple, or a 400 naming what is wrong with them."""
    if stop is None:
        return ()
    seqs = [stop] if isinstance(stop, str) else list(stop)
    if len(seqs) > limits.max_stop:
        raise APIError(400, f"at most {limits.max_stop} stop sequences are allowed, got {len(seqs)}", param="stop")
    for s in seqs:
        if not s:
            raise APIError(400, "a stop sequence must not be empty", param="stop")
        if len(s) > limits.max_stop_chars:
            raise APIError(400, f"a stop sequence may have at most {limits.max_stop_chars} characters", param="stop")
    return tuple(seqs)


def check_lengths(prompt_tokens: int, max_tokens: int, limits: ServeLimits, model_positions: int | None) -> None:
    """Refuse a prompt or a ``max_tokens`` over the limits, or one the model's positions cannot hold."""
    if max_tokens > limits.max_tokens:
        raise APIError(400, f"max_tokens is {max_tokens}; this server allows at most {limits.max_tokens}", param="max_tokens")
    if prompt_tokens > limits.max_prompt_tokens:
        raise APIError(
            400,
            f"the prompt has {prompt_tokens} tokens; this server allows at most {limits.max_prompt_tokens}",
            param="messages",
            code="context_length_exceeded",
        )
    if prompt_tokens == 0:
        raise APIError(400, "the prompt is empty", param="prompt")
    if model_positions is not None and prompt_tokens + max_tokens > model_positions:
        raise APIError(
            400,
            f"this model's context length is {model_positions} tokens; the prompt ({prompt_tokens}) plus "
            f"max_tokens ({max_tokens}) exceeds it: shorten the prompt or lower max_tokens",
            param="max_tokens",
            code="context_length_exceeded",
        )
