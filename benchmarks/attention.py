"""Attention forward + backward on CPU: eager (matmul + fp32 softmax) against PyTorch SDPA, by row length.

The measurement behind ``training.attention: auto`` (src/tuneforge/train/speed_plan.py): one attention
layer of SmolLM2-135M (9 query heads, 3 key/value heads, head dim 64), bf16, causal, at several
lengths and batch sizes, timed over repeated forward + backward passes. Eager is the computation
transformers' ``eager_attention_forward`` does (repeat the key/value heads, scores, fp32 softmax,
weighted sum); SDPA is ``torch.nn.functional.scaled_dot_product_attention`` with GQA, which on CPU runs
its flash kernel. Usage (under the heavy-job lock):

    flock /tmp/tuneforge-heavy.lock python benchmarks/attention.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

HEADS, KV_HEADS, HEAD_DIM = 9, 3, 64
CASES = [(128, 4), (256, 4), (384, 4), (512, 2), (1024, 1), (2048, 1)]  # (length, batch)


def eager(q, k, v, mask):
    k = k.repeat_interleave(HEADS // KV_HEADS, dim=1)
    v = v.repeat_interleave(HEADS // KV_HEADS, dim=1)
    scores = (q @ k.transpose(-1, -2)) * HEAD_DIM**-0.5 + mask
    return torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype) @ v


def sdpa(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True, scale=HEAD_DIM**-0.5)


def time_case(fn, length: int, batch: int, repeats: int) -> float:
    """Milliseconds per forward + backward, after two warm-up passes."""
    mask = torch.full((length, length), float("-inf")).triu(1)[None, None].to(torch.bfloat16)
    q = torch.randn(batch, HEADS, length, HEAD_DIM, dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(batch, KV_HEADS, length, HEAD_DIM, dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(batch, KV_HEADS, length, HEAD_DIM, dtype=torch.bfloat16, requires_grad=True)
    for _ in range(2):
        fn(q, k, v, mask).float().sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        fn(q, k, v, mask).float().sum().backward()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    ns = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| length | batch | eager ms | SDPA ms | SDPA / eager |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for length, batch in CASES:
        e = time_case(eager, length, batch, ns.repeats)
        s = time_case(sdpa, length, batch, ns.repeats)
        print(f"| {length} | {batch} | {e:.1f} | {s:.1f} | {s / e:.2f} |", flush=True)


if __name__ == "__main__":
    main()
