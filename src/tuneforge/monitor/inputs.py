"""Reading what the monitor decides from: a /metrics scrape, the feedback and prompt logs, eval results,
the training prompts. Each reader names the file (and line) it could not read."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tuneforge.datatools.rows import prompt_text, read_dataset
from tuneforge.errors import DataError, TuneforgeError

WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def read_scrape(source: str, api_key: str | None = None) -> str:
    """Prometheus text from an ``http(s)://.../metrics`` URL or a saved scrape file."""
    if source.startswith(("http://", "https://")):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            return urllib.request.urlopen(urllib.request.Request(source, headers=headers), timeout=10).read().decode()
        except (urllib.error.URLError, OSError) as exc:
            raise TuneforgeError(f"--metrics {source}: cannot read it ({exc})", hint="is `tuneforge serve` running there? pass --api-key if it has one") from None
    path = Path(source)
    if not path.is_file():
        raise TuneforgeError(f"--metrics: no such file or URL {source}", hint="pass http://HOST:PORT/metrics or a file saved from it")
    return path.read_text(encoding="utf-8")


@dataclass
class ServedCounts:
    """Per served model: what ``tuneforge serve``'s /metrics counted."""

    requests: float = 0.0
    errors: float = 0.0  # answered with a 4xx/5xx status
    responses: float = 0.0
    refusals: float = 0.0
    feedback: dict[str, float] = field(default_factory=dict)

    @property
    def refusal_rate(self) -> float | None:
        return self.refusals / self.responses if self.responses else None


def served_counts(text: str) -> dict[str, ServedCounts]:
    """Parse a scrape with prometheus-client's own parser into per-model counts."""
    out: dict[str, ServedCounts] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            model = s.labels.get("model")
            if model is None:
                continue
            c = out.setdefault(model, ServedCounts())
            if s.name == "tuneforge_requests_total":
                c.requests += s.value
                c.errors += s.value if not s.labels.get("status", "200").startswith("2") else 0
            elif s.name == "tuneforge_responses_total":
                c.responses += s.value
            elif s.name == "tuneforge_refusals_total":
                c.refusals += s.value
            elif s.name == "tuneforge_feedback_total":
                c.feedback[s.labels.get("rating", "?")] = c.feedback.get(s.labels.get("rating", "?"), 0) + s.value
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})", hint="the log is JSON Lines written by tuneforge serve") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: not a JSON object")
        rows.append(row)
    return rows


def ratings(path: Path, model: str | None = None) -> list[str]:
    """Ratings in time order, the last one per completion id (a user may change their mind)."""
    last: dict[str, tuple[float, str]] = {}
    for row in read_jsonl(path):
        if model is not None and row.get("model") != model:
            continue
        if row.get("rating") in ("up", "down"):
            last[str(row.get("id"))] = (float(row.get("time", 0)), row["rating"])
    return [r for _, r in sorted(last.values())]


def served_prompts(path: Path, model: str | None = None) -> list[str]:
    return [str(r.get("prompt", "")) for r in read_jsonl(path) if model is None or r.get("model") == model]


def training_prompts(path: str | Path) -> list[str]:
    """The request side of every training row (instruction + input, or the last user turn)."""
    return [p for p in (prompt_text(row) for row in read_dataset(path, on_bad=lambda bad: None)) if p]


@dataclass
class EvalScore:
    metric: str
    value: float
    source: Path


def eval_score(path: Path, model: str = "tuned", metric: str | None = None) -> EvalScore:
    """The task metric (or ``metric``) of ``model`` in an eval ``results.json`` (or a directory holding one)."""
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise TuneforgeError(f"{path}: no eval results.json", hint="evaluate first: tuneforge eval RUN --data HELD_OUT.jsonl --out DIR")
    results = json.loads(file.read_text(encoding="utf-8"))
    models = results.get("models", {})
    scores = models.get(model) or models.get("tuned") or models.get("model") or (next(iter(models.values())) if models else {})
    name = metric or results.get("task_metric") or "loss"
    if not isinstance(scores.get(name), (int, float)):
        raise TuneforgeError(f"{file}: no numeric {name!r} for model {model!r}", hint=f"choose one of: {', '.join(k for k, v in scores.items() if isinstance(v, (int, float)))}")
    return EvalScore(name, float(scores[name]), file)


def word_counts(texts: list[str]) -> Counter:
    counts: Counter = Counter()
    for t in texts:
        counts.update(words(t))
    return counts
