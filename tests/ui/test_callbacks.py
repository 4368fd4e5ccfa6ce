"""The callbacks behind the widgets, without a browser: data, recipe, train progress, processes."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest

from tuneforge.ui import data_tab, recipe_tab, train_tab
from tuneforge.ui.form import from_recipe_dict
from tuneforge.ui.metrics import curves_figure, progress_text, read_curves, total_steps
from tuneforge.ui.process import Jobs, list_runs, run_status

ROWS = [{"instruction": f"Say {w}", "output": w} for w in ["alpha", "beta", "gamma", "alpha"]]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_validation_lists_every_bad_row_with_file_line_and_field(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], {"instruction": "x", "output": ""}, '{"instruction": "y"', ROWS[1]])
    summary, rows = data_tab.validate_data(str(bad), "alpaca")
    assert "2 good, 2 bad of 4 rows" in summary and "tuneforge data validate" in summary
    sources = [r[0] for r in rows]
    assert f"{bad}:2" in sources and f"{bad}:3" in sources
    assert rows[0][1] == "output"  # the field
    good = write_jsonl(tmp_path / "good.jsonl", ROWS)
    summary, rows = data_tab.validate_data(str(good))
    assert summary.startswith("✅ 4 good, 0 bad") and rows == []
    summary, rows = data_tab.validate_data(str(tmp_path / "missing.jsonl"))
    assert summary.startswith("**error:**") and rows == []


def test_upload_is_copied_and_inspected(tmp_path):
    src = write_jsonl(tmp_path / "up.jsonl", ROWS)
    stored = data_tab.store_upload(str(src), tmp_path / "wd")
    assert Path(stored) == tmp_path / "wd" / "data" / "up.jsonl" and Path(stored).read_text() == src.read_text()
    report = data_tab.inspect_data(stored, "auto", "none")
    assert "| rows | 4 |" in report and "| exact_duplicates | 1 |" in report and "length histogram" in report


def test_cleaning_reports_before_and_after(tmp_path):
    src = write_jsonl(tmp_path / "dup.jsonl", ROWS)
    summary, lengths, report = data_tab.clean_data(str(src), "auto", ["normalize", "dedup"], "", "", False)
    assert "4 rows in, 3 out" in summary and "--no-safety" in summary
    assert Path(lengths).is_file() and "before" in report and "after" in report
    assert len((tmp_path / "dup.clean.jsonl").read_text().splitlines()) == 3


def test_recipe_check_shows_yaml_command_and_field_errors(tmp_path):
    values, extra = from_recipe_dict(recipe_tab.FIELDS, {"data": {"train": "t.jsonl"}, "training": {"batch_size": 0}})
    text, command, status, infos = recipe_tab.check(values, extra, str(tmp_path / "r.yaml"))
    assert "batch_size: 0" in text and f"tuneforge train {tmp_path / 'r.yaml'}" in command
    keys = [f.key for f in recipe_tab.FIELDS]
    assert infos[keys.index("training.batch_size")].startswith("⚠") and status.startswith("❌")
    assert infos[keys.index("training.epochs")] == recipe_tab.FIELDS[keys.index("training.epochs")].help
    with pytest.raises(Exception, match="batch_size"):
        recipe_tab.save_file(values, extra, str(tmp_path / "r.yaml"))
    values[keys.index("training.batch_size")] = 2
    saved = recipe_tab.save_file(values, extra, str(tmp_path / "r.yaml"))
    assert "saved" in saved
    loaded, rest = recipe_tab.load_file(str(tmp_path / "r.yaml"))
    assert loaded == values and rest == extra
    applied, _ = recipe_tab.load_yaml_text("data: {train: other.jsonl}\ntraining: {epochs: 1}\n")
    assert applied[keys.index("data.train")] == "other.jsonl" and applied[keys.index("training.epochs")] == 1


def test_curves_progress_and_plot_from_metrics_jsonl(tmp_path):
    rows = [{"step": 1, "epoch": 0.25, "loss": 2.0, "learning_rate": 1e-3, "tokens_per_s": 100.0},
            {"step": 2, "epoch": 0.5, "loss": 1.5, "learning_rate": 5e-4, "tokens_per_s": 120.0},
            {"step": 2, "epoch": 0.5, "eval_loss": 1.7}]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 3, "lo')
    curves = read_curves(tmp_path)
    assert curves.loss == [(1, 2.0), (2, 1.5)] and curves.eval_loss == [(2, 1.7)] and curves.last_step == 2
    assert total_steps("", curves, None, 1.0) == 4  # 2 steps per half epoch
    assert total_steps("  step 2/10 loss 1.5", curves, None, 1.0) == 10 and total_steps("", curves, 6, None) == 6
    text = progress_text(curves, 4, "running")
    assert "step 2/4" in text and "50%" in text and "loss 1.5000" in text and "120 tokens/s" in text
    fig = curves_figure(curves)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "learning rate", "tokens / s"]
    assert len(fig.axes[0].lines) == 2
    assert read_curves(tmp_path / "nothing").loss == []


def test_run_status_from_the_directory(tmp_path):
    run = tmp_path / "runs" / "a"
    (run / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (run / "recipe.yaml").write_text("data: {train: x}\n")
    assert run_status(run) == "incomplete"
    (run / "checkpoints" / "checkpoint-4" / "tuneforge-commit.json").write_text("{}")
    assert run_status(run) == "stopped (resumable from step 4)"
    (run / "adapter").mkdir()
    assert run_status(run) == "finished"
    (run / "summary.json").write_text(json.dumps({"error": "nan"}))
    assert run_status(run) == "failed"
    assert list_runs(tmp_path / "runs") [0]["run"] == str(run)


# A stand-in for `tuneforge train`: logs a line, then waits for SIGINT as a run would for Ctrl-C.
STAND_IN = [sys.executable, "-c", "import sys, time\nprint('started', sys.argv[1:], flush=True)\ntry:\n time.sleep(60)\nexcept KeyboardInterrupt:\n print('interrupted', flush=True); sys.exit(130)"]


def test_processes_start_log_and_stop_with_sigint(tmp_path):
    jobs = Jobs(tmp_path / "wd", program=STAND_IN)
    job = jobs.start(str(tmp_path / "runs" / "r"), ["train", "x.yaml"])
    assert job.command == "tuneforge train x.yaml" and job.running
    with pytest.raises(RuntimeError, match="already running"):
        jobs.start(str(tmp_path / "runs" / "r"), ["train", "x.yaml"])
    deadline = time.time() + 30
    while "started" not in job.log_text() and time.time() < deadline:
        time.sleep(0.1)
    assert "$ tuneforge train x.yaml" in job.log_text()
    assert [r["status"] for r in list_runs(tmp_path / "runs", jobs)] == ["running"]
    jobs.stop(str(tmp_path / "runs" / "r"))
    assert not job.running and job.process.returncode == 130 and "interrupted" in job.log_text()
    assert run_status(tmp_path / "runs" / "r", job) == "stopped (no checkpoint yet: start again)"
    assert signal.SIGINT  # the stop signal is Ctrl-C's, so a run keeps its last committed checkpoint


def test_train_tab_starts_the_forms_recipe_as_a_process(tmp_path):
    jobs = Jobs(tmp_path / "wd", program=STAND_IN)
    data = write_jsonl(tmp_path / "t.jsonl", ROWS)
    values, extra = from_recipe_dict(recipe_tab.FIELDS, {"data": {"train": str(data)}, "output": {"dir": str(tmp_path / "runs" / "r1")}})
    text, run_dir = train_tab.start_run(jobs, values, extra)
    assert run_dir == str(tmp_path / "runs" / "r1") and "tuneforge train" in text
    recipe_file = tmp_path / "wd" / "recipes" / "r1.yaml"
    assert recipe_file.is_file() and str(data) in recipe_file.read_text()
    progress, fig, log = train_tab.poll(jobs, run_dir)
    assert progress.startswith("**running**") and fig is not None
    assert "stopped" in train_tab.stop_run(jobs, run_dir)
    with pytest.raises(Exception, match="no run to resume"):
        train_tab.resume_run(jobs, run_dir)


def test_report_images_are_inlined_as_data_uris(tmp_path):
    from tuneforge.ui.eval_tab import inline_images

    (tmp_path / "loss.png").write_bytes(b"\x89PNG fake")
    md = "a ![Loss](loss.png) b ![Gone](missing.png) c [link](loss.png)\n![Scores in [0, 1]](loss.png)"
    got = inline_images(md, tmp_path)
    assert "![Loss](data:image/png;base64,iVBORyBmYWtl)" in got and "![Scores in [0, 1]](data:image/png;base64," in got
    assert "![Gone](missing.png)" in got and "[link](loss.png)" in got


def test_the_bundled_example_recipes_are_offered_quickstart_first_and_load_into_the_form():
    examples = Path(__file__).resolve().parents[2] / "examples"
    offered = recipe_tab.example_recipes(examples)
    assert Path(offered[0]) == examples / "quickstart" / "recipe.yaml"
    names = {Path(p).relative_to(examples).as_posix() for p in offered}
    assert {"grpo/recipe.yaml", "rft/recipe.yaml", "rlaif/recipe.yaml", "preference/dpo.yaml"} <= names
    assert "stages/pipeline.yaml" not in names  # a staged pipeline, not a recipe
    values, extra = recipe_tab.load_file(offered[0])
    by_key = dict(zip((f.key for f in recipe_tab.FIELDS), values, strict=True))
    assert by_key["model.name"] == "smollm2-135m-instruct" and by_key["data.train"] == "examples/quickstart/train.jsonl"
    assert recipe_tab.example_recipes(examples / "missing") == []
