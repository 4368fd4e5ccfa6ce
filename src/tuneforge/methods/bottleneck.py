"""Bottleneck adapters (Houlsby et al. 2019): a small MLP with a residual after attention and/or MLP.

Each adapter is ``h + up(act(down(h)))`` with ``up`` zero-initialised, so the model is exactly the
base model at init. It sits on the sub-layer's output, before the block's own residual add
(Houlsby's placement; ``placement: [mlp]`` gives Pfeiffer's cheaper variant).

Our own module rather than the ``adapters`` library: adapters 1.3 pins transformers ~= 4.57 and
does not install beside transformers 5. The adapters are registered as child modules of each
decoder block (so ``.to()``, ``parameters()`` and the optimizer see them) and applied with public
forward hooks on the attention / MLP sub-modules; no transformers code is patched. They are saved
as a safetensors state dict plus a JSON config, and cannot be merged into the weights (the
non-linearity is input dependent).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from tuneforge.config.methods import BottleneckOptions
from tuneforge.config.schema import MethodSection
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.methods.freeze import decoder_layers

CONFIG_FILE = "bottleneck_config.json"
WEIGHTS_FILE = "bottleneck_model.safetensors"

_SUBLAYER_NAMES = {
    "attention": ("self_attn", "attention", "attn"),
    "mlp": ("mlp", "feed_forward", "block_sparse_moe"),
}
_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class Bottleneck(nn.Module):
    """down-project -> non-linearity -> up-project, added to its input."""

    def __init__(self, hidden_size: int, size: int, non_linearity: str) -> None:
        super().__init__()
        self.down = nn.Linear(hidden_size, size)
        self.act = _ACTIVATIONS[non_linearity]()
        self.up = nn.Linear(size, hidden_size)
        nn.init.zeros_(self.up.weight)  # identity at init
        nn.init.zeros_(self.up.bias)
        self.handle: torch.utils.hooks.RemovableHandle | None = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(
            self.act(self.down(hidden.to(self.down.weight.dtype)))
        ).to(hidden.dtype)

    def hook(self, module: nn.Module, args, output):
        if isinstance(output, tuple):
            return (self(output[0]), *output[1:])
        return self(output)


def _sublayer(block: nn.Module, where: str, index: int) -> tuple[str, nn.Module]:
    for name in _SUBLAYER_NAMES[where]:
        sub = getattr(block, name, None)
        if isinstance(sub, nn.Module):
            return name, sub
    raise ConfigError(
        f"method.bottleneck.placement '{where}': block {index} has no {' / '.join(_SUBLAYER_NAMES[where])} sub-module",
        hint="this architecture is not supported by bottleneck adapters yet; use method.type lora",
    )


def adapter_size(hidden_size: int, opts: BottleneckOptions) -> int:
    return max(1, hidden_size // opts.reduction_factor)


def insert_bottlenecks(
    model: PreTrainedModel, opts: BottleneckOptions
) -> PreTrainedModel:
    """Freeze the base and add adapters as described by ``opts`` (in place; returns ``model``)."""
    if has_bottleneck(model):
        raise TuneforgeError(
            "this model already has bottleneck adapters", hint="load a fresh base model"
        )
    _, blocks = decoder_layers(model)
    hidden = model.config.hidden_size
    indices = opts.layers if opts.layers is not None else list(range(len(blocks)))
    bad = [i for i in indices if not 0 <= i < len(blocks)]
    if bad:
        raise ConfigError(
            f"method.bottleneck.layers {bad} out of range",
            hint=f"the model has blocks 0..{len(blocks) - 1}",
        )
    for p in model.parameters():
        p.requires_grad_(False)
    ref = next(model.parameters())
    for i in indices:
        for where in opts.placement:
            _, sub = _sublayer(blocks[i], where, i)
            adapter = Bottleneck(
                hidden, adapter_size(hidden, opts), opts.non_linearity
            ).to(ref.device)
            blocks[i].add_module(f"bottleneck_{where}", adapter)
            adapter.handle = sub.register_forward_hook(adapter.hook)
    return model


def apply_bottleneck(model: PreTrainedModel, method: MethodSection) -> PreTrainedModel:
    return insert_bottlenecks(model, method.bottleneck)


def has_bottleneck(model: nn.Module) -> bool:
    return any(isinstance(m, Bottleneck) for m in model.modules())


def bottleneck_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().cpu().contiguous()
        for n, p in model.named_parameters()
        if ".bottleneck_" in n
    }


def save_bottleneck(
    model: nn.Module, directory: str | Path, opts: BottleneckOptions
) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(bottleneck_state_dict(model), str(directory / WEIGHTS_FILE))
    config = {"method": "bottleneck", "options": opts.model_dump()}
    (directory / CONFIG_FILE).write_text(
        json.dumps(config, indent=2) + "\n", encoding="utf-8"
    )


def save_bottleneck_method(model: nn.Module, directory: str | Path, method: MethodSection) -> None:
    """:func:`save_bottleneck` with the recipe's options, as ``methods.save_method`` calls every family."""
    save_bottleneck(model, directory, method.bottleneck)


def load_bottleneck(base: PreTrainedModel, directory: str | Path) -> PreTrainedModel:
    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file():
        raise TuneforgeError(
            f"{directory} holds no {CONFIG_FILE}",
            hint="pass the adapter/ directory of a bottleneck run",
        )
    opts = BottleneckOptions(
        **json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))["options"]
    )
    model = insert_bottlenecks(base, opts)
    saved = load_file(str(directory / WEIGHTS_FILE))
    params = dict(model.named_parameters())
    expected = set(bottleneck_state_dict(model))
    if set(saved) != expected:
        raise TuneforgeError(
            f"{directory / WEIGHTS_FILE} does not fit this model: missing {sorted(expected - set(saved))[:3]}, unexpected {sorted(set(saved) - expected)[:3]}",
            hint="load it onto the base model it was trained on",
        )
    with torch.no_grad():
        for name, tensor in saved.items():
            params[name].copy_(tensor)
    return model
