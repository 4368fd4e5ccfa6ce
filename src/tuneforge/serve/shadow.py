"""Shadow comparison: a second adapter answers the same traffic, off the response path.

Before switching a deployment to a new adapter, one wants to know how often it would answer what
the current one answers, on real requests rather than a test set. ``tuneforge serve BUNDLE --shadow
NAME`` keeps answering every client with the adapter it asked for and also hands a copy of each
request to the engine's shadow queue with adapter ``NAME``. The engine runs shadow work only while no
client request is in flight (serve/engine.py), and a full shadow queue drops the copy (counted)
instead of delaying or refusing a client. When both answers exist, one line goes to
``TARGET/serve/shadow.jsonl`` (both outputs, whether they agree) and the agreement counters of
``/metrics`` move. Agreement is exact text equality: for greedy requests that is "the new adapter
would have said the same"; for sampled requests it is noisy by nature, so each line records
``greedy`` and the counters carry it as a label.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.serve.feedback import JsonlLog
from tuneforge.serve.jobs import Event, Failed, Finished, Job
from tuneforge.serve.metrics import ServeMetrics

SHADOW_FILE = "shadow.jsonl"
_PENDING_LIMIT = 10_000  # comparisons waiting for their other half (a client that left never finishes)


def check_shadow(names: dict[str, str | None], shadow: str) -> str:
    """The peft adapter behind the served name ``shadow``, or a user error naming the choices."""
    adapter = names.get(shadow)
    if adapter is None:
        adapters = [n for n, a in names.items() if a is not None]
        raise TuneforgeError(
            f"--shadow {shadow!r} is not an adapter this server loads",
            hint=f"serve a bundle (or several --adapter NAME=RUN) and pick one of: {', '.join(adapters) or '(none loaded)'}",
        )
    return adapter


class ShadowComparer:
    """Pairs each client answer with the shadow adapter's answer to the same request."""

    def __init__(self, shadow: str, adapter: str, log_path: str | Path, metrics: ServeMetrics) -> None:
        self.shadow, self.adapter, self.metrics = shadow, adapter, metrics
        self.log = JsonlLog(log_path)
        self._lock = threading.Lock()
        self._halves: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def mirror(self, job: Job, submit: Any) -> None:
        """Queue the shadow copy of client ``job`` through ``submit`` (the engine's ``submit_shadow``)."""
        if job.adapter == self.adapter:
            return
        with self._lock:
            self._halves[job.id] = {"model": job.model, "greedy": job.sampling.greedy, "prompt_tokens": len(job.prompt_ids)}
            while len(self._halves) > _PENDING_LIMIT:
                self._halves.popitem(last=False)
        copy = Job(job.id, job.model, self.adapter, job.prompt_ids, job.max_tokens, job.sampling, job.stop, self._sink(job.id), shadow=True)
        if not submit(copy):
            with self._lock:
                self._halves.pop(job.id, None)
            self.metrics.shadow_skipped.labels(job.model, self.shadow).inc()

    def client_done(self, job_id: str, text: str, finish_reason: str) -> None:
        """The client's answer to ``job_id`` is complete."""
        self._half(job_id, "output", text, finish_reason)

    def _sink(self, job_id: str):
        def put(event: Event) -> None:
            if isinstance(event, Finished):
                self._half(job_id, "shadow_output", event.text, event.finish_reason)
            elif isinstance(event, Failed):
                self._half(job_id, "shadow_output", None, f"failed: {event.message}")

        return put

    def _half(self, job_id: str, side: str, text: str | None, finish_reason: str) -> None:
        with self._lock:
            record = self._halves.get(job_id)
            if record is None:
                return
            record[side], record[f"{side.removesuffix('output')}finish_reason"] = text, finish_reason
            if "output" not in record or "shadow_output" not in record:
                return
            del self._halves[job_id]
        agree = record["shadow_output"] is not None and record["output"] == record["shadow_output"]
        self.log.append({"time": time.time(), "id": job_id, "shadow": self.shadow, **record, "agree": agree})
        self.metrics.shadow_compared(record["model"], self.shadow, agree, record["greedy"])
