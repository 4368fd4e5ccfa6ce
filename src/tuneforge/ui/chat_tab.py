"""The Chat tab: the base model and the tuned one answer the same prompt side by side, streaming.

Models load through :func:`~tuneforge.targets.load_target` and answer through
:func:`~tuneforge.serve.chat.stream_reply`, as ``tuneforge chat`` does, so a reply here is the reply
the terminal chat and the server give. For an adapter run (or bundle) the base is the same weights
with the adapter switched off (peft's ``disable_adapter``, as ``tuneforge eval --base`` does); a full
fine-tune loads its base model separately. Loaded models are kept until another target is chosen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import gradio as gr

from tuneforge.adapters.bundle import is_bundle_dir, read_bundle
from tuneforge.errors import TuneforgeError
from tuneforge.models.load import load_model
from tuneforge.runs import LoadedRun
from tuneforge.serve.chat import GenerationSettings, stream_reply
from tuneforge.targets import load_target
from tuneforge.ui.data_tab import error_text
from tuneforge.ui.process import shown_command


class ChatModels:
    """The loaded tuned model (and a separately loaded base, for full fine-tunes), one target at a time."""

    def __init__(self) -> None:
        self.key: tuple[str, str | None] | None = None
        self.loaded: Any = None
        self.base: Any = None
        self.lock = threading.Lock()  # one generation at a time: the adapter switch is model-wide

    def get(self, target: str, adapter: str | None) -> Any:
        key = (target, adapter or None)
        if key != self.key:
            self.loaded, self.base, self.key = None, None, None
            self.loaded = load_target(target, adapter=adapter or None)
            self.key = key
        return self.loaded

    def base_side(self) -> tuple[Any, Any, Any] | None:
        """(model, tokenizer, context) answering as the base model, or None when the target is not a run."""
        loaded = self.loaded
        if not isinstance(loaded, LoadedRun):
            return None
        if loaded.is_adapter:
            return loaded.model, loaded.tokenizer, loaded.model.disable_adapter
        if self.base is None:
            self.base = load_model(loaded.recipe.model.name)
        return self.base, loaded.tokenizer, nullcontext


def adapters_of(target: str) -> list[str]:
    """The adapters of a bundle (the chooser's choices); none for a run or a model."""
    return read_bundle(target).names if target and is_bundle_dir(target) else []


UPDATE_EVERY_S = 0.2  # a page update per decoded token floods a slow browser; five a second reads as live


def _stream(model: Any, tokenizer: Any, history: list[dict], settings: GenerationSettings, context) -> Iterator[str]:
    """The reply so far, at most every UPDATE_EVERY_S seconds, and once complete."""
    with context():
        text, last = "", 0.0
        for piece in stream_reply(model, tokenizer, history, settings):
            text += piece
            if time.monotonic() - last >= UPDATE_EVERY_S:
                last = time.monotonic()
                yield text
        yield text


def chat_pair(
    models: ChatModels, target: str, adapter: str | None, prompt: str, base_history: list, tuned_history: list, max_new_tokens: int = 128, temperature: float = 0.0
) -> Iterator[tuple[list, list, str]]:
    """Stream the base's answer, then the tuned model's, each into its own conversation."""
    if not target or not prompt.strip():
        yield base_history, tuned_history, "Enter a run (or model) and a prompt."
        return
    settings = GenerationSettings(max_new_tokens=int(max_new_tokens), temperature=float(temperature))
    command = shown_command(["chat", target, "--prompt", prompt, *(["--adapter", adapter] if adapter else [])])
    with models.lock:
        try:
            loaded = models.get(target, adapter)
            base = models.base_side()
        except TuneforgeError as exc:
            yield base_history, tuned_history, error_text(exc)
            return
        model, tokenizer = (loaded.model, loaded.tokenizer) if isinstance(loaded, LoadedRun) else loaded
        user = {"role": "user", "content": prompt}
        base_history = [*base_history, user, {"role": "assistant", "content": ""}]
        tuned_history = [*tuned_history, user, {"role": "assistant", "content": ""}]
        if base is None:
            base_history[-1]["content"] = "(the target is a model, not a run: there is no base to compare)"
        else:
            for text in _stream(base[0], base[1], base_history[:-1], settings, base[2]):
                base_history[-1] = {"role": "assistant", "content": text}
                yield base_history, tuned_history, f"base answering ... `{command}`"
        for text in _stream(model, tokenizer, tuned_history[:-1], settings, nullcontext):
            tuned_history[-1] = {"role": "assistant", "content": text}
            yield base_history, tuned_history, f"tuned answering ... `{command}`"
        for side in (base_history, tuned_history):
            if not side[-1]["content"].strip():  # the model ended its turn at once: say so, not a blank bubble
                side[-1] = {"role": "assistant", "content": "(empty reply)"}
    yield base_history, tuned_history, f"done: `{command}`"


def build(models: ChatModels, run: gr.Textbox) -> dict[str, Any]:
    """The tab; ``run`` (the Train tab's run) fills the target when the tab's Use-run button is pressed."""
    with gr.Row():
        target = gr.Textbox(label="Run, adapter bundle or model", info="A run directory (base vs tuned), a bundle, or a model name/dir.", elem_id="chat-target", scale=3)
        use_run = gr.Button("Use the Train tab's run", scale=1, elem_id="chat-use-run")
        adapter = gr.Dropdown([], value=None, label="Adapter (bundles)", allow_custom_value=True, scale=1, elem_id="chat-adapter")
    with gr.Row():
        max_new_tokens = gr.Number(128, label="max_new_tokens", precision=0, elem_id="chat-max-new-tokens")
        temperature = gr.Number(0.0, label="temperature", info="0 = greedy")
    with gr.Row():
        base = gr.Chatbot(label="base model", elem_id="chat-base", height=360)
        tuned = gr.Chatbot(label="tuned model", elem_id="chat-tuned", height=360)
    prompt = gr.Textbox(label="Prompt", placeholder="Type a message; both models answer it", elem_id="chat-prompt")
    with gr.Row():
        send = gr.Button("Send", variant="primary", elem_id="chat-send")
        clear = gr.Button("Clear", elem_id="chat-clear")
    status = gr.Markdown(elem_id="chat-status")
    use_run.click(lambda r: r, run, target)
    target.change(lambda t: gr.update(choices=adapters_of(t) if t and Path(t).exists() else [], value=None), target, adapter)
    inputs = [target, adapter, prompt, base, tuned, max_new_tokens, temperature]
    send.click(lambda *a: (yield from chat_pair(models, *a)), inputs, [base, tuned, status])
    prompt.submit(lambda *a: (yield from chat_pair(models, *a)), inputs, [base, tuned, status])
    clear.click(lambda: ([], [], ""), None, [base, tuned, status])
    return {"target": target}
