"""Generation speed: tuneforge's ``generate_batch`` levers against plain ``model.generate`` (issue 16).

Same model (the built-in SmolLM2-135M-Instruct), same prompts (the quickstart's held-out tickets in
its chat template), same greedy settings and ``max_new_tokens``. The baseline is what a user writes:
``model.generate`` on the prompts in their order, ``batch`` at a time, left-padded. Each lever row
changes one thing against tuneforge's default, so its effect can be read off. Every row reports:

- **tokens/s**: generated tokens (up to and including each answer's EOS; padding after it is not
  counted) over the wall time of the whole row;
- **TTFT**: mean time from a batch's start to its first token (the prefill), per batch;
- **equal**: how many answers' decoded text equals the baseline's (greedy outputs must not change).

The machine is shared (2 cores, other jobs running), so the configurations run interleaved, ``--repeats``
rounds of all of them, and each row keeps its best round (the least disturbed); ratios are within one
run. Usage (about 10 minutes on a loaded 2-core CPU with the defaults):

    HF_HUB_OFFLINE=1 python benchmarks/generation.py                     # batch 1 (8 prompts) and batch 25 (25 prompts)
    HF_HUB_OFFLINE=1 python benchmarks/generation.py --compile           # adds the compiled-forward row (slow to compile)
    HF_HUB_OFFLINE=1 python benchmarks/generation.py --autocast bf16     # every row under bf16 autocast, as evaluation runs on bf16 CPUs

Writes the table to stdout and to benchmarks/results/generation.md (``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from speed import cpu_name  # noqa: E402
from tuneforge.evaluate.generate import BatchTiming, GenerationPlan, autocast_context, generate_batch  # noqa: E402
from tuneforge.models.precision import cpu_bf16_flags  # noqa: E402
from tuneforge.targets import load_target  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "examples" / "quickstart" / "test.jsonl"
Result = tuple[list[str], float, int, float]  # texts, seconds, generated tokens, mean TTFT


def prompts(tokenizer, n: int) -> list[str]:
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()][:n]
    msgs = [[{"role": "user", "content": f"{r['instruction']}\n\n{r['input']}"}] for r in rows]
    return [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in msgs]


def plain_generate(model, tok, texts: list[str], batch: int, max_new: int, autocast: torch.dtype | None = None) -> Result:
    """The baseline: ``model.generate`` on the prompts in order, ``batch`` at a time (under ``autocast``
    when given, as a user would wrap it)."""
    side, tok.padding_side = tok.padding_side, "left"
    out_texts, tokens, ttft, t0 = [], 0, [], time.perf_counter()
    for i in range(0, len(texts), batch):
        enc = tok(texts[i : i + batch], return_tensors="pt", padding=True, add_special_tokens=False)
        timings: list[float] = []
        s = time.perf_counter()
        with torch.inference_mode(), autocast_context(autocast):
            out = model.generate(**enc, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                 streamer=_FirstToken(timings))
        ttft.append(timings[0] - s)
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            n = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
            tokens += n
            out_texts.append(tok.decode(row[:n], skip_special_tokens=True).strip())
    tok.padding_side = side
    return out_texts, time.perf_counter() - t0, tokens, sum(ttft) / len(ttft)


class _FirstToken:
    """A streamer (transformers' public hook) that notes when the first generated token arrives."""

    def __init__(self, times: list[float]) -> None:
        self.times, self.calls = times, 0

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2:  # the first call carries the prompt
            self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def tuneforge(model, tok, texts: list[str], batch: int, max_new: int, plan: GenerationPlan, autocast: torch.dtype | None = None) -> Result:
    timings: list[BatchTiming] = []
    t0 = time.perf_counter()
    out = generate_batch(model, tok, texts, max_new_tokens=max_new, batch_size=batch, timings=timings, plan=plan, autocast_dtype=autocast)
    return out, time.perf_counter() - t0, sum(t.new_tokens for t in timings), sum(t.first_token_s for t in timings) / len(timings)


def llama_cpp_engine(model, tok, tmp: Path, threads: int) -> Callable[[list[str], int, int], Result]:
    """llama.cpp on an f16 GGUF of the model (tuneforge's exporter), one sequence at a time, greedy."""
    import llama_cpp  # lazy: optional extra, only for this row

    from tuneforge.export.gguf import save_gguf  # lazy: only for this row

    path = save_gguf(model, tok, tmp / "model-f16.gguf", quant="f16")
    llm = llama_cpp.Llama(str(path), n_ctx=2048, n_threads=threads, n_batch=512, verbose=False)
    eos = tok.eos_token_id

    def run(texts: list[str], batch: int, max_new: int) -> Result:
        out_texts, tokens, ttft, t0 = [], 0, [], time.perf_counter()
        for text in texts:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            new: list[int] = []
            s = time.perf_counter()
            for t in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
                if not new:
                    ttft.append(time.perf_counter() - s)
                new.append(t)
                if t == eos or len(new) >= max_new:
                    break
            tokens += len(new)
            out_texts.append(tok.decode(new, skip_special_tokens=True).strip())
        return out_texts, time.perf_counter() - t0, tokens, sum(ttft) / len(ttft)

    return run


def configs(model, tok, ns, tmp: Path) -> dict[str, Callable[[list[str], int, int], Result]]:
    """Name -> runner; the first is the baseline."""
    ac = torch.bfloat16 if ns.autocast == "bf16" else None

    def ours(plan: GenerationPlan, on=model) -> Callable[[list[str], int, int], Result]:
        return lambda t, b, m: tuneforge(on, tok, t, b, m, plan, ac)

    rows: dict[str, Callable] = {
        "plain model.generate": lambda t, b, m: plain_generate(model, tok, t, b, m, ac),
        "tuneforge default (own loop, finished rows dropped, length-sorted, shared prefix prefilled once, under autocast linear weights cast once per call; a batch of one: generate)": ours(GenerationPlan()),
        "lever: no length sorting": ours(GenerationPlan(sort_by_length=False)),
        "lever: shared prompt prefix not prefilled once": ours(GenerationPlan(share_prefix=False)),
        "lever: model.generate, length-sorted (no row dropping)": ours(GenerationPlan(loop="hf")),
        "lever: model.generate + static KV cache": ours(GenerationPlan(loop="hf", cache="static")),
    }
    if ac is not None:
        rows["lever: only the output head cast once per call (other linears on every step)"] = ours(GenerationPlan(cast_once="head"))
        rows["lever: every weight cast on every step (autocast's own casts)"] = ours(GenerationPlan(cast_once="none"))
    if ns.compile:
        compiled = torch.compile(model, dynamic=True)
        rows["lever: default plan, torch.compile'd forward"] = ours(GenerationPlan(), compiled)
    if cpu_bf16_flags() and ac is None:  # under autocast the matmuls already run in bf16
        bf16 = __import__("copy").deepcopy(model).to(torch.bfloat16)
        rows["lever: bf16 weights"] = ours(GenerationPlan(), bf16)
    if ns.llama_cpp:
        rows["llama.cpp engine (f16 GGUF, one sequence at a time)"] = llama_cpp_engine(model, tok, tmp, torch.get_num_threads())
    if ns.only:  # the baseline and the default always run, so every table has both
        keep = [w.strip() for w in ns.only.split(",")]
        rows = {k: v for i, (k, v) in enumerate(rows.items()) if i < 2 or any(w in k for w in keep)}
    return rows


def measure(rows: dict[str, Callable], texts: list[str], batch: int, max_new: int, repeats: int) -> dict[str, Result]:
    best: dict[str, Result] = {}
    for name, run in rows.items():  # warm-up (and compile) outside the timing
        run(texts[: min(2, len(texts))], min(batch, 2), 4)
    for _ in range(repeats):
        for name, run in rows.items():
            r = run(texts, batch, max_new)
            print(f"  batch {batch} | {name} | {r[2]} tokens | {r[1]:.1f} s | {r[2] / r[1]:.1f} tok/s | ttft {r[3]:.3f}", flush=True)
            if name not in best or r[2] / r[1] > best[name][2] / best[name][1]:
                best[name] = r
    return best


def table(best: dict[str, Result], batch: int, n: int) -> list[str]:
    base_name = next(iter(best))
    base = best[base_name]
    lines = [f"### batch {batch} ({n} prompts)", "", "| engine / lever | tokens | seconds | tokens/s | vs plain generate | mean TTFT s | equal to plain |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, (texts, s, tokens, ttft) in best.items():
        equal = sum(a == b for a, b in zip(texts, base[0]))
        lines.append(f"| {name} | {tokens} | {s:.1f} | {tokens / s:.1f} | {tokens / s / (base[2] / base[1]):.2f}x | {ttft:.3f} | {equal}/{len(texts)} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batches", default="1,25", help="comma-separated batch sizes")
    parser.add_argument("--prompts-at-1", type=int, default=8, help="prompts for batch 1 (each runs alone)")
    parser.add_argument("--prompts", type=int, default=25, help="prompts for the other batch sizes")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--autocast", choices=("none", "bf16"), default="none",
                        help="run every row, the baseline included, under bf16 autocast (what evaluation does where the CPU has native bf16)")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile row (a long cold compile)")
    parser.add_argument("--no-llama-cpp", dest="llama_cpp", action="store_false")
    parser.add_argument("--only", default=None, help="comma-separated words: keep only the rows whose name has one (plus baseline and default)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "generation.md")
    ns = parser.parse_args()
    if ns.threads:
        torch.set_num_threads(ns.threads)
    model, tok = load_target(ns.model)
    model.eval()
    flags = cpu_bf16_flags()
    lines = [f"Generation: {ns.model}, fp32 weights{', bf16 autocast' if ns.autocast == 'bf16' else ''}, greedy, max_new_tokens {ns.max_new_tokens}; CPU: {cpu_name()} "
             f"(native bf16: {', '.join(flags) or 'none, AVX2 only: bf16 rows skipped'}), {torch.get_num_threads()} threads; "
             f"torch {torch.__version__}; best of {ns.repeats} interleaved rounds.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        rows = configs(model, tok, ns, Path(tmp))
        for batch in (int(b) for b in ns.batches.split(",")):
            texts = prompts(tok, ns.prompts_at_1 if batch == 1 else ns.prompts)
            lines += table(measure(rows, texts, batch, ns.max_new_tokens, ns.repeats), batch, len(texts))
            print("\n".join(lines), flush=True)
    args = " ".join(sys.argv[1:])
    text = "\n".join(lines) + f"\nCommand: `HF_HUB_OFFLINE=1 python benchmarks/generation.py{' ' + args if args else ''}`\n"
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
