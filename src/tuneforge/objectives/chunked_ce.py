"""Output head + cross-entropy fused and chunked, so full-vocabulary logits never exist at once.

SmolLM2 has a 49k vocabulary and a 576-wide model: logits for a batch of N positions are N x 49k
floats (and as many again for their gradient), far larger than the hidden states that produce them.
Computed in chunks of rows, each chunk's logits live only long enough to give its loss and its
gradients: the gradient of the summed loss with respect to a chunk's logits is softmax - onehot, so
the hidden-state gradient (and the head's weight gradient when the head trains) is produced in the
forward pass and the backward pass only scales it. Peak memory for the head is one chunk, not N rows.

Liger Kernel ships the same idea as Triton GPU kernels; it does not run on CPU, and CPU is where
tuneforge must work, hence this small torch implementation (tested against ``F.cross_entropy`` on
the full logits, loss and gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tuneforge.data.render import IGNORE_INDEX

DEFAULT_CHUNK_ROWS = 1024


class _LinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(h_i @ W^T, t_i) with gradients computed chunk by chunk in the forward pass."""

    @staticmethod
    def forward(
        ctx,
        hidden,
        weight,
        targets,
        chunk_rows: int,
        compute_dtype: torch.dtype,
        grad_enabled: bool,
    ):
        # No gradient work under no_grad (validation): only the loss is wanted there.
        need_h = grad_enabled and ctx.needs_input_grad[0]
        need_w = grad_enabled and ctx.needs_input_grad[1]
        w = weight.to(compute_dtype)
        acc = torch.promote_types(
            compute_dtype, torch.float32
        )  # softmax in fp32 (fp64 stays fp64)
        total = torch.zeros((), dtype=acc, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = (
            torch.zeros(weight.shape, dtype=acc, device=weight.device)
            if need_w
            else None
        )
        for start in range(0, hidden.shape[0], chunk_rows):
            h = hidden[start : start + chunk_rows].to(compute_dtype)
            t = targets[start : start + chunk_rows]
            logits = (h @ w.T).to(acc)
            keep = t.ne(IGNORE_INDEX)
            safe_t = t.clamp(min=0)
            lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, safe_t.unsqueeze(1)).squeeze(1)
            total += ((lse - picked) * keep).sum()
            if need_h or need_w:
                # d(sum CE)/d logits = softmax - onehot(target), zero on ignored rows
                g = torch.exp(logits.sub_(lse.unsqueeze(1)))
                g[torch.arange(g.shape[0], device=g.device), safe_t] -= 1.0
                g.mul_(keep.unsqueeze(1))
                g = g.to(compute_dtype)
                if need_h:
                    grad_h[start : start + chunk_rows] = (g @ w).to(hidden.dtype)
                if need_w:
                    grad_w += (g.T @ h).to(acc)
        ctx.save_for_backward(
            grad_h if need_h else None, grad_w.to(weight.dtype) if need_w else None
        )
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        return (
            grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None,
            grad_w * grad_out.to(grad_w.dtype) if grad_w is not None else None,
            None,
            None,
            None,
            None,
        )


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> torch.Tensor:
    """Summed cross-entropy of ``hidden @ weight.T`` against ``targets`` (IGNORE_INDEX rows skipped).

    ``hidden`` is [N, d], ``weight`` the head's [V, d] matrix, ``targets`` [N]. The matmuls run in the
    active autocast dtype (bf16 under bf16 autocast), the softmax in fp32, as the unfused path does.
    """
    if hidden.dim() != 2 or targets.shape != hidden.shape[:1]:
        raise ValueError(
            f"expected hidden [N, d] and targets [N], got {tuple(hidden.shape)} and {tuple(targets.shape)}"
        )
    if chunk_rows <= 0:
        raise ValueError("chunk_rows must be positive")
    device_type = hidden.device.type
    compute_dtype = (
        torch.get_autocast_dtype(device_type)
        if torch.is_autocast_enabled(device_type)
        else hidden.dtype
    )
    with torch.autocast(device_type, enabled=False):
        return _LinearCrossEntropy.apply(
            hidden, weight, targets, chunk_rows, compute_dtype, torch.is_grad_enabled()
        )


def reference_linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """The unfused computation the chunked one must equal (full logits, then cross-entropy)."""
    logits = hidden @ weight.T
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
