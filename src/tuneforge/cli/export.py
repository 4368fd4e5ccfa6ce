"""``tuneforge export``: a run as a merged model, a GGUF file (+ Ollama Modelfile) or a plain PEFT adapter.

Thin: checks that exactly one form was asked for, loads the run, and calls one export function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuneforge.cli.errors import err, user_errors
from tuneforge.errors import TuneforgeError

_DTYPES = ("fp32", "bf16", "fp16")


@user_errors
def export(
    run: Annotated[Path, typer.Argument(help="A finished run directory, or an adapter bundle (tuneforge adapters bundle).")],
    merge: Annotated[Path | None, typer.Option("--merge", help="Write a merged model (safetensors + tokenizer) to this directory.")] = None,
    gguf: Annotated[Path | None, typer.Option("--gguf", help="Write the merged model as one GGUF file (llama.cpp, Ollama; Llama architecture).")] = None,
    adapter_dir: Annotated[Path | None, typer.Option("--adapter-dir", help="Copy the run's adapter as a plain PEFT directory (peft.PeftModel.from_pretrained loads it).")] = None,
    dtype: Annotated[str, typer.Option(help="--merge: weights dtype of the export: fp32, bf16 or fp16.")] = "fp32",
    quant: Annotated[str, typer.Option(help="--gguf: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1; K-quants (q4_k_m, q5_k_m, q6_k, ...) need the `llama` extra.")] = "f16",
    modelfile: Annotated[bool, typer.Option("--modelfile", help="--gguf: also write an Ollama Modelfile beside the GGUF.")] = False,
    system: Annotated[str | None, typer.Option(help="--modelfile: the default system prompt (default: the chat template's own, if any).")] = None,
    adapter: Annotated[str | None, typer.Option(help="Adapter bundle: the adapter to merge (default: the bundle's default).")] = None,
    weights: Annotated[str | None, typer.Option(help="Adapter bundle: merge a weighted LoRA mix, e.g. a=0.7,b=0.3.")] = None,
    combination: Annotated[str, typer.Option(help="How --weights mixes: cat (exact weighted sum), svd (exact, truncated rank) or linear (approximate).")] = "cat",
) -> None:
    """Export a run as a standalone model (--merge), a GGUF file (--gguf) or a plain PEFT adapter (--adapter-dir)."""
    chosen = [name for name, value in (("--merge", merge), ("--gguf", gguf), ("--adapter-dir", adapter_dir)) if value]
    if len(chosen) != 1:
        raise TuneforgeError(
            f"tuneforge export needs exactly one of --merge DIR, --gguf FILE or --adapter-dir DIR (got {', '.join(chosen) or 'none'})",
            "e.g. tuneforge export runs/my-run --gguf exports/my-run.gguf --quant q8_0",
        )
    if dtype not in _DTYPES:
        raise TuneforgeError(f"--dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
    if (modelfile or system is not None) and gguf is None:
        raise TuneforgeError("--modelfile / --system go with --gguf FILE", "add --gguf FILE, or drop them")
    if system is not None and not modelfile:
        raise TuneforgeError("--system sets the Modelfile's system prompt", "add --modelfile")
    if adapter_dir is not None:
        if adapter is not None or weights:
            raise TuneforgeError("--adapter/--weights choose among a bundle's adapters for --merge or --gguf", "drop them")
        # lazy: export.adapter imports the training stack; keeps `tuneforge --help` fast (cli/main.py docstring)
        from tuneforge.export.adapter import save_adapter_dir

        err.print(f"[bold green]exported[/] {save_adapter_dir(run, adapter_dir)}")
        return
    loaded = _load(run, adapter, weights, combination)
    if merge is not None:
        _export_merged(loaded, merge, dtype)
    else:
        _export_gguf(loaded, gguf, quant, modelfile, system)


def _load(run: Path, adapter: str | None, weights: str | None, combination: str):
    # lazy: targets imports torch/transformers/peft (about 10 s); keeps `tuneforge --help` fast
    from tuneforge.adapters.bundle import is_bundle_dir
    from tuneforge.adapters.combine import parse_weights
    from tuneforge.targets import load_run, load_target

    if is_bundle_dir(run) or adapter is not None or weights:
        mix = parse_weights(weights) if weights else None
        return load_target(str(run), adapter=adapter, weights=mix, combination=combination)
    return load_run(run)


def _export_merged(loaded, out: Path, dtype: str) -> None:
    # lazy: torch and export.merge import the training stack; keeps `tuneforge --help` fast
    import torch

    from tuneforge.export.merge import save_merged

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    path = save_merged(loaded.model, loaded.tokenizer, out, dtype=dtypes[dtype])
    err.print(f"[bold green]exported[/] {path}")


def _export_gguf(loaded, out: Path, quant: str, modelfile: bool, system: str | None) -> None:
    # lazy: export.gguf / export.merge import torch, transformers and gguf; keeps `tuneforge --help` fast
    from tuneforge.export.gguf import QUANTS, save_gguf
    from tuneforge.export.merge import merge_adapter
    from tuneforge.export.modelfile import identify_chat_format, write_modelfile

    if quant not in QUANTS:
        raise TuneforgeError(f"--quant {quant!r} is not one of {', '.join(QUANTS)}", "pick one, e.g. --quant q8_0")
    if modelfile:
        identify_chat_format(loaded.tokenizer)  # refuse before the (slow) write, not after it
    path = save_gguf(merge_adapter(loaded.model), loaded.tokenizer, out, quant=quant)
    err.print(f"[bold green]exported[/] {path} ({path.stat().st_size / 2**20:.1f} MiB, {quant})")
    if modelfile:
        written = write_modelfile(path, loaded.tokenizer, system=system)
        err.print(f"[bold green]wrote[/] {written}  (ollama create NAME -f {written})")


def register(app: typer.Typer) -> None:
    """Attach the command to the main app."""
    app.command(
        name="export",
        epilog=(
            "Examples:\n\n"
            "- `tuneforge export runs/quickstart --merge exports/quickstart-merged`\n\n"
            "- `tuneforge export runs/quickstart --gguf exports/quickstart.gguf --quant q8_0 --modelfile`\n\n"
            "- `tuneforge export runs/quickstart --adapter-dir exports/quickstart-lora`"
        ),
    )(export)
