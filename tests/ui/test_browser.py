"""End to end in headless Chromium: `tuneforge ui` on a free loopback port, driven like a user would.

Uploads a bad and a good data file (the bad one's rows are listed with file:line and field), fills
the generated recipe form (a field error shows on its field), trains a few steps on a tiny local
model as a separate process and watches the loss plot update, evaluates, chats with base and tuned
side by side, exports a merged model, and serves the run from the Serve tab (answered over HTTP,
then stopped). A screenshot of each tab is saved to ``$TUNEFORGE_ARTIFACTS/ui`` (else the test's
tmp dir). Every request the page makes is recorded:
none may leave loopback (no fonts, CDN or analytics from the internet).

Uses Debian's chromium through ``executable_path`` (``playwright install`` cannot download here);
skipped when chromium or playwright is missing, unless TUNEFORGE_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("TUNEFORGE_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ROWS = [{"instruction": "Repeat the word", "input": w, "output": w} for w in ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]]


def _browser_or_skip():
    missing = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright package (dev extra)")
        sync_playwright = None
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        missing.append(f"chromium at {CHROMIUM} (apt-get install -y chromium)")
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if os.environ.get("TUNEFORGE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (TUNEFORGE_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tuneforge ui exited {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"tuneforge ui did not answer on {url} within {timeout:.0f}s")


@contextlib.contextmanager
def _running_ui(tmp_path: Path, cwd: Path, threads: str = "1"):
    """`tuneforge ui` on a free loopback port, started in ``cwd``; yields its URL and the work folder."""
    work = tmp_path / "work"
    work.mkdir()
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": threads}
    log = (tmp_path / "ui.log").open("w")
    cmd = [sys.executable, "-m", "tuneforge.cli.main", "ui", "--port", str(port), "--runs", str(work / "runs"), "--workdir", str(work / "wd")]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/", proc, timeout=300)
        yield f"http://127.0.0.1:{port}/", work
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def ui_server(tmp_path, tiny_model_dir):
    _browser_or_skip()  # before the (slow) server start
    with _running_ui(tmp_path, tmp_path) as (url, work):
        yield url, work, tiny_model_dir, tmp_path / "ui.log"


def _artifacts(tmp_path: Path) -> Path:
    root = Path(os.environ["TUNEFORGE_ARTIFACTS"]) / "ui" if os.environ.get("TUNEFORGE_ARTIFACTS") else tmp_path / "screenshots"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _fill(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
    box.fill(value)
    box.press("Tab")  # leave the box, as a user moving on does (a number box reports on blur)


def _wait_for_training(page, work: Path, timeout: float) -> list[str]:
    """Poll the Train tab until the run finishes; returns the distinct loss-plot images seen on the way."""
    seen: list[str] = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        src = _plot_src(page)
        if src and (not seen or seen[-1] != src):
            seen.append(src)
        text = page.locator("#train-progress").inner_text()
        if "finished" in text:
            break
        if "failed" in text:
            logs = "\n".join(p.read_text()[-3000:] for p in (work / "wd" / "logs").glob("*.log"))
            raise AssertionError(f"training failed: {text}\n{logs}")
        time.sleep(0.5)
    else:
        raise AssertionError("training did not finish: " + page.locator("#train-progress").inner_text())
    time.sleep(3)  # one more timer tick draws the final curves
    final = _plot_src(page)
    if final and (not seen or seen[-1] != final):
        seen.append(final)
    return seen


def _plot_src(page) -> str | None:
    img = page.locator("#train-plot img")
    return img.first.get_attribute("src") if img.count() else None


def test_whole_workflow_in_a_browser(ui_server, tmp_path):
    sync_playwright = _browser_or_skip()
    from playwright.sync_api import expect

    url, work, model_dir, ui_log = ui_server
    shots = _artifacts(tmp_path)
    bad = _write(tmp_path / "bad.jsonl", [ROWS[0], {"instruction": "x", "output": ""}, '{"instruction": "y"'])
    good = _write(tmp_path / "tickets.jsonl", ROWS)
    test_file = _write(tmp_path / "test.jsonl", ROWS[:2])
    outside: list[str] = []
    started = time.time()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", lambda r: outside.append(r.url) if urlparse(r.url).hostname not in ("127.0.0.1", "localhost", None) and not r.url.startswith("data:") else None)
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)  # a loaded 2-core CI box: one form check can take seconds
        page.goto(url)

        # Data: a bad file lists its rows with file:line and field; a good one validates
        page.locator("#data-upload input[type=file]").set_input_files(str(bad))
        expect(page.locator("#data-summary")).to_contain_text("1 good, 2 bad of 3 rows")
        expect(page.locator("#data-errors")).to_contain_text("bad.jsonl:2")
        expect(page.locator("#data-errors")).to_contain_text("output")
        page.screenshot(path=str(shots / "1-data-bad-file.png"), full_page=True)
        _fill(page, "data-path", str(good))  # pick a file on this machine instead of uploading it
        page.locator("#data-validate").click()
        expect(page.locator("#data-summary")).to_contain_text("8 good, 0 bad of 8 rows")
        page.locator("#data-inspect").click()
        expect(page.locator("#data-report")).to_contain_text("exact_duplicates")
        page.locator("#data-use").click()

        # Recipe: the generated form; a wrong value shows its error on the field
        page.get_by_role("tab", name="Recipe").click()
        expect(page.locator("#f-data-train textarea, #f-data-train input").first).to_have_value(str(good))
        _fill(page, "f-model-name", str(model_dir))
        _fill(page, "f-training-batch_size", "0")
        expect(page.locator("#f-training-batch_size")).to_contain_text("⚠")
        expect(page.locator("#recipe-status")).to_contain_text("training.batch_size")
        page.screenshot(path=str(shots / "2-recipe-field-error.png"), full_page=True)
        for elem_id, value in (("f-training-batch_size", "2"), ("f-training-max_steps", "6"), ("f-training-logging_steps", "1"),
                               ("f-training-save_steps", "3"), ("f-data-max_length", "64"), ("f-output-dir", str(work / "runs" / "ui-run"))):
            _fill(page, elem_id, value)
        expect(page.locator("#recipe-status")).to_contain_text("valid recipe")
        expect(page.locator("#recipe-command")).to_contain_text("tuneforge train")
        expect(page.locator("#recipe-yaml")).to_contain_text("max_steps: 6")
        page.locator("#recipe-save").click()
        expect(page.locator("#recipe-message")).to_contain_text("saved")
        page.screenshot(path=str(shots / "3-recipe-valid.png"), full_page=True)

        # Train: a separate process; the plot updates as metrics.jsonl grows
        page.get_by_role("tab", name="Train").click()
        page.locator("#train-start").click()
        expect(page.locator("#train-message")).to_contain_text("started tuneforge train")
        seen = _wait_for_training(page, work, timeout=400)
        expect(page.locator("#train-progress")).to_contain_text("step 6/6")
        expect(page.locator("#train-runs")).to_contain_text("finished")
        assert len(seen) >= 2, "the loss plot never changed while training"
        page.screenshot(path=str(shots / "4-train-finished.png"), full_page=True)

        # Evaluate: before/after report
        page.get_by_role("tab", name="Evaluate").click()
        page.locator("#eval-use-run").click()
        _fill(page, "eval-data", str(test_file))
        page.locator("#eval-run").click()
        expect(page.locator("#eval-status")).to_contain_text("tuneforge eval", timeout=180_000)
        expect(page.locator("#eval-report")).to_contain_text("tuned", timeout=180_000)
        plot = page.locator("#eval-report img").first
        expect(plot).to_be_visible()
        assert plot.evaluate("img => img.complete && img.naturalWidth > 0"), "the report's plot did not load in the page"
        page.screenshot(path=str(shots / "5-evaluate.png"), full_page=True)

        # Chat: base and tuned answer the same prompt
        page.get_by_role("tab", name="Chat").click()
        page.locator("#chat-use-run").click()
        _fill(page, "chat-max-new-tokens", "16")
        _fill(page, "chat-prompt", "Repeat the word: alpha")
        page.locator("#chat-send").click()
        expect(page.locator("#chat-status")).to_contain_text("done", timeout=180_000)
        expect(page.locator("#chat-base")).to_contain_text("Repeat the word: alpha")
        expect(page.locator("#chat-tuned")).to_contain_text("Repeat the word: alpha")
        page.screenshot(path=str(shots / "6-chat.png"), full_page=True)

        # Export: a merged model, with the command shown
        page.get_by_role("tab", name="Export / serve").click()
        page.locator("#export-use-run").click()
        _fill(page, "export-out", str(work / "exports" / "merged"))
        page.locator("#export-run-btn").click()
        expect(page.locator("#export-status")).to_contain_text("exported", timeout=180_000)
        expect(page.locator("#export-status")).to_contain_text("tuneforge export")
        page.screenshot(path=str(shots / "7-export.png"), full_page=True)

        # Serve: the exported run behind `tuneforge serve` on loopback, answered over HTTP, then stopped
        port = _free_port()
        _fill(page, "serve-port", str(port))
        page.locator("#serve-start").click()
        expect(page.locator("#serve-status")).to_contain_text(f"--port {port}")  # "started ..." then the timer's "server running ..."
        deadline = time.time() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as resp:
                    served = json.loads(resp.read())
                break
            except OSError:
                assert time.time() < deadline, "the server started from the Serve tab did not answer within 240 s"
                time.sleep(1.0)
        assert served["data"], served
        expect(page.locator("#serve-status")).to_contain_text("server running", timeout=30_000)
        page.screenshot(path=str(shots / "8-serve.png"), full_page=True)
        page.locator("#serve-stop").click()
        expect(page.locator("#serve-status")).to_contain_text("server ended", timeout=60_000)
        browser.close()
    print(f"\nbrowser workflow: {time.time() - started:.0f}s; screenshots in {shots}")
    assert (work / "exports" / "merged" / "model.safetensors").is_file()
    assert (work / "runs" / "ui-run" / "adapter").is_dir()
    assert not outside, f"the page fetched from outside loopback: {sorted(set(outside))[:10]}"


def test_the_quickstart_from_its_example_in_a_browser(tmp_path):
    """A user who has never written a recipe: pick the quickstart example, shorten it, train, chat with the result.

    The real built-in model on the quickstart's own data (8 steps and 10 held-out tickets instead of 48 and
    100, to keep CI's time: the full recipe trains the same way, only longer; TUNEFORGE_UI_QUICKSTART_FULL=1
    keeps the recipe as it is), started from the repository root as the examples say.
    """
    full = os.environ.get("TUNEFORGE_UI_QUICKSTART_FULL") == "1"
    steps = 48 if full else 8
    sync_playwright = _browser_or_skip()
    from playwright.sync_api import expect

    shots = _artifacts(tmp_path) / "quickstart"
    shots.mkdir(exist_ok=True)
    started = time.time()
    with _running_ui(tmp_path, ROOT, threads=str(os.cpu_count() or 1)) as (url, work), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)
        page.goto(url)
        page.get_by_role("tab", name="Recipe").click()
        picker = page.locator("#recipe-example input").first
        picker.click()
        page.get_by_role("option", name="examples/quickstart/recipe.yaml").click()
        expect(page.locator("#recipe-message")).to_contain_text("loaded examples/quickstart/recipe.yaml")
        expect(page.locator("#f-model-name textarea, #f-model-name input").first).to_have_value("smollm2-135m-instruct")
        expect(page.locator("#recipe-yaml")).to_contain_text("json_fields")
        if not full:  # eval's section is folded: open it, as a user looking for eval.limit would
            page.locator("button.label-wrap", has_text=re.compile(r"^\s*eval\s*[▼▶◀]?\s*$")).first.click()
        edits = [] if full else [("f-training-max_steps", "8"), ("f-eval-limit", "10")]
        for elem_id, value in (*edits, ("f-output-dir", str(work / "runs" / "quickstart"))):
            _fill(page, elem_id, value)
        expect(page.locator("#recipe-status")).to_contain_text("valid recipe")
        page.screenshot(path=str(shots / "1-recipe-from-example.png"), full_page=True)

        page.get_by_role("tab", name="Train").click()
        page.locator("#train-start").click()
        expect(page.locator("#train-message")).to_contain_text("started tuneforge train")
        _wait_for_training(page, work, timeout=2400 if full else 800)
        expect(page.locator("#train-progress")).to_contain_text(f"step {steps}/{steps}")
        page.screenshot(path=str(shots / "2-train-finished.png"), full_page=True)

        page.get_by_role("tab", name="Chat").click()
        page.locator("#chat-use-run").click()
        ticket = (
            "Extract the support ticket into JSON with keys category, priority, product, order_id.\n\n"
            "Hello, my order #B-12345 arrived broken: the Luma desk lamp does not turn on. Please send a new one. Thanks, Dana"
        )
        _fill(page, "chat-prompt", ticket)
        page.locator("#chat-send").click()
        expect(page.locator("#chat-status")).to_contain_text("done", timeout=300_000)
        expect(page.locator("#chat-tuned")).to_contain_text('"category"')  # the tuned side answers in the task's JSON
        page.screenshot(path=str(shots / "3-chat.png"), full_page=True)
        browser.close()
    summary = json.loads((work / "runs" / "quickstart" / "summary.json").read_text())
    assert summary["steps"] == steps and summary["eval"]
    scores = {k: v.get("json_fields") for k, v in summary["eval"].items() if v}
    print(f"\nquickstart from the browser: {time.time() - started:.0f}s, {steps} steps, json_fields {scores}; screenshots in {shots}")
