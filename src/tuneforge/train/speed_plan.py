"""Per-run speed settings chosen from the job and the hardware: attention kernel, frozen-weight storage,
compilation and prompt-prefix sharing.

Settings whose best value depends on the run rather than on taste, so tuneforge picks them from
what it knows before the first step (the examples, batch size, method, precision and device) and
prints what it picked and why:

- **Attention implementation** (``training.attention``). On CPU, PyTorch's SDPA runs a flash kernel
  whose bf16 backward is slow on short rows: measured on the 2-core CI machine (AVX512-BF16, no AMX;
  ``benchmarks/attention.py``, three runs), attention forward + backward of one SmolLM2 layer took
  1.6-1.9x the eager (matmul + softmax) time at 128 tokens, 0.9-1.4x at 256, 0.8-1.2x at 384, but
  0.83-0.87x at 512 and 0.41-0.47x at 2048.
  Eager keeps the attention probabilities for backward (batch x heads x L^2 x 6 bytes per layer:
  fp32 softmax output plus its bf16 copy), so ``auto`` picks eager on CPU only when the longest row
  is at most :data:`EAGER_MAX_LENGTH` tokens and that memory, over all layers, fits in
  :data:`EAGER_MEMORY_BUDGET`. Packed rows join a whole micro-batch, so packing keeps SDPA. CUDA
  keeps the model's own choice (SDPA / flash attention).
- **Frozen linear weights stored in the autocast dtype.** Under bf16 (or fp16) autocast every matmul
  casts its fp32 weight to bf16 on each forward, and the cast copy is what backward keeps. For a
  weight that never trains, storing it in bf16 once gives bit-identical matmuls (the same
  round-to-nearest cast, done once instead of every step), halves its memory and removes the
  per-step casts and their saved copies. It is applied only where it cannot change a result: the
  run saves an adapter (never the base weights), the layer is a plain ``nn.Linear`` with no
  trainable parameter, its weight is not shared with an embedding (tied heads keep the residual
  stream in fp32), the method is not DoRA (its weight norm reads the base weight outside a matmul),
  and the model is not sharded by FSDP/DeepSpeed (which flatten parameters of one dtype).
- **torch.compile of the decoder blocks** (``training.compile``). Inductor fuses the elementwise work
  around the matmuls (norms, rotary, SiLU x up, residual adds, casts), which on the CI CPU is about a
  third of a LoRA step: measured 1.34-1.45x tokens/s and ~250 MB less peak RSS, for a one-off compile
  of ~76 s with a cold inductor cache (~12 s warm). Each block is compiled in place with dynamic
  shapes (rows change length every step), so module names and saved weights are unchanged. ``auto``
  compiles on CPU, in a single process, when the run will train at least :data:`COMPILE_MIN_TOKENS` tokens, where the
  measured saving (~0.9 ms per token) repays a cold compile; under fp32, where compile measured only
  1.02-1.06x, it needs :data:`COMPILE_MIN_TOKENS_FP32` and gives way to prefix sharing (below). Under DDP (``benchmarks/ddp_compile.py``,
  2 processes x 1 thread on the CI CPU) compiled blocks gave the eager update (tested) at 1.07-1.21x
  tokens/s, too little to repay each process's compile on the runs measured, so ``auto`` stays off
  there and ``true`` compiles; evaluation and generation run the
  blocks uncompiled (:func:`uncompiled`), since their shapes (no grad, KV cache) would each need a
  compile of their own. Prompt-learning methods (virtual key/values in the cache), 4-bit bases and
  preference/reward objectives keep eager execution (the method table's ``compiles``; asking for
  ``training.compile: true`` there is a recipe error, config/applies.py).
- **The shared prompt prefix run once per micro-batch** (``training.share_prefix``,
  :mod:`tuneforge.objectives.shared_prefix`). Exact (same loss and gradients) when nothing random
  touches the prefix, so ``auto`` turns it on for LM objectives on CPU when every example shares at
  least :data:`MIN_SHARED_TOKENS` leading tokens and the built model has no active dropout or
  NEFTune; it needs the KV cache, so packing, activation checkpointing and compiled blocks keep it
  off. Measured on the quickstart (44 of ~130 tokens shared, AVX2-only EPYC): 1.25x training
  tokens/s and 760 MB less peak RSS (docs/SPEED.md). CUDA is not measured, so ``auto`` leaves it off there.
  For grpo, rloo and ppo the same setting runs each prompt once for its G completions
  (:mod:`tuneforge.train.group_prompt`); there ``shared_tokens`` is the shortest prompt's length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from tuneforge.config.applies import LM_OBJECTIVES
from tuneforge.config.method_table import method_spec, uses_dora
from tuneforge.config.schema import MethodSection, TrainingSection
from tuneforge.models.precision import Precision
from tuneforge.objectives.shared_prefix import MIN_SHARED_TOKENS

# Longest row (tokens) up to which eager attention was as fast as SDPA or faster on CPU (see above).
EAGER_MAX_LENGTH = 256
# Attention probabilities eager keeps for backward, summed over layers, for the longest micro-batch.
EAGER_MEMORY_BUDGET = 1 << 30
# Bytes per attention-probability element eager keeps: the fp32 softmax output and its bf16/fp16 copy.
EAGER_BYTES_PER_SCORE = 6
# Training tokens from which ``compile: auto`` compiles on CPU: a cold compile (~76 s) over the
# measured saving (~0.9 ms per token at 320 -> 450 tokens/s) is ~85k tokens.
COMPILE_MIN_TOKENS = 100_000
# The same under fp32 on CPU: there compile measured 139 against 131-136 tokens/s (1.02-1.06x, issue
# 16, AVX2-only EPYC) for a ~90 s compile, i.e. ~0.44 ms saved per token, repaid after ~205k tokens.
COMPILE_MIN_TOKENS_FP32 = 250_000
# Objectives compile is measured for; preference and reward runs add an adapter-disabled reference
# pass or a scalar head, whose graphs would compile separately (not measured). Which methods compile
# is the method table's ``compiles`` (config/method_table.py).
COMPILED_OBJECTIVES = frozenset(LM_OBJECTIVES)
# Online RL objectives whose G completions of a prompt share it (train/group_prompt.py runs it once per group)
GROUP_OBJECTIVES = ("grpo", "rloo", "ppo")


@dataclass(frozen=True)
class SpeedPlan:
    """What :func:`plan_speed` chose, with the reasons printed at the start of a run."""

    attention: str | None  # attention implementation to train with; None keeps the model's own
    attention_reason: str
    frozen_dtype: torch.dtype | None  # dtype frozen linear weights are stored in; None keeps fp32
    frozen_reason: str
    compile: bool = False  # torch.compile the decoder blocks
    compile_reason: str = "not planned"
    share_prefix: bool = False  # run each micro-batch's shared leading tokens once (objectives/shared_prefix.py)
    share_prefix_reason: str = "not planned"

    def describe(self) -> str:
        attention = self.attention or "model default"
        frozen = str(self.frozen_dtype).removeprefix("torch.") if self.frozen_dtype else "as loaded"
        compiled = "compiled" if self.compile else "not compiled"
        shared = "shared" if self.share_prefix else "not shared"
        return (
            f"attention {attention} ({self.attention_reason}); frozen weights {frozen} ({self.frozen_reason}); "
            f"blocks {compiled} ({self.compile_reason}); prompt prefix {shared} ({self.share_prefix_reason})"
        )


def eager_attention_bytes(config, batch_size: int, length: int) -> int:
    """Memory eager attention keeps for backward over all layers of one micro-batch of ``length`` tokens."""
    heads = config.num_attention_heads
    return batch_size * heads * length * length * EAGER_BYTES_PER_SCORE * config.num_hidden_layers


def choose_attention(
    requested: str, precision: Precision, config, batch_size: int, longest_row: int, packing: bool
) -> tuple[str | None, str]:
    """The attention implementation to train with and why (see the module docstring)."""
    if requested != "auto":
        return requested, "set by training.attention"
    if precision.device != "cpu":
        return None, f"{precision.device}: the model's own kernel"
    if packing:
        return None, "packed rows are a whole micro-batch long; SDPA's memory grows linearly"
    if longest_row > EAGER_MAX_LENGTH:
        return None, f"rows up to {longest_row} tokens; SDPA is faster above {EAGER_MAX_LENGTH} on CPU"
    need = eager_attention_bytes(config, batch_size, longest_row)
    if need > EAGER_MEMORY_BUDGET:
        return None, (
            f"eager would keep {need / 2**20:.0f} MiB of attention probabilities "
            f"(budget {EAGER_MEMORY_BUDGET / 2**20:.0f} MiB)"
        )
    return "eager", f"CPU, rows up to {longest_row} tokens: faster than SDPA's flash kernel at this length"


def choose_frozen_dtype(
    method: MethodSection, precision: Precision, sharded: bool = False
) -> tuple[torch.dtype | None, str]:
    """The dtype to store frozen linear weights in, and why (see the module docstring)."""
    if sharded:
        return None, "FSDP/DeepSpeed flatten parameters of one dtype"
    if precision.autocast_dtype is None:
        return None, f"{precision.name} training has no autocast"
    if method_spec(method.type).saves == "model":
        return None, f"method {method.type} saves the whole model"
    if uses_dora(method):  # method.type dora, or a LoRA type with method.lora.use_dora
        return None, "DoRA reads the base weight outside a matmul"
    return precision.autocast_dtype, "bit-identical matmuls under autocast, half the memory, no per-step casts"


def choose_compile(
    requested: bool | str,
    method: MethodSection,
    precision: Precision,
    planned_tokens: int,
    distributed: bool = False,
    objective: str = "sft",
) -> tuple[bool, str]:
    """Whether to torch.compile the decoder blocks, and why (see the module docstring)."""
    if requested is False:
        return False, "training.compile is false"
    if objective not in COMPILED_OBJECTIVES:
        return False, f"not compiled for objective {objective}"
    if not method_spec(method.type).compiles:
        return False, f"method {method.type} runs eagerly"
    if requested is True:
        return True, "training.compile is true"
    if distributed:
        return False, (
            "auto compiles in a single process only (under DDP measured 1.07-1.21x, "
            "below one process's gain; training.compile: true compiles there)"
        )
    if precision.device != "cpu":
        return False, f"auto compiles on CPU only (not yet measured on {precision.device})"
    needed = COMPILE_MIN_TOKENS if precision.autocast_dtype is not None else COMPILE_MIN_TOKENS_FP32
    if planned_tokens < needed:
        under = "" if precision.autocast_dtype is not None else " under fp32"
        return False, f"{planned_tokens:,} training tokens would not repay the compile (auto needs {needed:,}{under})"
    return True, f"{planned_tokens:,} training tokens repay the compile"


def choose_share_prefix(
    training: TrainingSection,
    method: MethodSection,
    precision: Precision,
    objective: str,
    compiled: bool,
    shared_tokens: int,
    randomness: str | None,
) -> tuple[bool, str]:
    """Whether micro-batches run their common leading tokens once, and why (see the module docstring).

    ``shared_tokens``: leading tokens every training example shares (for :data:`GROUP_OBJECTIVES`, the
    shortest prompt's tokens, which its completions share); ``randomness``: what makes the
    training forward random (dropout, NEFTune), which rows would no longer share on the prefix.
    """
    requested = training.share_prefix
    if requested is False:
        return False, "training.share_prefix is false"
    if objective not in LM_OBJECTIVES and objective not in GROUP_OBJECTIVES:
        return False, f"objective {objective} computes its log-probs without it"
    if method_spec(method.type).prompt_learning:
        return False, f"method {method.type}'s virtual tokens go through the peft model's own forward"
    if training.packing:
        return False, "packed rows hold several examples each"
    if training.activation_checkpointing:
        return False, "checkpointed blocks run without a KV cache"
    if compiled:
        return False, "compiled blocks are traced without a KV cache"
    if training.batch_size < 2:
        return False, "micro-batches of one row"
    if requested is True:
        caveat = f"; rows share one draw of {randomness} on it" if randomness else ""
        return True, f"training.share_prefix is true{caveat}"
    if precision.device != "cpu":
        return False, f"auto shares on CPU only (not yet measured on {precision.device})"
    if randomness:
        return False, f"{randomness} would differ per row; training.share_prefix: true shares one draw"
    if objective in GROUP_OBJECTIVES:
        if shared_tokens < MIN_SHARED_TOKENS:
            return False, f"the shortest prompt has {shared_tokens} tokens (auto needs {MIN_SHARED_TOKENS})"
        return True, f"each prompt's completions share its {shared_tokens}+ tokens: run once per group"
    if shared_tokens < MIN_SHARED_TOKENS:
        return False, f"the examples share {shared_tokens} leading tokens (auto needs {MIN_SHARED_TOKENS})"
    return True, f"every example starts with the same {shared_tokens} tokens: run once per micro-batch"


def planned_tokens(training: TrainingSection, lengths: Sequence[int]) -> int:
    """Tokens the run will train on: every example per epoch, or max_steps full batches of the mean length."""
    if not lengths:
        return 0
    if training.max_steps:
        mean = sum(lengths) / len(lengths)
        return int(training.max_steps * training.grad_accum * training.batch_size * mean)
    return int(sum(lengths) * training.epochs)


def plan_speed(
    training: TrainingSection,
    method: MethodSection,
    precision: Precision,
    config,
    lengths: Sequence[int],
    sharded: bool = False,
    distributed: bool = False,
    objective: str = "sft",
    shared_tokens: int = 0,
    randomness: str | None = None,
) -> SpeedPlan:
    """Choose the attention kernel, frozen-weight storage, compilation and prefix sharing for a run
    over examples of ``lengths`` tokens.

    ``sharded``: the trainer runs under FSDP or DeepSpeed; ``distributed``: under several processes;
    ``shared_tokens`` and ``randomness`` as in :func:`choose_share_prefix`.
    """
    attention, attention_reason = choose_attention(
        training.attention, precision, config, training.batch_size, max(lengths, default=0), training.packing
    )
    frozen, frozen_reason = choose_frozen_dtype(method, precision, sharded)
    compiled, compile_reason = choose_compile(
        training.compile, method, precision, planned_tokens(training, lengths), distributed, objective
    )
    shared, shared_reason = choose_share_prefix(
        training, method, precision, objective, compiled, 0 if distributed else shared_tokens, randomness
    )
    if compiled and training.compile == "auto" and precision.autocast_dtype is None:
        # Under fp32 the shared prefix (1.17-1.29x measured) beats compile (1.02-1.06x) and they
        # exclude each other, so auto gives up the compile where the prefix can be shared.
        alternative = choose_share_prefix(
            training, method, precision, objective, False, 0 if distributed else shared_tokens, randomness
        )
        if alternative[0]:
            compiled, compile_reason = False, "under fp32 sharing the prompt prefix gains more than compiling (docs/SPEED.md)"
            shared, shared_reason = alternative
    if distributed and shared:
        shared, shared_reason = False, "the DDP-wrapped model computes its own loss"
    return SpeedPlan(attention, attention_reason, frozen, frozen_reason, compiled, compile_reason, shared, shared_reason)


def frozen_linears(model: nn.Module) -> Iterator[nn.Linear]:
    """Plain ``nn.Linear`` layers with no trainable parameter whose fp32 weight no embedding shares."""
    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for module in model.modules():
        if type(module) is not nn.Linear:  # subclasses (4-bit, peft layers) hold other data
            continue
        params = list(module.parameters(recurse=False))
        if any(p.requires_grad for p in params):
            continue
        if module.weight.dtype != torch.float32 or id(module.weight) in embedding_weights:
            continue
        yield module


def store_frozen_linears(model: nn.Module, dtype: torch.dtype) -> int:
    """Store every :func:`frozen_linears` layer in ``dtype``; return the bytes this frees.

    The other frozen fp32 weights (embeddings, norms) are then copied into process memory
    (:func:`own_frozen_weights`): transformers memory-maps an fp32 checkpoint loaded as fp32, and
    while any tensor still views that mapping, the pages the cast read stay resident (measured on the
    built-in model: RSS 1000 MB after the cast, 703 MB once nothing views the file any more).
    """
    saved = 0
    for module in list(frozen_linears(model)):
        before = sum(p.numel() * p.element_size() for p in module.parameters(recurse=False))
        module.to(dtype)
        saved += before - sum(p.numel() * p.element_size() for p in module.parameters(recurse=False))
    if saved:
        own_frozen_weights(model)
    return saved


def own_frozen_weights(model: nn.Module) -> int:
    """Give every frozen fp32 parameter its own copy of its values; returns how many were copied.

    Values, dtypes and ties are unchanged (each shared parameter is one object and is copied once);
    only the storage moves, from wherever loading put it (possibly a view of a memory-mapped file)
    into memory of this process. Trainable parameters are left alone: the optimizer holds them.
    """
    copied = 0
    for param in model.parameters():  # unique parameters: a tied weight comes once
        if not param.requires_grad and param.dtype == torch.float32:
            param.data = param.data.clone()
            copied += 1
    return copied


@contextmanager
def applied(model, plan: SpeedPlan) -> Iterator[int]:
    """Train inside this: stores frozen linears as planned (kept afterwards: evaluation runs under the
    same autocast) and switches the attention kernel, which it gives back on exit. Yields the bytes
    the frozen-weight storage freed."""
    freed = store_frozen_linears(model, plan.frozen_dtype) if plan.frozen_dtype is not None else 0
    if plan.compile:
        compile_blocks(model)
    with attention_implementation(model, plan.attention):
        yield freed


def decoder_blocks(model: nn.Module) -> nn.ModuleList | None:
    """The decoder's list of blocks (``get_decoder().layers`` on transformers decoders), if it has one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    return layers if isinstance(layers, nn.ModuleList) else None


def compile_blocks(model: nn.Module) -> int:
    """torch.compile every decoder block in place (dynamic shapes); returns how many were compiled.

    ``nn.Module.compile`` keeps the module tree, names and state dict as they are, so saving,
    adapters and checkpoints see the same model. The blocks share one code object, so they share
    one compiled graph.
    """
    blocks = decoder_blocks(model)
    if blocks is None:
        return 0
    for block in blocks:
        block.compile(dynamic=True)
    return len(blocks)


def uncompiled():
    """Run compiled modules as plain eager code inside this context (evaluation, generation)."""
    return torch.compiler.set_stance("force_eager")


@contextmanager
def attention_implementation(model, implementation: str | None) -> Iterator[None]:
    """Train with ``implementation`` and give the model its own back afterwards (None: leave it alone)."""
    # transformers keeps the active implementation in the config's _attn_implementation (read only here;
    # its docs point users to it); set_attn_implementation is the public way to change it.
    original = getattr(model.config, "_attn_implementation", None)
    if implementation is None or implementation == original:
        yield
        return
    model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        if original is not None:
            model.set_attn_implementation(original)
