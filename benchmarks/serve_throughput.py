"""Throughput of ``tuneforge serve`` at 1, 8 and 32 concurrent clients against one-at-a-time HF ``generate``.

The baseline is what a server without batching does: each request is one ``generate`` call, one after
another. The server runs under uvicorn on loopback and is driven with the official ``openai`` SDK from
client threads, so the figures include HTTP, JSON and the event loop. Every request is greedy with the
same ``max_tokens``; throughput counts the tokens actually generated (``usage.completion_tokens``),
so a request that ends early at an end-of-turn token is not credited with tokens it did not produce.

Usage (bounded: a few minutes on a 2-core CPU with the default tiny model):

    HF_HUB_OFFLINE=1 python benchmarks/serve_throughput.py                 # random 4-layer Llama, hidden 256
    HF_HUB_OFFLINE=1 python benchmarks/serve_throughput.py --model smollm2-135m-instruct --requests 16

Writes the table to stdout and to benchmarks/results/serve_throughput.md (``--out``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tiny tokenizer of tests/helpers

import openai  # noqa: E402
import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from speed import cpu_name  # noqa: E402  (benchmarks/ is the script's directory)
from tests.helpers.tiny import tiny_tokenizer  # noqa: E402
from tuneforge.serve.limits import ServeLimits  # noqa: E402
from tuneforge.serve.openai_api import create_app  # noqa: E402
from tuneforge.serve.served import load_served  # noqa: E402
from tuneforge.serve.server import serve_in_thread  # noqa: E402

PROMPTS = [
    "What is the capital of France?", "Write one sentence about the sea.", "Name three colours.",
    "How do I boil an egg?", "Say hello in Spanish.", "What is two plus two?", "Describe a cat.",
    "Give me a short tip for studying.",
]


def tiny_model_dir(root: Path) -> str:
    tok = tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(root)
    tok.save_pretrained(root)
    return str(root)


def sequential_generate(served, n_requests: int, max_tokens: int) -> tuple[float, int]:
    """(seconds, tokens) for ``n_requests`` one-at-a-time greedy ``generate`` calls.

    Run in a worker thread, as the server's engine runs: on the 2-core machine shared with other jobs
    where this was measured, the same ``generate`` took 2.25 s in the main thread and 0.21 s in a
    fresh thread (torch's intra-op threads spin against the other processes), which would credit
    batching with a speed-up that is really a threading artefact.
    """
    result: list[tuple[float, int]] = []
    worker = threading.Thread(target=lambda: result.append(_sequential(served, n_requests, max_tokens)))
    worker.start()
    worker.join()
    return result[0]


def _sequential(served, n_requests: int, max_tokens: int) -> tuple[float, int]:
    tok, model = served.tokenizer, served.model
    eos = [tok.eos_token_id] + ([model.generation_config.eos_token_id] if isinstance(model.generation_config.eos_token_id, int) else [])
    tokens, start = 0, time.perf_counter()
    for i in range(n_requests):
        enc = tok.apply_chat_template([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            out = model.generate(**enc.to(model.device), do_sample=False, max_new_tokens=max_tokens, eos_token_id=eos, pad_token_id=tok.pad_token_id)
        tokens += out.shape[1] - enc["input_ids"].shape[1]
    return time.perf_counter() - start, tokens


def served_load(url: str, model: str, clients: int, n_requests: int, max_tokens: int) -> tuple[float, int, list[float]]:
    """(seconds, tokens, latencies) for ``n_requests`` spread over ``clients`` concurrent clients."""
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
    latencies: list[float] = []

    def one(i: int) -> int:
        t = time.perf_counter()
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], temperature=0, max_tokens=max_tokens)
        latencies.append(time.perf_counter() - t)
        return r.usage.completion_tokens

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        tokens = sum(pool.map(one, range(n_requests)))
    return time.perf_counter() - start, tokens, latencies



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a model spec (default: a random tiny Llama built here)")
    parser.add_argument("--requests", type=int, default=32, help="requests per measurement")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serve_throughput.md")
    ns = parser.parse_args()
    if ns.threads:
        torch.set_num_threads(ns.threads)
    with tempfile.TemporaryDirectory() as tmp:
        spec = ns.model or tiny_model_dir(Path(tmp) / "model")
        served = load_served(spec, name="bench")
        if torch.cuda.is_available():
            served.model.to("cuda")
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{cpu_name()}, {torch.get_num_threads()} threads"
        sequential_generate(served, 2, 4)  # warm-up
        seconds, tokens = sequential_generate(served, ns.requests, ns.max_tokens)
        rows = [("HF generate, one at a time", 1, seconds, tokens, None)]
        app = create_app(served, limits=ServeLimits(max_batch=32, batch_wait_ms=10, queue_size=128), feedback_log=Path(tmp) / "fb.jsonl")
        with serve_in_thread(app) as url:
            served_load(url, "bench", 1, 2, 4)  # warm-up
            for clients in (1, 8, 32):
                s, t, lat = served_load(url, "bench", clients, max(ns.requests, clients), ns.max_tokens)
                rows.append((f"tuneforge serve, {clients} client(s)", clients, s, t, lat))
    lines = [
        f"Serve throughput: model {ns.model or 'random Llama 4 x 256 (tests.helpers tokenizer)'}, greedy, max_tokens {ns.max_tokens}, "
        f"{ns.requests} requests per row; device: {device}; torch {torch.__version__}.",
        "",
        "| setting | concurrency | requests | seconds | generated tokens | tokens/s | vs one-at-a-time | p50 latency s | p95 latency s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = rows[0][3] / rows[0][2]
    for name, clients, s, t, lat in rows:
        q = statistics.quantiles(lat, n=100) if lat and len(lat) > 1 else None
        p50, p95 = (f"{q[49]:.2f}", f"{q[94]:.2f}") if q else ("-", "-")
        n = len(lat) if lat else ns.requests
        lines.append(f"| {name} | {clients} | {n} | {s:.1f} | {t} | {t / s:.1f} | {t / s / base:.2f}x | {p50} | {p95} |")
    text = "\n".join(lines) + "\n"
    print(text)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(text + f"\nCommand: `HF_HUB_OFFLINE=1 python benchmarks/serve_throughput.py{' --model ' + ns.model if ns.model else ''}{f' --threads {ns.threads}' if ns.threads else ''} --requests {ns.requests} --max-tokens {ns.max_tokens}`\n")


if __name__ == "__main__":
    main()
