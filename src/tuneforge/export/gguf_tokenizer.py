"""The tokenizer of a Hugging Face model, as the metadata llama.cpp reads from a GGUF file.

llama.cpp does not run the ``tokenizers`` library: it rebuilds the tokenizer from GGUF keys
(``tokenizer.ggml.*``). For a byte-level BPE tokenizer (GPT-2 style, what SmolLM2 and most Llama
fine-tunes since Llama 3 use) that is the model name ``gpt2``, the token strings in id order, the
merge list, one type per token (normal / control / user-defined / unused), the special ids, whether
a BOS/EOS is added, and a *pre-tokenizer name*: llama.cpp has no general pre-tokenizer, only a
fixed set of named regex recipes, so we name the one the HF tokenizer's ``pre_tokenizer`` is
equivalent to and refuse shapes we cannot name (a wrong recipe would silently split text
differently from the model's training).

Facts used (read from llama.cpp-written files, e.g. the built-in model's GGUF, and llama.cpp's
tokenizer loader): ``gpt-2`` is the plain GPT-2 regex; ``smollm`` splits every digit on its own
first, then applies the GPT-2 regex; token type values are gguf's ``TokenType`` enum; the token list
must have one entry per embedding row, padded with unused ``[PAD<i>]`` entries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gguf import GGUFWriter, TokenType

from tuneforge.errors import TuneforgeError

_HINT = (
    "GGUF export supports byte-level BPE tokenizers (GPT-2 / SmolLM2 / Llama-3 style); export a "
    "merged model instead (tuneforge export RUN --merge DIR) and convert it with llama.cpp's own tools"
)


@dataclass(frozen=True)
class GGUFVocab:
    """Everything :func:`write_tokenizer` puts into the file, kept as data so tests can read it."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    unk_id: int | None
    add_bos: bool
    add_eos: bool
    chat_template: str | None


def gguf_vocab(tokenizer: Any, n_vocab: int) -> GGUFVocab:
    """Read a fast HF tokenizer into :class:`GGUFVocab`, padded to ``n_vocab`` (the embedding rows)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TuneforgeError(f"the tokenizer ({type(tokenizer).__name__}) has no fast `tokenizers` backend", _HINT)
    spec = json.loads(backend.to_str())
    model = spec["model"]
    if model.get("type") != "BPE" or not _is_byte_level(spec.get("decoder")):
        raise TuneforgeError(f"the tokenizer is a {model.get('type')} model without a byte-level decoder", _HINT)
    tokens, types = _tokens(model["vocab"], spec.get("added_tokens", []), n_vocab)
    ids = tokenizer("a b")["input_ids"]
    return GGUFVocab(
        tokens=tokens,
        token_types=types,
        merges=[m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])],
        pre=_pre_name(spec.get("pre_tokenizer")),
        bos_id=tokenizer.bos_token_id,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        unk_id=tokenizer.unk_token_id,
        add_bos=tokenizer.bos_token_id is not None and bool(ids) and ids[0] == tokenizer.bos_token_id,
        add_eos=tokenizer.eos_token_id is not None and bool(ids) and ids[-1] == tokenizer.eos_token_id,
        chat_template=tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None,
    )


def write_tokenizer(writer: GGUFWriter, vocab: GGUFVocab) -> None:
    """Add the ``tokenizer.*`` keys llama.cpp needs to tokenise, stop and apply the chat template."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    for add, value in (
        (writer.add_bos_token_id, vocab.bos_id),
        (writer.add_eos_token_id, vocab.eos_id),
        (writer.add_pad_token_id, vocab.pad_id),
        (writer.add_unk_token_id, vocab.unk_id),
    ):
        if value is not None:
            add(value)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)


def _tokens(vocab: dict[str, int], added: list[dict], n_vocab: int) -> tuple[list[str], list[int]]:
    """Token strings and types in id order; ids the tokenizer lacks become unused ``[PAD<i>]``."""
    by_id: dict[int, tuple[str, int]] = {i: (t, int(TokenType.NORMAL)) for t, i in vocab.items()}
    for entry in added:
        kind = TokenType.CONTROL if entry.get("special") else TokenType.USER_DEFINED
        by_id[int(entry["id"])] = (entry["content"], int(kind))
    if by_id and max(by_id) >= n_vocab:
        raise TuneforgeError(
            f"the tokenizer has token id {max(by_id)} but the model's embedding has only {n_vocab} rows",
            "resize the model's embeddings to the tokenizer (model.resize_token_embeddings) before exporting",
        )
    pairs = [by_id.get(i, (f"[PAD{i}]", int(TokenType.UNUSED))) for i in range(n_vocab)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _is_byte_level(part: dict | None) -> bool:
    if not part:
        return False
    if part.get("type") == "ByteLevel":
        return True
    return part.get("type") == "Sequence" and any(_is_byte_level(p) for p in part.get("decoders", []))


def _pre_name(pre: dict | None) -> str:
    """The llama.cpp pre-tokenizer recipe equal to this HF ``pre_tokenizer``, or a clear refusal."""
    if pre and pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space"):
        return "gpt-2"
    if pre and pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers", [])
        if (
            len(steps) == 2
            and steps[0].get("type") == "Digits"
            and steps[0].get("individual_digits")
            and steps[1].get("type") == "ByteLevel"
            and steps[1].get("use_regex", True)
            and not steps[1].get("add_prefix_space")
        ):
            return "smollm"
    raise TuneforgeError(
        f"the tokenizer's pre-tokenizer {json.dumps(pre)[:200]} has no llama.cpp equivalent tuneforge knows",
        _HINT,
    )
