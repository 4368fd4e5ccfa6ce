"""CFT examples: a contextual learning prompt, untrained, in front of each chunk of domain text.

Contextual fine-tuning (Choi et al., ICLR 2025, arXiv 2503.09032) trains -sum_t log p(x_t | c, x_<t):
the prompt c is context only (label -100) and every text token is trained, the first one included
(it is predicted from the prompt). The text stream is built exactly as for ``pretrain``
(:func:`~tuneforge.data.prepare.prepare_text`: documents joined with EOS); each chunk holds
``max_length - len(prompt)`` text tokens, so an empty prompt gives pretrain's examples token for
token (tested). The prompts are not used at inference, so validation examples have their prompt
removed (:func:`strip_prompt`): the validation loss is the loss the model will see.

The bundled prompts (``resources/cft_prompts.json``) were written for tuneforge in the spirit of
the paper's strategies; they are not the paper's own wording.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from tuneforge.config.cft import CftOptions
from tuneforge.data.prepare import PrepareReport, finish_report
from tuneforge.data.records import TextRecord
from tuneforge.data.render import IGNORE_INDEX, Tokenized, render_text
from tuneforge.errors import ConfigError, DataError


def bundled_prompts() -> list[str]:
    """The learning prompts shipped with tuneforge (one per strategy)."""
    text = resources.files("tuneforge.objectives").joinpath("resources", "cft_prompts.json").read_text(encoding="utf-8")
    return [entry["text"] for entry in json.loads(text)]


def load_prompts_file(path: str) -> list[str]:
    """A user's prompts: a JSON list (strings or {"text": ...}) or a text file with one prompt per line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"objective.cft.prompts_file: {path} not found", hint="give a .json list or a .txt file, one prompt per line")
    text = p.read_text(encoding="utf-8")
    if p.suffix != ".json":
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"objective.cft.prompts_file: {path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(data, list):
            raise ConfigError(f"objective.cft.prompts_file: {path} must hold a JSON list of prompts, got {type(data).__name__}")
        prompts = []
        for i, item in enumerate(data):
            value = item.get("text") if isinstance(item, dict) else item
            if not isinstance(value, str):
                raise ConfigError(f"objective.cft.prompts_file: {path}: item {i} is neither a string nor an object with a 'text' string")
            prompts.append(value)
    if not prompts:
        raise ConfigError(f"objective.cft.prompts_file: {path} holds no prompts")
    return prompts


def cft_prompts(options: CftOptions) -> list[str]:
    return load_prompts_file(options.prompts_file) if options.prompts_file else bundled_prompts()


def prompt_chooser(n_prompts: int, selection: str, seed: int) -> Callable[[int], int]:
    """Which prompt chunk i gets: seeded random (the same on every run) or round-robin."""
    if selection == "cycle":
        return lambda i: i % n_prompts
    rng = random.Random(seed)
    return lambda i: rng.randrange(n_prompts)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: str, separator: str) -> list[int]:
    """Token ids of prompt + separator; an empty prompt has none (so it is exactly pretrain)."""
    if not prompt:
        return []
    return tokenizer(prompt + separator, add_special_tokens=False)["input_ids"]


def prepare_cft(
    records: Sequence[TextRecord],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    options: CftOptions,
    prompts: Sequence[str] | None = None,
) -> tuple[list[Tokenized], PrepareReport]:
    """CFT examples: [prompt tokens (label -100)] + [text chunk (trained)], at most ``max_length`` tokens each."""
    prompts = list(prompts) if prompts is not None else cft_prompts(options)
    encoded = [prompt_ids(tokenizer, p, options.separator) for p in prompts]
    for text, ids in zip(prompts, encoded):
        if len(ids) > max_length - 2:
            raise ConfigError(
                f"objective.cft: the prompt '{text[:60]}' is {len(ids)} tokens, leaving no room for text in data.max_length {max_length}",
                hint="raise data.max_length or shorten the prompt",
            )
    report = PrepareReport(records=len(records))
    stream: list[int] = []
    for record in records:
        stream.extend(render_text(tokenizer, record))
    choose = prompt_chooser(len(prompts), options.selection, options.seed)
    examples: list[Tokenized] = []
    pos = 0
    while pos < len(stream):
        chosen = encoded[choose(len(examples))]
        room = max_length - len(chosen)
        chunk = stream[pos : pos + room]
        pos += room
        if len(chosen) + len(chunk) > 1:  # a lone token predicts nothing (as in prepare_text)
            examples.append(Tokenized(chosen + chunk, [IGNORE_INDEX] * len(chosen) + chunk, f"chunk {len(examples) + 1}"))
    if not stream:
        raise DataError("objective.type cft: the text rows hold no text", hint="check data.train and data.format: text")
    finish_report(report, examples, len(examples))
    return examples, report


def strip_prompt(example: Tokenized) -> Tokenized:
    """The example without its leading untrained prompt tokens: the text as the model sees it at inference."""
    start = next((i for i, label in enumerate(example.labels) if label != IGNORE_INDEX), len(example.labels))
    return Tokenized(example.input_ids[start:], example.labels[start:], example.source)
