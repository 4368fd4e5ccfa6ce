"""The batching engine: one background thread that runs every generation, several requests per step.

Why a single thread: one model in memory serves every client, a forward pass already uses all cores
(or the GPU), and peft's active adapter is model-wide state, so two threads generating at once would
fight over both. Why batches: a batched forward of 8 prompts costs little more than one on a GPU and
much less than 8 on a CPU, so clients arriving together are served together.

Continuous batching: the engine decodes with :class:`~tuneforge.evaluate.generate.RowBatch` (the
model's public ``forward`` over a transformers ``DynamicCache``), one step at a time, instead of one
``generate`` call per batch. Between two steps it admits requests that arrived meanwhile: a request
compatible with a running batch (same adapter, same sampling settings; :meth:`Job.batch_key`) is
prefilled and joins it at the next step; another starts a batch of its own, and running batches take
turns step by step. A row leaves its batch the step its request ends (its ``max_tokens``, end-of-turn
token, stop sequence, or its client going away), so its slot is free for the next request at once.
At most ``max_batch`` requests are in flight; the rest wait in the bounded queue (429 when full).

When the engine is idle, the first request waits ``batch_wait_ms`` for company, so requests arriving
together are prefilled together. Shadow requests (serve/shadow.py) have their own queue and run only
while no client request is in flight: they never delay a client by more than one decoding step.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.generation import TemperatureLogitsWarper, TopPLogitsWarper

from tuneforge.evaluate.generate import RowBatch
from tuneforge.serve.chat import eos_token_ids
from tuneforge.serve.jobs import Job
from tuneforge.serve.limits import ServeLimits
from tuneforge.serve.metrics import ServeMetrics


class QueueFull(Exception):
    """The engine's queue holds ``queue_size`` requests already; the API answers 429."""


@dataclass
class _Running:
    """A batch being decoded: row i of ``rows`` is ``jobs[i]``; ``logits`` are each row's next-token scores."""

    jobs: list[Job]
    rows: RowBatch
    logits: torch.Tensor
    shadow: bool
    seed: int | None = None  # a seeded request samples from a generator of its own
    warpers: list[Any] = field(default_factory=list)  # empty: greedy
    generator: torch.Generator | None = None


class BatchEngine:
    """Owns the model: ``submit`` jobs from any thread; ``start``/``stop`` the generation thread."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        limits: ServeLimits,
        metrics: ServeMetrics | None = None,
        select_adapter: Callable[[str], None] | None = None,
    ) -> None:
        self.model, self.tokenizer, self.limits, self.metrics = model, tokenizer, limits, metrics
        self.select_adapter = select_adapter
        self.eos_ids = set(eos_token_ids(model, tokenizer))
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else min(self.eos_ids)
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=limits.queue_size)
        self._shadow_queue: queue.Queue[Job] = queue.Queue(maxsize=limits.queue_size)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._active_adapter: str | None = None
        self._running: list[_Running] = []
        self._turn = 0
        self.batches: list[int] = []  # sizes of the prefill groups run, newest last (bounded; for tests and benchmarks)
        self.joined = 0  # requests that joined a batch already decoding (continuous batching)
        self.steps = 0  # decoding steps run

    def submit(self, job: Job) -> None:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull from None
        if self.metrics:
            self.metrics.queue_depth.labels(job.model).inc()

    def submit_shadow(self, job: Job) -> bool:
        """Queue a shadow job; False (dropped) when the shadow queue is full: shadows never cause a 429."""
        try:
            self._shadow_queue.put_nowait(job)
        except queue.Full:
            return False
        return True

    def in_flight(self) -> int:
        """Client requests being decoded now (for tests: a disconnected client's row must leave)."""
        return sum(len(r.jobs) for r in self._running if not r.shadow)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tuneforge-engine", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._admit()
            run = self._next_running()
            if run is not None:
                self._advance(run)

    def _admit(self) -> None:
        """Move waiting requests into running batches, as far as ``max_batch`` slots allow."""
        free = self.limits.max_batch - self.in_flight()
        jobs = self._take(self._queue, free, wait=not self._running) if free > 0 else []
        if self.metrics:
            for job in jobs:
                self.metrics.queue_depth.labels(job.model).dec()
        self._place([j for j in jobs if not j.cancelled.is_set()], shadow=False)
        if not jobs and self.in_flight() == 0 and self._queue.empty():
            shadow_free = self.limits.max_batch - sum(len(r.jobs) for r in self._running if r.shadow)
            if shadow_free > 0:
                self._place(self._take(self._shadow_queue, shadow_free, wait=False), shadow=True)

    def _take(self, source: queue.Queue[Job], limit: int, wait: bool) -> list[Job]:
        """Up to ``limit`` jobs; when idle (``wait``), block briefly for one and collect for ``batch_wait_ms``."""
        jobs: list[Job] = []
        if wait:
            try:
                jobs.append(source.get(timeout=0.1))
            except queue.Empty:
                return []
            deadline = time.perf_counter() + self.limits.batch_wait_ms / 1000
            while len(jobs) < limit:
                left = deadline - time.perf_counter()
                try:
                    jobs.append(source.get(timeout=left) if left > 0 else source.get_nowait())
                except queue.Empty:
                    break
            return jobs
        while len(jobs) < limit:
            try:
                jobs.append(source.get_nowait())
            except queue.Empty:
                break
        return jobs

    def _place(self, jobs: list[Job], shadow: bool) -> None:
        """Join each group of compatible jobs to its running batch, or start a batch for it."""
        for group in group_jobs(jobs, self.limits.max_batch):
            key = group[0].batch_key()
            run = next((r for r in self._running if r.shadow == shadow and r.jobs[0].batch_key() == key), None)
            try:
                self._activate(group[0].adapter)
                self._record(group)
                with torch.inference_mode():
                    rows, logits = RowBatch.start(self.model, [j.prompt_ids for j in group], self.pad_id)
                    if run is not None:
                        run.rows.extend(rows)
                        run.logits, run.jobs = torch.cat([run.logits, logits]), run.jobs + group
                        self.joined += len(group)
                    else:
                        self._running.append(_Running(group, rows, logits, shadow, group[0].sampling.seed, _warpers(group[0])))
            except Exception as exc:  # noqa: BLE001 - a failed prefill fails its requests, not the server
                for job in group:
                    job.fail(f"generation failed: {type(exc).__name__}: {exc}")

    def _next_running(self) -> _Running | None:
        """Client batches take turns step by step; shadow batches run only when no client batch exists."""
        candidates = [r for r in self._running if not r.shadow] or self._running
        if not candidates:
            return None
        self._turn = (self._turn + 1) % len(candidates)
        return candidates[self._turn]

    def _advance(self, run: _Running) -> None:
        """One decoding step of ``run``: pick each row's token, hand it to its job, drop ended rows, forward."""
        try:
            self._activate(run.jobs[0].adapter)
            with torch.inference_mode():
                tokens = self._pick(run)
                keep: list[int] = []
                for pos, (job, token) in enumerate(zip(run.jobs, tokens.tolist())):
                    first = job.first_token_at is None
                    job.add_token(int(token), self.eos_ids, self._decode)
                    if first:
                        self._first_token(job)
                    if not job.done and not job.cancelled.is_set():
                        keep.append(pos)
                if not keep:
                    self._running.remove(run)
                    return
                if len(keep) < len(run.jobs):
                    run.rows.keep(keep)
                    run.jobs, tokens = [run.jobs[p] for p in keep], tokens[keep]
                run.logits = run.rows.step(tokens)
                self.steps += 1
        except Exception as exc:  # noqa: BLE001 - a failed batch fails its requests, not the server
            self._running.remove(run)
            for job in run.jobs:
                job.fail(f"generation failed: {type(exc).__name__}: {exc}")

    def _pick(self, run: _Running) -> torch.Tensor:
        """Greedy argmax, or a sample after transformers' temperature and top-p warpers (as ``generate`` does)."""
        if not run.warpers:
            return run.logits.argmax(dim=-1)
        scores = run.logits.float()
        for warper in run.warpers:
            scores = warper(None, scores)
        if run.seed is not None and run.generator is None:  # the draws depend on the seed only, not on other batches' draws
            run.generator = torch.Generator(device=scores.device).manual_seed(run.seed)
        probs = torch.softmax(scores, dim=-1)
        return torch.multinomial(probs, 1, generator=run.generator).view(-1)

    def _record(self, group: list[Job]) -> None:
        self.batches = (self.batches + [len(group)])[-1000:]
        if self.metrics:
            self.metrics.batch_size.labels(group[0].model).observe(len(group))

    def _activate(self, adapter: str | None) -> None:
        if adapter is not None and adapter != self._active_adapter and self.select_adapter is not None:
            self.select_adapter(adapter)
            self._active_adapter = adapter

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _first_token(self, job: Job) -> None:
        if self.metrics and job.first_token_at is not None and not job.shadow:
            self.metrics.ttft.labels(job.model).observe(job.first_token_at - job.submitted)


def _warpers(job: Job) -> list[Any]:
    """transformers' logits warpers for ``job``'s sampling settings, in ``generate``'s order; [] for greedy.
    The temperature warper is always there (at 1.0 a no-op), so a sampling batch never looks greedy."""
    s = job.sampling
    if s.greedy:
        return []
    warpers: list[Any] = [TemperatureLogitsWarper(s.temperature)]
    if s.top_p < 1.0:
        warpers.append(TopPLogitsWarper(s.top_p))
    return warpers


def group_jobs(jobs: list[Job], max_batch: int) -> list[list[Job]]:
    """Split ``jobs`` into compatible groups of at most ``max_batch``, in arrival order of each group's first job."""
    groups: dict[tuple[Any, ...], list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.batch_key(), []).append(job)
    out: list[list[Job]] = []
    for group in groups.values():
        out += [group[i : i + max_batch] for i in range(0, len(group), max_batch)]
    return out
