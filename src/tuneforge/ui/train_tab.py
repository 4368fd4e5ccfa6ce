"""The Train tab: start the form's recipe as a ``tuneforge train`` process, watch it, stop and resume it.

Plots and progress come from the run's ``metrics.jsonl`` (ui/metrics.py) on a timer; the process
and its log are managed by ui/process.py. A stopped run resumes with
``tuneforge train RUN/recipe.yaml --resume`` from its newest complete checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import yaml

from tuneforge.config.load import validate_recipe
from tuneforge.errors import TuneforgeError
from tuneforge.runs import METRICS_FILE, RECIPE_FILE
from tuneforge.ui.data_tab import error_text
from tuneforge.ui.form import recipe_yaml, to_recipe_dict
from tuneforge.ui.metrics import curves_figure, progress_text, read_curves, total_steps
from tuneforge.ui.process import Jobs, list_runs, run_status
from tuneforge.ui.recipe_tab import FIELDS

RUN_HEADERS = ["run", "status"]


def start_run(jobs: Jobs, values: list[Any], extra: dict) -> tuple[str, str]:
    """Validate the form's recipe, write it to ``WORKDIR/recipes/<run>.yaml`` and start ``tuneforge train`` on it."""
    data = to_recipe_dict(FIELDS, values, extra)
    recipe = validate_recipe(data, source="the form's recipe")
    run_dir = str(Path(recipe.output.dir))
    recipe_file = jobs.workdir / "recipes" / (Path(run_dir).name + ".yaml")
    recipe_file.parent.mkdir(parents=True, exist_ok=True)
    recipe_file.write_text(recipe_yaml(data), encoding="utf-8")
    job = jobs.start(run_dir, ["train", str(recipe_file)])
    return f"started `{job.command}` (pid {job.process.pid})", run_dir


def stop_run(jobs: Jobs, run_dir: str) -> str:
    job = jobs.stop(run_dir)
    if job is None:
        return f"{run_dir} was not started from this UI"
    return f"stopped {run_dir}: {run_status(Path(run_dir), job)}"


def resume_run(jobs: Jobs, run_dir: str) -> str:
    """``tuneforge train RUN/recipe.yaml --resume``: continues from the newest complete checkpoint."""
    recipe_file = Path(run_dir) / RECIPE_FILE
    if not recipe_file.is_file():
        raise TuneforgeError(f"{run_dir} holds no run to resume (no {RECIPE_FILE})", hint="start it instead")
    job = jobs.start(run_dir, ["train", str(recipe_file), "--resume"])
    return f"started `{job.command}` (pid {job.process.pid})"


def _planned(run_dir: Path) -> tuple[int | None, float | None]:
    """training.max_steps and training.epochs of the run's saved recipe (for the progress bar)."""
    try:
        saved = yaml.safe_load((run_dir / RECIPE_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None, None
    training = saved.get("training") or {} if isinstance(saved, dict) else {}
    return training.get("max_steps"), training.get("epochs")


def poll(jobs: Jobs, run_dir: str) -> tuple[str, Any, str]:
    """Progress line, curves figure and log tail of ``run_dir`` (the timer's callback)."""
    if not run_dir:
        return "No run selected.", None, ""
    path = Path(run_dir)
    job = jobs.jobs.get(run_dir)
    log = job.log_text() if job else ""
    curves = read_curves(path)
    max_steps, epochs = _planned(path)
    status = run_status(path, job) if path.exists() or job else "not started"
    return progress_text(curves, total_steps(log, curves, max_steps, epochs), status), curves_figure(curves), log


def runs_table(jobs: Jobs, root: str) -> list[list[str]]:
    return [[r["run"], r["status"]] for r in list_runs(root, jobs)]


def _stamp(path: Path) -> tuple[float, int] | None:
    """(mtime, size) of a file, or None: enough to tell that a metrics file or log has grown."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime, st.st_size


def picked_run(evt: gr.SelectData) -> Any:
    """The run directory of the clicked row of the runs table."""
    return evt.row_value[0] if evt.row_value else gr.skip()


def build(jobs: Jobs, runs_root: Path, form: dict) -> dict[str, Any]:
    """The tab; ``form`` is the Recipe tab's widgets and YAML-only state."""
    widgets, extra = form["widgets"], form["extra"]
    with gr.Row():
        start_btn = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop_btn = gr.Button("Stop", variant="stop", elem_id="train-stop")
        resume_btn = gr.Button("Resume", elem_id="train-resume")
    run = gr.Textbox(label="Run directory", info="The run shown below; pick a past run from the table.", elem_id="train-run")
    message = gr.Markdown(elem_id="train-message")
    progress = gr.Markdown(elem_id="train-progress")
    plot = gr.Plot(label="loss / learning rate / tokens per second", show_label=False, elem_id="train-plot")
    with gr.Accordion("Log", open=False):
        log = gr.Code(label="tuneforge train output", language=None, interactive=False, elem_id="train-log")
    with gr.Row():
        root = gr.Textbox(str(runs_root), label="Runs folder", scale=3)
        refresh_btn = gr.Button("Refresh runs", scale=1, elem_id="train-refresh")
    runs = gr.Dataframe(headers=RUN_HEADERS, value=runs_table(jobs, str(runs_root)), label="Runs", interactive=False, elem_id="train-runs")
    timer = gr.Timer(2.0)

    def on_start(*args):
        try:
            text, run_dir = start_run(jobs, list(args[:-1]), args[-1])
        except (TuneforgeError, RuntimeError) as exc:
            return (error_text(exc) if isinstance(exc, TuneforgeError) else f"**error:** {exc}"), gr.skip()
        return text, run_dir

    def guarded(fn):
        def call(*args):
            try:
                return fn(jobs, *args)
            except TuneforgeError as exc:
                return error_text(exc)
            except RuntimeError as exc:
                return f"**error:** {exc}"
        return call

    start_btn.click(on_start, [*widgets, extra], [message, run])
    stop_btn.click(guarded(stop_run), run, message)
    resume_btn.click(guarded(resume_run), run, message)
    seen: dict[str, Any] = {}  # what the page shows already: a tick that would redraw the same sends nothing

    def tick(run_dir: str, root_dir: str):
        job = jobs.jobs.get(run_dir)
        key = (run_dir, _stamp(Path(run_dir) / METRICS_FILE) if run_dir else None, _stamp(job.log) if job else None, job.running if job else None)
        table = runs_table(jobs, root_dir)
        fresh = [gr.skip()] * 3 if seen.get("run") == key else list(poll(jobs, run_dir))
        table_out = gr.skip() if seen.get("table") == table else table
        seen.update(run=key, table=table)
        return [*fresh, table_out]

    timer.tick(tick, [run, root], [progress, plot, log, runs], show_progress="hidden", concurrency_limit=1)
    refresh_btn.click(lambda r: runs_table(jobs, r), root, runs)
    runs.select(picked_run, None, run)
    return {"run": run}
