"""The Export / serve tab: a merged model, a GGUF file (+ Ollama Modelfile), a plain PEFT adapter, and
``tuneforge serve`` started as a process, each with its command shown.

Exports call the functions ``tuneforge export`` calls (:func:`~tuneforge.export.merge.save_merged`,
:func:`~tuneforge.export.gguf.save_gguf`, :func:`~tuneforge.export.adapter.save_adapter_dir`, on a
run loaded by :func:`~tuneforge.targets.load_run`). The server is a separate ``tuneforge serve``
process (ui/process.py): it outlives nothing but the UI, and stopping it is a SIGINT, as Ctrl-C.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import torch

from tuneforge.errors import TuneforgeError
from tuneforge.export.adapter import save_adapter_dir
from tuneforge.export.gguf import QUANTS, save_gguf
from tuneforge.export.merge import merge_adapter, save_merged
from tuneforge.export.modelfile import identify_chat_format, write_modelfile
from tuneforge.targets import load_run
from tuneforge.ui.data_tab import error_text
from tuneforge.ui.process import Jobs, shown_command

FORMS = ["merged", "gguf", "adapter"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SERVE_JOB = "serve"


def export_command(run: str, form: str, out: str, dtype: str, quant: str, modelfile: bool) -> list[str]:
    """The ``tuneforge export`` arguments for the chosen form."""
    if form == "merged":
        return ["export", run, "--merge", out, "--dtype", dtype]
    if form == "gguf":
        return ["export", run, "--gguf", out, "--quant", quant, *(["--modelfile"] if modelfile else [])]
    return ["export", run, "--adapter-dir", out]


def run_export(run: str, form: str, out: str, dtype: str = "fp32", quant: str = "f16", modelfile: bool = False) -> str:
    """Export ``run`` as ``form`` to ``out``; returns what was written and the equivalent command."""
    if not run.strip() or not out.strip():
        return "Enter a finished run directory and an output path."
    command = shown_command(export_command(run, form, out, dtype, quant, modelfile))
    try:
        written = _export(Path(run.strip()), form, Path(out.strip()), dtype, quant, modelfile)
    except TuneforgeError as exc:
        return f"{error_text(exc)}\n\n`{command}`"
    return "exported " + ", ".join(f"`{p}`" for p in written) + f"\n\n`{command}`"


def _export(run: Path, form: str, out: Path, dtype: str, quant: str, modelfile: bool) -> list[Path]:
    if form == "adapter":
        return [save_adapter_dir(run, out)]
    if form == "gguf" and quant not in QUANTS:
        raise TuneforgeError(f"quant {quant!r} is not one of {', '.join(QUANTS)}")
    loaded = load_run(run)
    if form == "merged":
        return [save_merged(loaded.model, loaded.tokenizer, out, dtype=DTYPES[dtype])]
    if modelfile:
        identify_chat_format(loaded.tokenizer)  # refuse before the slow write, as the CLI does
    path = save_gguf(merge_adapter(loaded.model), loaded.tokenizer, out, quant=quant)
    return [path, write_modelfile(path, loaded.tokenizer)] if modelfile else [path]


def start_server(jobs: Jobs, target: str, port: float) -> str:
    """``tuneforge serve TARGET --port P`` on loopback, as a process; returns the URL and the command."""
    if not target.strip():
        return "Enter a run, bundle or model to serve."
    args = ["serve", target.strip(), "--host", "127.0.0.1", "--port", str(int(port))]
    job = jobs.start(SERVE_JOB, args)
    return f"started `{job.command}` (pid {job.process.pid}): OpenAI-compatible API at http://127.0.0.1:{int(port)}/v1"


def server_status(jobs: Jobs) -> tuple[str, str]:
    job = jobs.jobs.get(SERVE_JOB)
    if job is None:
        return "no server started", ""
    state = "running" if job.running else f"ended (exit {job.process.returncode})"
    return f"server {state}: `{job.command}`", job.log_text(5_000)


def build(jobs: Jobs, run: gr.Textbox) -> dict[str, Any]:
    """The tab; ``run`` is the Train tab's run directory."""
    with gr.Row():
        target = gr.Textbox(label="Finished run", info="A run directory with adapter/ or model/.", elem_id="export-run", scale=3)
        use_run = gr.Button("Use the Train tab's run", scale=1, elem_id="export-use-run")
    with gr.Row():
        form = gr.Radio(FORMS, value="merged", label="Export as", info="merged: safetensors for plain transformers; gguf: llama.cpp / Ollama (Llama architecture); adapter: plain PEFT directory.", elem_id="export-form")
        out = gr.Textbox(label="Output path", info="A directory (merged, adapter) or a .gguf file.", elem_id="export-out")
    with gr.Row():
        dtype = gr.Dropdown(list(DTYPES), value="fp32", label="dtype (merged)")
        quant = gr.Dropdown(list(QUANTS), value="f16", label="quant (gguf)", info="K-quants need the llama extra.")
        modelfile = gr.Checkbox(False, label="Ollama Modelfile (gguf)")
    export_btn = gr.Button("Export", variant="primary", elem_id="export-run-btn")
    export_status = gr.Markdown(elem_id="export-status")
    gr.Markdown("### Serve")
    with gr.Row():
        port = gr.Number(8000, label="Port", precision=0, info="Loopback only (127.0.0.1); tuneforge serve --host exposes it to the network.", elem_id="serve-port")
        serve_btn = gr.Button("Start server", elem_id="serve-start")
        stop_btn = gr.Button("Stop server", variant="stop", elem_id="serve-stop")
    serve_status = gr.Markdown(elem_id="serve-status")
    serve_log = gr.Code(label="server output", language=None, interactive=False)
    use_run.click(lambda r: r, run, target)
    export_btn.click(run_export, [target, form, out, dtype, quant, modelfile], export_status)

    def on_serve(t, p):
        try:
            return start_server(jobs, t, p)
        except RuntimeError as exc:
            return f"**error:** {exc}"

    def on_stop():
        jobs.stop(SERVE_JOB, timeout=15.0)
        return server_status(jobs)[0]

    serve_btn.click(on_serve, [target, port], serve_status)
    stop_btn.click(on_stop, None, serve_status)
    shown: dict[str, Any] = {}

    def tick():
        now = server_status(jobs)
        if shown.get("status") == now:
            return gr.skip(), gr.skip()
        shown["status"] = now
        return now

    gr.Timer(3.0).tick(tick, None, [serve_status, serve_log], show_progress="hidden", concurrency_limit=1)
    return {"target": target}
