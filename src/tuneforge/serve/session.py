"""The terminal chat behind ``tuneforge chat``: one-shot or interactive, replies streamed as they decode."""

from __future__ import annotations

import sys

from rich.console import Console

from tuneforge.runs import LoadedRun
from tuneforge.targets import load_target
from tuneforge.serve.chat import GenerationSettings, stream_reply

HELP = "commands: /reset clears the conversation, /exit quits"


def chat_loop(
    target: str,
    *,
    prompt: str | None = None,
    system: str | None = None,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    adapter: str | None = None,
    weights: dict[str, float] | None = None,
    console: Console | None = None,
) -> None:
    """Chat with ``target``; for an adapter bundle, ``adapter`` picks the adapter, ``weights`` a weighted mix."""
    console = console or Console(stderr=True)
    console.print(f"loading {target} ...")
    loaded = load_target(target, adapter=adapter, weights=weights)
    if isinstance(loaded, LoadedRun) and loaded.adapters:
        console.print(f"adapter: {loaded.adapter} (bundle holds {', '.join(loaded.adapters)})")
    model, tokenizer = (loaded.model, loaded.tokenizer) if isinstance(loaded, LoadedRun) else loaded
    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature)
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []

    def answer(text: str) -> None:
        history.append({"role": "user", "content": text})
        pieces = []
        for piece in stream_reply(model, tokenizer, history, settings):
            pieces.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
        history.append({"role": "assistant", "content": "".join(pieces)})

    if prompt is not None:
        answer(prompt)
        return
    console.print(HELP)
    while True:
        try:
            text = input("you> ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        stripped = text.strip()
        if not stripped:
            continue
        if stripped == "/exit":
            return
        if stripped == "/reset":
            del history[1 if system else 0 :]
            console.print("(conversation cleared)")
            continue
        sys.stdout.write("assistant> ")
        answer(text)
