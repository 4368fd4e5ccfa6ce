"""Chat with a model: render messages with the tokenizer's own chat template and stream the reply.

The terminal chat (and any other front end) answers through :func:`stream_reply`, so a reply
looks the same everywhere and matches what training saw: the prompt comes from
``tokenizer.apply_chat_template`` (the template saved with the model), never from a hand-built
string. Generation is transformers' ``generate`` with a ``TextIteratorStreamer``; the thread and
error plumbing around it is ours because transformers leaves that to the caller.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from tuneforge.errors import TuneforgeError


@dataclass
class GenerationSettings:
    """How to decode a reply. The defaults are greedy so that a reply is reproducible."""

    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy decoding; > 0 samples with this temperature
    top_p: float = 1.0  # nucleus sampling cut-off; only used when sampling
    repetition_penalty: float = 1.0  # 1.0 = off; > 1 discourages repeating tokens already in the context


class _StopWhenSet(StoppingCriteria):
    """Stops generation once the consumer has gone away, so an abandoned reply frees the CPU/GPU."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def stream_reply(
    model: Any,
    tokenizer: Any,
    messages: list[dict[str, str]],
    settings: GenerationSettings,
) -> Iterator[str]:
    """Yield the assistant's reply to ``messages`` as text pieces, as soon as they are decoded.

    Generation runs in a background thread because ``generate`` only reports progress through a
    streamer callback; the caller iterates the streamer's queue. An exception raised inside
    ``generate`` is re-raised here, in the caller, after the pieces produced before it, instead of
    leaving the caller blocked on a queue that will never be closed. Closing the iterator early
    (a client disconnects) stops generation at the next token.
    """
    inputs = _render_prompt(model, tokenizer, messages)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    stop = threading.Event()
    errors: list[BaseException] = []
    kwargs = {
        **inputs,
        **decoding_kwargs(model, tokenizer, settings),
        "streamer": streamer,
        "stopping_criteria": StoppingCriteriaList([_StopWhenSet(stop)]),
    }

    def generate() -> None:
        try:
            model.generate(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, not swallowed
            errors.append(exc)
            streamer.end()  # unblock the caller; generate() did not get to do it

    thread = threading.Thread(target=generate, name="tuneforge-generate", daemon=True)
    thread.start()
    try:
        for piece in streamer:
            if piece:
                yield piece
    finally:
        stop.set()
        thread.join()
    if errors:
        raise errors[0]


def reply(model: Any, tokenizer: Any, messages: list[dict[str, str]], settings: GenerationSettings) -> str:
    """The whole reply as one string, for callers that do not stream (evaluation, tests, batch jobs)."""
    return "".join(stream_reply(model, tokenizer, messages, settings))


def _render_prompt(model: Any, tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, torch.Tensor]:
    """Token ids of the conversation plus the assistant header, on the model's device.

    ``sanitize_control_tokens`` makes a user who types ``<|im_end|>`` get those characters as text,
    not a real end-of-turn token, so message content cannot forge turns in the prompt.
    """
    encoded = tokenizer.apply_chat_template(
        messages,
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
        sanitize_control_tokens=True,
    )
    return {
        "input_ids": encoded["input_ids"].to(model.device),
        "attention_mask": encoded["attention_mask"].to(model.device),
    }


def decoding_kwargs(model: Any, tokenizer: Any, settings: GenerationSettings) -> dict[str, Any]:
    """``generate`` arguments for ``settings``; sampling knobs are passed only when sampling."""
    if settings.max_new_tokens < 1:
        raise TuneforgeError(
            f"max_new_tokens must be at least 1, got {settings.max_new_tokens}", "pass a positive max_new_tokens"
        )
    eos_ids = eos_token_ids(model, tokenizer)
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "repetition_penalty": settings.repetition_penalty,
        "eos_token_id": eos_ids,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0],
    }
    if settings.temperature > 0:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
    else:
        # Explicit, so a model whose generation_config says do_sample=True still decodes greedily.
        kwargs.update(do_sample=False)
    return kwargs


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that should end a reply: the tokenizer's eos and the model's generation eos ids.

    Chat models often end a turn with a token (``<|im_end|>``, ``<|eot_id|>``) that only one of the two
    lists; stopping at the union is what makes a reply end where the template says a turn ends.
    """
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    generation_config = getattr(model, "generation_config", None)
    configured = getattr(generation_config, "eos_token_id", None)
    if configured is not None:
        for token_id in configured if isinstance(configured, (list, tuple)) else [configured]:
            if int(token_id) not in ids:
                ids.append(int(token_id))
    if not ids:
        raise TuneforgeError(
            "neither the tokenizer nor the model's generation_config defines an end-of-sequence token, "
            "so a reply would never stop before max_new_tokens",
            "use the model's chat/instruct tokenizer, or set tokenizer.eos_token to the token that ends a turn",
        )
    return ids
