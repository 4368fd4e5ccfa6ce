"""PPO's value head: one linear layer on the policy's last hidden state, zero-initialised so every value starts at 0.

TRL 1.16 removed PPO and its ``AutoModelForCausalLMWithValueHead``, so this is our own. The head is a
separate module held by the PPO trainer, not a submodule of the policy: the policy stays the plain
model (or peft model) that every other tuneforge command saves, loads, evaluates and exports, and the
head is written beside it (``value_head.safetensors``, in each checkpoint and in the run directory).
With a LoRA-type method the head sits on the shared, adapted backbone; the head itself trains fully.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

VALUE_HEAD_FILE = "value_head.safetensors"


class ValueHead(torch.nn.Module):
    """``[N, T, hidden] -> [N, T]`` values; zero weights and bias, so the first rollout's values are all 0."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1)


def hidden_size_of(model) -> int:
    """The width of the policy's last hidden state (text config of a multimodal model)."""
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(config.hidden_size)


def save_value_head(head: ValueHead, directory: Path | str) -> Path:
    path = Path(directory) / VALUE_HEAD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}, str(path))
    return path


def load_value_head(head: ValueHead, directory: Path | str) -> bool:
    """Load the head saved in ``directory`` (a checkpoint, on --resume); False when it holds none."""
    path = Path(directory) / VALUE_HEAD_FILE
    if not path.is_file():
        return False
    head.load_state_dict(load_file(str(path)))
    return True


def logps_and_values(
    model, head: ValueHead, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_completion: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, n_completion]`` log-probs of the last ``n_completion`` tokens and the values of the states that predict them, in one forward.

    Same log-probs as :func:`tuneforge.train.rollout.completion_logps` (head on the completion positions
    only, logits / temperature); the values are read from the last hidden state at those same positions.
    """
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
        logits_to_keep=n_completion + 1, use_cache=False, output_hidden_states=True,
    )  # fmt: skip
    logits = out.logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    targets = input_ids[:, -n_completion:]
    picked = torch.gather(logits, 2, targets.unsqueeze(-1)).squeeze(-1)
    values = head(out.hidden_states[-1][:, -(n_completion + 1) : -1])
    return picked - torch.logsumexp(logits, dim=-1), values
