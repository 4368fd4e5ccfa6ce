"""Chat replies from a local model, for the judge and for model-based augmentation.

The evaluation module's ``generate_batch`` is greedy by design (metrics must be reproducible);
augmentation needs sampled variants as well, so this wrapper adds a seeded sampling option and takes
chat messages rather than pre-templated prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tuneforge.models.load import load_model, load_tokenizer


class LocalChat:
    """A model + tokenizer loaded once; ``reply`` answers a batch of single-turn chats."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.tokenizer = load_tokenizer(spec)
        self.model = load_model(spec, dtype=torch.float32).eval()

    @torch.inference_mode()
    def reply(
        self,
        prompts: Sequence[str],
        *,
        system: str | None = None,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        seed: int = 0,
        batch_size: int = 8,
    ) -> list[str]:
        tok = self.tokenizer
        texts = []
        for p in prompts:
            msgs = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": p}
            ]
            texts.append(
                tok.apply_chat_template(
                    msgs, tokenize=False, add_generation_prompt=True
                )
            )
        side, tok.padding_side = tok.padding_side, "left"
        out: list[str] = []
        try:
            for start in range(0, len(texts), batch_size):
                enc = tok(
                    texts[start : start + batch_size],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=False,
                )
                torch.manual_seed(seed + start)
                kwargs = (
                    {"do_sample": True, "temperature": temperature, "top_p": 0.95}
                    if temperature > 0
                    else {"do_sample": False}
                )
                gen = self.model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                    **kwargs,
                )
                out += [
                    t.strip()
                    for t in tok.batch_decode(
                        gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
                    )
                ]
        finally:
            tok.padding_side = side
        return out
