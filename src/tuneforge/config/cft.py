"""Recipe options for CFT, contextual fine-tuning: a learning prompt in front of domain text, loss on the text only.

CFT (Choi et al., ICLR 2025, arXiv 2503.09032) puts a short "contextual learning prompt" (think about
practical applications of what follows, relate it to what you know, ...) before each chunk of domain
text and trains -sum_t log p(x_t | c, x_<t) on the text tokens only; the prompts are never used at
inference. These options say which prompts and how one is picked per chunk (docs/RESEARCH.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CftOptions(BaseModel):
    """CFT, contextual fine-tuning: a learning prompt in front of domain text, loss on the text only (docs/RESEARCH.md)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    prompts_file: str | None = Field(
        None,
        description="Your own learning prompts: a .json list (strings, or objects with a 'text' key) or a .txt file with one "
        "prompt per line. Default: the bundled set (objectives/resources/cft_prompts.json: practical application, critical "
        "analysis, key concepts, comparison, ...). An empty prompt trains exactly as objective.type pretrain.",
    )
    selection: Literal["random", "cycle"] = Field(
        "random",
        description="How each text chunk gets its prompt: random (seeded by objective.cft.seed, independent per chunk) or "
        "cycle (chunk i gets prompt i mod the number of prompts).",
    )
    seed: int = Field(0, description="Seed of the random prompt choice (selection: random).")
    separator: str = Field(
        "\n\n", description="Text put between the prompt and the chunk (tokenised with the prompt, never trained)."
    )
