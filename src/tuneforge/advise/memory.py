"""An estimate of training memory, by component, from the model config and the method's parameter counts.

The estimate is the memory the training *tensors* need at the peak of a step; it leaves out the
Python / torch / transformers runtime itself (measured at 526 MB RSS after imports on the CPU machine, see
docs/ADVISE.md), which :func:`estimate_training_memory` takes as ``runtime_bytes`` when a caller
wants a whole-process figure.

Components (bytes; fp32 training as the recipes do it: weights are loaded in fp32 and bf16 runs use
autocast, so master weights, gradients and optimizer states stay fp32):

- weights: every parameter x 4 (frozen ones too). QLoRA stores the decoder's linear weights in
  4-bit NF4 (0.5 byte + block constants, ~0.52 byte with double quantisation); the rest stays fp32.
- gradients: trainable x 4.
- optimizer: AdamW keeps two fp32 moments, trainable x 8. The Trainer's default optimizer here is
  torch's fused AdamW, which updates in place (no trainable-sized temporaries; a first version of
  this estimate counted one and overestimated full fine-tuning by 27%).
- activations: what autograd saves for the backward pass, per token and per transformer block that
  gradients flow through. For a Llama-style block with hidden size h, key/value width kv
  (= kv_heads x head_dim) and MLP width i (gated MLP) the saved tensors are
      attention: block input h, normed input h, rotated q h, rotated k kv, v kv, attention output h,
                 o_proj input h                                                 -> 5h + 2kv
      MLP:       input h, normed input h, gate i, up i, act(gate) i, act(gate)*up i -> 2h + 4i
  so A = 7h + 2kv + 4i elements per token per block (non-gated MLPs: 2h + 2i for the MLP), 4 bytes
  each in fp32. Under bf16 autocast the residual stream and the RMSNorm outputs stay fp32 (4h x 4
  bytes), the rest is bf16, and every linear layer keeps its own bf16 copy of an fp32 input (q, k, v,
  gate, up: 5h): 16h + 2 x (8h + 2kv + 4i) bytes. When the blocks' own weights train (full, freeze)
  the weight gradients keep another copy of the linear inputs: + (h + i) x 4 bytes (x 3 under
  autocast). LoRA with dropout > 0 keeps each adapted layer's dropped-out input and its 1-byte mask
  (width x 5 bytes, x 3 under autocast) and every LoRA A output (r x 4, x 2 under autocast). DoRA
  layers also keep their base output and their scaled LoRA output for the magnitude's gradient
  (under autocast one fp32 and one bf16: output width x 6 bytes); in fp32 autograd kept 11.6 bytes
  per output width on the tiny test Llama, counted as 12 (the third value was not traced).
  Blocks below the first trainable parameter save nothing (no gradient flows there): partial
  fine-tuning of the last N blocks stores N blocks, everything else stores all of them. One more
  block's worth is counted for the transient gradients of the block being back-propagated.
  Tokens: batch_size x the longest example (batches are padded to their longest member; the peak is
  the batch holding the longest example), less (batch_size - 1) x the shared prompt prefix when the
  speed plan runs it once (``training.share_prefix``). The per-token figures are checked against the tensors
  autograd really saves (``torch.autograd.graph.saved_tensors_hooks``) in tests/advise.
- bf16 weight copies (autocast only, counted with the activations): autocast casts each fp32 weight
  to bf16 for its matmul, and that copy is kept for the backward pass (frozen weights: saved to get
  the input gradient; trainable ones: cached for the step). 2 bytes x the linear weights of the blocks
  gradients flow through, plus the output head (vocab x h).
- the run's speed plan (``tuneforge.train.speed_plan``, the same functions ``tuneforge train`` calls):
  frozen linear weights of adapter methods stored in the autocast dtype take 2 bytes each instead
  of 4 and need no per-step copy (the copies above shrink by the same parameters); eager attention
  keeps each block's attention probabilities, batch x heads x L^2 x (4 bytes fp32 softmax output + 2
  bytes for its bf16 copy under autocast); activation checkpointing keeps only each block's fp32
  input (h x 4 bytes per token) and recomputes one block at a time, so the activations become
  tokens x (4h x blocks + 2 x one block's saved bytes).
- logits: the sft/pretrain trainer computes the output head only on positions with a trained label, so the peak
  holds logits, log-softmax and the logits' gradient for batch_size x (most trained tokens in one
  example) positions: 3 x positions x vocab x 4 bytes.

The peak: backward frees each block's activations as it writes that block's gradients, so the
tensors alive at the peak are weights + optimizer + max(activations + logits, gradients), not the sum
of all five (summing them overestimated full fine-tuning by ~25%).

Allocator: glibc malloc keeps memory freed by one step's activations for the next, in pieces that do
not always fit the next requests, so the process holds more than is live. Measured as held minus live
bytes at the peak, it is counted as :data:`ALLOCATOR_OVERHEAD` x (the activations a step allocates +
logits). With activation checkpointing a step still allocates and frees every block's activations
(recomputed one block at a time), and the held memory stayed the same (843 vs 788 MB on the LoRA
quickstart) while the live peak fell, so the share is of the uncheckpointed activations.

What is not modelled: compiled blocks (``training.compile``: inductor recomputes cheap elementwise
work in backward instead of saving it, measured 250-305 MB lower on the built-in model), data-loader
copies, and the runtime itself (a caller passes it as ``runtime_bytes``). The measured comparison in
docs/ADVISE.md states how far the estimate is from a real peak RSS on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuneforge.models.architectures import architecture

# Memory glibc malloc keeps after a step's activations are freed, as a share of the activations a step
# allocates (without checkpointing's savings) + logits: at the peak RSS of 3-step runs on the built-in
# model (mallinfo2 sampled every 2 ms), held minus live bytes was 36% (LoRA), 38% (LoRA with
# activation checkpointing), 38% (prompt tuning), 22% (full), 21% (freeze) of that (docs/ADVISE.md).
ALLOCATOR_OVERHEAD = 0.3
NF4_BYTES_PER_PARAM = 0.52  # 4 bits + fp32 absmax per 64 weights, itself 8-bit quantised (double quantisation)
MB = 1024 * 1024


@dataclass(frozen=True)
class ModelShape:
    """The config numbers the activation formula needs."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_width: int
    vocab: int
    gated_mlp: bool

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        config = getattr(config, "text_config", None) or config
        hidden = config.hidden_size
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        intermediate = (
            getattr(config, "intermediate_size", None)
            or getattr(config, "moe_intermediate_size", None)
            or 4 * hidden
        )
        return cls(
            hidden=hidden,
            intermediate=intermediate,
            layers=config.num_hidden_layers,
            heads=heads,
            kv_width=kv_heads * head_dim,
            vocab=config.vocab_size,
            gated_mlp=architecture(getattr(config, "model_type", None)).gated_mlp,
        )

    def linear_params_per_block(self) -> int:
        h, i, kv = self.hidden, self.intermediate, self.kv_width
        return h * (h + 2 * kv) + h * h + (3 if self.gated_mlp else 2) * h * i

    def activation_bytes_per_token(
        self, *, autocast: bool = False, block_weights_train: bool = False
    ) -> int:
        """Bytes autograd saves per token in one block (see the module docstring)."""
        h, i, kv = self.hidden, self.intermediate, self.kv_width
        mlp_i = 4 * i if self.gated_mlp else 2 * i
        if autocast:
            saved = 16 * h + 2 * (8 * h + 2 * kv + mlp_i)
        else:
            saved = 4 * (7 * h + 2 * kv + mlp_i)
        if block_weights_train:
            saved += (h + i) * (3 if autocast else 4)
        return saved


@dataclass(frozen=True)
class TrainingShape:
    """What a step looks like: batch, padded length, trained positions, precision, and how the method trains."""

    batch_size: int
    seq_len: int
    trained_positions_per_example: int
    autocast: bool = (
        False  # bf16/fp16 autocast over fp32 weights (the recipes' bf16), else fp32
    )
    grad_blocks: int | None = None  # blocks gradients flow through (None: all)
    block_weights_train: bool = False  # weights inside the blocks train (full, freeze)
    lora_dropout_widths: int = (
        0  # sum of input widths of LoRA layers with dropout > 0, per block
    )
    lora_rank_widths: int = 0  # sum of LoRA A output widths (r) per block
    dora_output_widths: int = 0  # sum of DoRA layers' output widths per block
    quantized_params: int = 0  # parameters stored in 4-bit (QLoRA)
    half_stored_params: int = (
        0  # frozen linear weights the speed plan stores in the autocast dtype
    )
    attention_score_bytes: int = (
        0  # bytes eager attention keeps per probability (0: SDPA keeps none)
    )
    activation_checkpointing: bool = (
        False  # blocks recompute their activations in backward
    )
    shared_prefix_tokens: int = 0  # leading tokens the rows share and the step runs once (training.share_prefix)


@dataclass
class MemoryEstimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    # freed activation memory glibc still holds at the peak (see ALLOCATOR_OVERHEAD)
    allocator: int = 0
    runtime: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def training_tensors(self) -> int:
        """Tensors alive at the peak of a step: the weights and optimizer states, plus whichever is
        larger of what backward starts from (activations and logits) and the gradients it ends with
        (backward frees each block's activations as it writes that block's gradients)."""
        return (
            self.weights
            + self.optimizer
            + max(self.activations + self.logits, self.gradients)
        )

    @property
    def training(self) -> int:
        """The process's peak minus its runtime: what ``advise --measure`` compares against."""
        return self.training_tensors + self.allocator

    @property
    def total(self) -> int:
        return self.training + self.runtime

    def as_mb(self) -> dict[str, float]:
        parts = {
            "weights": self.weights,
            "gradients": self.gradients,
            "optimizer": self.optimizer,
            "activations": self.activations,
            "logits": self.logits,
            "allocator": self.allocator,
            "runtime": self.runtime,
            "total": self.total,
        }
        return {k: round(v / MB, 1) for k, v in parts.items()}


def estimate_training_memory(
    shape: ModelShape,
    total_params: int,
    trainable_params: int,
    step: TrainingShape,
    *,
    runtime_bytes: int = 0,
) -> MemoryEstimate:
    """The component-wise estimate described in the module docstring."""
    full_width = total_params - step.quantized_params - step.half_stored_params
    weights = int(
        full_width * 4
        + step.half_stored_params * 2
        + step.quantized_params * NF4_BYTES_PER_PARAM
    )
    gradients = trainable_params * 4
    optimizer = trainable_params * 8
    # a shared prefix runs once for the micro-batch, so the other rows hold activations for their rest only
    tokens = step.batch_size * step.seq_len - (step.batch_size - 1) * min(step.shared_prefix_tokens, step.seq_len)
    blocks = (
        shape.layers
        if step.grad_blocks is None
        else min(step.grad_blocks, shape.layers)
    )
    per_token = shape.activation_bytes_per_token(
        autocast=step.autocast, block_weights_train=step.block_weights_train
    )
    per_token += step.lora_dropout_widths * (
        3 if step.autocast else 5
    ) + step.lora_rank_widths * (2 if step.autocast else 4)
    per_token += step.dora_output_widths * (6 if step.autocast else 12)
    per_token += shape.heads * step.seq_len * step.attention_score_bytes
    # what a step allocates and frees: every block's activations, also when checkpointing recomputes
    # them one block at a time (the allocator's share follows this, not what is alive at once)
    churned = tokens * per_token * (blocks + 1) if blocks else 0
    if blocks and step.activation_checkpointing:
        activations = tokens * (4 * shape.hidden * blocks + 2 * per_token)
    else:
        activations = churned
    if step.autocast and trainable_params:
        cast = blocks * shape.linear_params_per_block() + shape.vocab * shape.hidden
        activations += 2 * max(0, cast - step.half_stored_params)
    positions = step.batch_size * step.trained_positions_per_example
    logits = 3 * positions * shape.vocab * 4 if trainable_params else 0
    allocator = int(ALLOCATOR_OVERHEAD * (churned + logits))
    return MemoryEstimate(
        weights, gradients, optimizer, activations, logits, allocator, runtime_bytes
    )
