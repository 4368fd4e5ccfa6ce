"""Augmentation: synonym replacement, paraphrase and back-translation (template filling: ``templates.py``).

Synonyms come from a bundled lexicon (``resources/synonyms.tsv``): the registries' WordNet packages
download their data at run time, which this offline toolkit cannot rely on; a user lexicon can be
added with ``--lexicon``. Paraphrase and back-translation go through a chat model (the built-in one
by default). Variants rewrite the request side only (the answer stays the reference), are capped per
example, and are deduplicated against every original and every earlier variant.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from tuneforge.config.pipeline import AugmentStep
from tuneforge.datatools.dedup import text_hash
from tuneforge.datatools.rows import (
    Row,
    get_at,
    prompt_text,
    request_path,
    set_at,
)
from tuneforge.datatools.spill import Spill
from tuneforge.datatools.trace import Trace
from tuneforge.errors import DataError

_WORD = re.compile(r"[A-Za-z]+")


def load_lexicon(extra: str | Path | None = None) -> dict[str, list[str]]:
    text = (
        resources.files("tuneforge.datatools")
        .joinpath("resources", "synonyms.tsv")
        .read_text(encoding="utf-8")
    )
    if extra:
        p = Path(extra)
        if not p.is_file():
            raise DataError(
                f"lexicon file not found: {p}", hint="a TSV of word<TAB>syn1,syn2"
            )
        text += "\n" + p.read_text(encoding="utf-8")
    lex: dict[str, list[str]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        word, _, syns = line.partition("\t")
        if not syns:
            raise DataError(
                f"lexicon line {n}: expected word<TAB>syn1,syn2, got {line!r}"
            )
        lex[word.strip().lower()] = [s.strip() for s in syns.split(",") if s.strip()]
    return lex


def synonym_variant(
    text: str, lex: dict[str, list[str]], rate: float, rng: random.Random
) -> str:
    """Replace about ``rate`` of the replaceable words (at least one) with a synonym, keeping capitalisation."""
    spots = [m for m in _WORD.finditer(text) if m.group(0).lower() in lex]
    if not spots:
        return text
    chosen = rng.sample(spots, max(1, round(rate * len(spots))))
    out, last = [], 0
    for m in sorted(chosen, key=lambda m: m.start()):
        word = m.group(0)
        syn = rng.choice(lex[word.lower()])
        if word[0].isupper():
            syn = syn[0].upper() + syn[1:]
        out += [text[last : m.start()], syn]
        last = m.end()
    return "".join(out) + text[last:]


class Augment:
    name = "augment"

    def __init__(self, cfg: AugmentStep, lexicon: str | None = None, chat=None) -> None:
        self.cfg = cfg
        self.lex = load_lexicon(lexicon) if cfg.synonyms else {}
        self.chat = chat  # a LocalChat, loaded on first use

    def _model_variants(self, text: str, rng: random.Random) -> list[tuple[str, str]]:
        cfg = self.cfg
        if not (cfg.paraphrases or cfg.back_translations):
            return []
        if self.chat is None:
            # lazy: generation (torch, transformers) adds 4.4 s to importing datatools.pipeline; only model variants need it, measured
            from tuneforge.datatools.generation import LocalChat

            self.chat = LocalChat(cfg.model)
        out: list[tuple[str, str]] = []
        seed = rng.randrange(2**31)
        if cfg.paraphrases:
            prompt = f"Rewrite the following text with different words but the same meaning. Reply with the rewritten text only.\n\n{text}"
            for v in self.chat.reply(
                [prompt] * cfg.paraphrases,
                max_new_tokens=cfg.max_new_tokens,
                temperature=0.8,
                seed=seed,
            ):
                out.append(("paraphrase", v))
        for k in range(cfg.back_translations):
            pivot = self.chat.reply(
                [
                    f"Translate the following text into {cfg.pivot_language}. Reply with the translation only.\n\n{text}"
                ],
                max_new_tokens=cfg.max_new_tokens,
                temperature=0.7 if k else 0.0,
                seed=seed + k,
            )[0]
            back = self.chat.reply(
                [
                    f"Translate the following text into English. Reply with the translation only.\n\n{pivot}"
                ],
                max_new_tokens=cfg.max_new_tokens,
            )[0]
            out.append((f"back-translation via {cfg.pivot_language}", back))
        return out

    def run(self, rows: Iterator[Row], trace: Trace) -> Iterator[Row]:
        cfg = self.cfg
        spill = Spill(
            rows
        )  # first pass: hashes of every original, so variants never duplicate one
        try:
            seen = {
                text_hash(
                    prompt_text(r) if r.format != "text" else r.data.get("text", "")
                )
                for r in spill
            }
            rng = random.Random(cfg.seed)
            for row in spill:
                yield row
                path = request_path(row)
                if path is None or cfg.max_variants == 0:
                    continue
                original = get_at(row.data, path)
                candidates = [
                    (
                        "synonyms",
                        synonym_variant(original, self.lex, cfg.synonym_rate, rng),
                    )
                    for _ in range(cfg.synonyms)
                ]
                candidates += self._model_variants(original, rng)
                kept = 0
                for how, text in candidates:
                    if kept >= cfg.max_variants:
                        break
                    h = text_hash(text)
                    if not text.strip() or h in seen:
                        continue
                    seen.add(h)
                    kept += 1
                    data = copy.deepcopy(row.data)
                    set_at(data, path, text)
                    new = Row(f"{row.source} ({how} {kept})", data, row.format)
                    trace.log(
                        self.name,
                        "added",
                        new,
                        f"{how} variant of {row.source}",
                        kind=how,
                    )
                    yield new
        finally:
            spill.close()
