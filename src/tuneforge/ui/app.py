"""``tuneforge ui``: the local web app over the same library functions as the CLI (Gradio).

Gradio because it is what LlamaBoard (LLaMA-Factory's web UI) uses and what the ecosystem knows:
forms, file upload, plots, streaming chat and timers are its components, so this package stays a
thin layer of callbacks (docs/UI.md). Private by default: it binds to loopback, sends no
analytics, makes no share link and uses system fonts, so the page fetches nothing from the internet.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: it reads this at import

import atexit  # noqa: E402 - after the environment gradio reads at import
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from tuneforge.ui import chat_tab, data_tab, eval_tab, export_tab, recipe_tab, train_tab  # noqa: E402
from tuneforge.ui.process import Jobs  # noqa: E402

LOOPBACK = "127.0.0.1"
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "Consolas", "monospace"])
CSS = ".prose table { font-size: 0.9em; }"
QUICKSTART_TRAIN = "examples/quickstart/train.jsonl"


def initial_recipe(workdir: Path) -> dict:
    """What the form starts with: the schema's defaults, a run folder, and the quickstart data when it is here."""
    data = {"data": {"train": QUICKSTART_TRAIN if Path(QUICKSTART_TRAIN).is_file() else ""}}
    data["output"] = {"dir": "runs/ui-run"}
    return data


def build_app(workdir: str | Path = ".tuneforge-ui", runs_root: str | Path = "runs", initial: dict | None = None) -> tuple[gr.Blocks, Jobs]:
    """The whole app (six tabs) and the process manager behind its Train and Serve buttons."""
    workdir, runs_root = Path(workdir), Path(runs_root)
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = Jobs(workdir)
    models = chat_tab.ChatModels()
    with gr.Blocks(title="tuneforge", analytics_enabled=False) as app:
        gr.Markdown("# tuneforge\nUpload data, set up a recipe, train, evaluate, chat and export. Every action shows its `tuneforge` command.")
        with gr.Tabs():
            with gr.Tab("Data", id="data"):
                data = data_tab.build(workdir)
            with gr.Tab("Recipe", id="recipe"):
                form = recipe_tab.build(workdir, initial if initial is not None else initial_recipe(workdir))
            with gr.Tab("Train", id="train"):
                train = train_tab.build(jobs, runs_root, form)
            with gr.Tab("Evaluate", id="evaluate"):
                eval_tab.build(train["run"])
            with gr.Tab("Chat", id="chat"):
                chat_tab.build(models, train["run"])
            with gr.Tab("Export / serve", id="export"):
                export_tab.build(jobs, train["run"])
        _wire_data_to_recipe(data, form)
    return app, jobs


def _wire_data_to_recipe(data: dict, form: dict) -> None:
    """The Data tab's "use as training data" fills the form's data.train (and format), then re-checks it."""
    keys = [f.key for f in recipe_tab.FIELDS]
    train_widget = form["widgets"][keys.index("data.train")]
    format_widget = form["widgets"][keys.index("data.format")]
    refresh, inputs, outputs = form["refresh"]
    data["use"].click(lambda p, f: (p, f), [data["path"], data["format"]], [train_widget, format_widget]).then(refresh, inputs, outputs)


def launch(host: str = LOOPBACK, port: int = 7860, workdir: str | Path = ".tuneforge-ui", runs_root: str | Path = "runs", block: bool = True) -> tuple[gr.Blocks, Jobs]:
    """Build and serve the app; processes it started are stopped when the UI exits."""
    app, jobs = build_app(workdir, runs_root)
    atexit.register(jobs.stop_all)
    if block:  # SIGTERM (a service manager, a test) ends the UI as Ctrl-C does: atexit stops its processes
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    app.queue(default_concurrency_limit=4)
    for attempt in range(3):
        try:
            _launch(app, host, port, workdir, runs_root, block)
            break
        except ValueError as exc:
            # gradio checks its own URL once with a 3 s timeout and gives up; on a loaded machine the first
            # page render can take longer, which is not a reason to stop (it only means "slow", never "share")
            if "localhost is not accessible" not in str(exc) or attempt == 2:
                raise
            app.close()
    return app, jobs


def _launch(app: gr.Blocks, host: str, port: int, workdir: str | Path, runs_root: str | Path, block: bool) -> None:
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        theme=THEME,
        css=CSS,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        enable_monitoring=False,
        footer_links=[],
        prevent_thread_lock=not block,
        allowed_paths=[str(Path(workdir).resolve()), str(Path(runs_root).resolve())],
        quiet=False,
    )
