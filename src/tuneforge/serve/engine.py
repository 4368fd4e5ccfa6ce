"""The batching engine: one background thread that runs every generation, several requests per call.

Why a single thread: one model in memory serves every client, a forward pass already uses all cores
(or the GPU), and peft's active adapter is model-wide state, so two threads generating at once would
fight over both. Why batches: a batched forward of 8 prompts costs little more than one on a GPU and
much less than 8 on a CPU, so clients arriving together are served together.

The loop: wait for a request, keep collecting for ``batch_wait_ms`` (or until ``max_batch``), split
what arrived into compatible groups (same adapter, same sampling settings; see
:meth:`Job.batch_key`), and run one left-padded ``generate`` per group. ``generate`` reports each
step's tokens through a streamer (transformers' public ``BaseStreamer`` hook) and asks a stopping
criterion which rows are finished, so each request ends at its own ``max_tokens``, end-of-turn token
or stop sequence while the others continue. This is static batching: a request arriving during a
batch waits for the next one (continuous batching is what vLLM / TGI add on top; see docs/SERVE.md).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation import BaseStreamer

from tuneforge.serve.chat import eos_token_ids
from tuneforge.serve.jobs import Job
from tuneforge.serve.limits import ServeLimits
from tuneforge.serve.metrics import ServeMetrics


class QueueFull(Exception):
    """The engine's queue holds ``queue_size`` requests already; the API answers 429."""


class _BatchStreamer(BaseStreamer):
    """Hands each step's token of row i to job i (the first call carries the prompt and is skipped)."""

    def __init__(self, jobs: list[Job], eos_ids: set[int], decode: Callable[[list[int]], str], on_first: Callable[[Job], None]) -> None:
        self.jobs, self.eos_ids, self.decode, self.on_first = jobs, eos_ids, decode, on_first
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for job, token in zip(self.jobs, value.reshape(len(self.jobs), -1)[:, -1].tolist()):
            first = job.first_token_at is None and not job.done
            job.add_token(int(token), self.eos_ids, self.decode)
            if first:
                self.on_first(job)

    def end(self) -> None:
        pass


class _RowsDone(StoppingCriteria):
    """Row i is finished when its job is (end of turn, stop sequence, max_tokens) or its client left."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        return torch.tensor([j.done or j.cancelled.is_set() for j in self.jobs], dtype=torch.bool, device=input_ids.device)


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
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._active_adapter: str | None = None
        self.batches: list[int] = []  # sizes of the batches run, newest last (bounded; for tests and benchmarks)

    def submit(self, job: Job) -> None:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull from None
        if self.metrics:
            self.metrics.queue_depth.labels(job.model).inc()

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
            jobs = self._collect()
            for group in group_jobs(jobs, self.limits.max_batch):
                self._run(group)

    def _collect(self) -> list[Job]:
        """The next request, and whatever else arrives within ``batch_wait_ms`` (at most a few batches)."""
        try:
            jobs = [self._queue.get(timeout=0.1)]
        except queue.Empty:
            return []
        deadline = time.perf_counter() + self.limits.batch_wait_ms / 1000
        while len(jobs) < 4 * self.limits.max_batch:
            left = deadline - time.perf_counter()
            try:
                jobs.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        if self.metrics:
            for job in jobs:
                self.metrics.queue_depth.labels(job.model).dec()
        return [j for j in jobs if not j.cancelled.is_set()]

    def _run(self, jobs: list[Job]) -> None:
        """One batched ``generate`` for ``jobs``; any failure is reported to each job, never raised."""
        try:
            self._activate(jobs[0].adapter)
            kwargs = self._generate_kwargs(jobs)
            self.batches = (self.batches + [len(jobs)])[-1000:]
            if self.metrics:
                self.metrics.batch_size.labels(jobs[0].model).observe(len(jobs))
            with torch.inference_mode():
                self.model.generate(**kwargs)
        except Exception as exc:  # noqa: BLE001 - a failed batch fails its requests, not the server
            for job in jobs:
                job.fail(f"generation failed: {type(exc).__name__}: {exc}")
            return
        for job in jobs:  # rows that generate() ended (max_new_tokens) before their job saw the end
            job.finish("length", self._decode)

    def _generate_kwargs(self, jobs: list[Job]) -> dict[str, Any]:
        width = max(len(j.prompt_ids) for j in jobs)
        ids = torch.full((len(jobs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.long)
        for row, job in enumerate(jobs):  # left padding: every row's next token is at the same column
            ids[row, width - len(job.prompt_ids) :] = torch.tensor(job.prompt_ids)
            mask[row, width - len(job.prompt_ids) :] = 1
        device = self.model.device
        kwargs: dict[str, Any] = {
            "input_ids": ids.to(device),
            "attention_mask": mask.to(device),
            "max_new_tokens": max(j.max_tokens for j in jobs),
            "eos_token_id": sorted(self.eos_ids),
            "pad_token_id": self.pad_id,
            "streamer": _BatchStreamer(jobs, self.eos_ids, self._decode, self._first_token),
            "stopping_criteria": StoppingCriteriaList([_RowsDone(jobs)]),
        }
        sampling = jobs[0].sampling
        if sampling.greedy:
            kwargs.update(do_sample=False)
        else:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)  # only this thread generates, so the global RNG is ours
        return kwargs

    def _activate(self, adapter: str | None) -> None:
        if adapter is not None and adapter != self._active_adapter and self.select_adapter is not None:
            self.select_adapter(adapter)
            self._active_adapter = adapter

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _first_token(self, job: Job) -> None:
        if self.metrics and job.first_token_at is not None:
            self.metrics.ttft.labels(job.model).observe(job.first_token_at - job.submitted)


def group_jobs(jobs: list[Job], max_batch: int) -> list[list[Job]]:
    """Split ``jobs`` into compatible groups of at most ``max_batch``, in arrival order of each group's first job."""
    groups: dict[tuple[Any, ...], list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.batch_key(), []).append(job)
    out: list[list[Job]] = []
    for group in groups.values():
        out += [group[i : i + max_batch] for i in range(0, len(group), max_batch)]
    return out
