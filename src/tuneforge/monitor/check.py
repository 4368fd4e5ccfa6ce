"""``tuneforge monitor``: gather the inputs, apply the rules in :mod:`signals`, say whether to retrain.

The deployed run is the reference: its own ``eval/results.json`` (written when it was trained) is the
metric to hold, its recipe's ``data.train`` is the input distribution it was trained for, and its
``serve/feedback.jsonl`` is where ``tuneforge serve RUN`` writes feedback by default. A later
evaluation of the same run on fresh data (``tuneforge eval RUN --data NEW --out DIR``, passed as
``--eval DIR``) is the current metric. Every rule whose inputs are missing is reported as skipped,
with what to pass, rather than silently counted as healthy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.config.load import load_recipe
from tuneforge.errors import TuneforgeError
from tuneforge.monitor import inputs, signals
from tuneforge.runs import RECIPE_FILE


@dataclass(frozen=True)
class Thresholds:
    max_metric_drop: float = 0.05  # relative: 5% worse than the deployed run
    max_satisfaction_drop: float = 0.10  # absolute fall of the thumbs-up share
    satisfaction_window: int = 100  # the most recent ratings, against all earlier ones
    min_ratings: int = 20
    max_length_ks: float = 0.25
    max_vocabulary_js: float = 0.30


@dataclass
class MonitorReport:
    triggers: list[signals.Trigger] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def retrain(self) -> bool:
        return bool(self.triggers)

    def add(self, trigger: signals.Trigger | None, ok: str) -> None:
        if trigger is None:
            self.notes.append(f"ok: {ok}")
        else:
            self.triggers.append(trigger)


@dataclass
class MonitorInputs:
    run: Path
    metrics: str | None = None
    api_key: str | None = None
    feedback: Path | None = None
    prompts: Path | None = None
    evals: list[Path] = field(default_factory=list)
    train_data: Path | None = None
    model: str | None = None


def check(given: MonitorInputs, th: Thresholds = Thresholds()) -> MonitorReport:
    """Apply every rule whose inputs are present."""
    if not (given.run / RECIPE_FILE).is_file():
        raise TuneforgeError(f"{given.run} is not a tuneforge run directory (no {RECIPE_FILE})", hint="pass the deployed run's directory")
    report = MonitorReport()
    _served(given, report)
    _metric(given, th, report)
    _satisfaction(given, th, report)
    _drift(given, th, report)
    return report


def _served(given: MonitorInputs, report: MonitorReport) -> None:
    if given.metrics is None:
        report.notes.append("skipped served metrics: pass --metrics http://HOST:PORT/metrics (or a saved scrape)")
        return
    for model, c in inputs.served_counts(inputs.read_scrape(given.metrics, given.api_key)).items():
        rate = f", refusal rate {c.refusal_rate:.1%}" if c.refusal_rate is not None else ""
        fb = ", ".join(f"{k} {v:g}" for k, v in sorted(c.feedback.items())) or "no feedback"
        report.notes.append(f"served {model}: {c.requests:g} requests ({c.errors:g} refused or failed), {c.responses:g} answers{rate}; {fb}")


def _metric(given: MonitorInputs, th: Thresholds, report: MonitorReport) -> None:
    deployed_file = given.run / "eval" / "results.json"
    if not deployed_file.is_file():
        report.notes.append(f"skipped eval metric: {deployed_file} is missing (the run was trained without data.eval)")
        return
    if not given.evals:
        report.notes.append(f"skipped eval metric: pass --eval DIR from `tuneforge eval {given.run} --data FRESH.jsonl --out DIR`")
        return
    deployed = inputs.eval_score(deployed_file)
    current = inputs.eval_score(given.evals[-1], metric=deployed.metric)
    ok = f"{deployed.metric} {current.value:.4g} against the deployed {deployed.value:.4g}"
    report.add(signals.metric_drop(deployed.metric, deployed.value, current.value, th.max_metric_drop), ok)


def _satisfaction(given: MonitorInputs, th: Thresholds, report: MonitorReport) -> None:
    path = given.feedback or given.run / "serve" / "feedback.jsonl"
    if not path.is_file():
        report.notes.append(f"skipped satisfaction: no feedback log at {path} (pass --feedback)")
        return
    rated = inputs.ratings(path, given.model)
    recent, earlier = rated[-th.satisfaction_window :], rated[: -th.satisfaction_window]
    counts = lambda rs: (rs.count("up"), rs.count("down"))  # noqa: E731
    trigger = signals.satisfaction_drop(counts(earlier), counts(recent), th.max_satisfaction_drop, th.min_ratings)
    share = signals.satisfaction(*counts(recent))
    if trigger is None and (len(earlier) < th.min_ratings or len(recent) < th.min_ratings):
        report.notes.append(f"skipped satisfaction: {len(rated)} ratings, need {th.min_ratings} before and {th.min_ratings} within the last {th.satisfaction_window}")
        return
    report.add(trigger, f"thumbs-up share {share:.0%} over the last {len(recent)} ratings")


def _drift(given: MonitorInputs, th: Thresholds, report: MonitorReport) -> None:
    if given.prompts is None or not given.prompts.is_file():
        report.notes.append("skipped input drift: pass --prompts FILE (start the server with --prompt-log FILE)")
        return
    train_file = given.train_data or Path(load_recipe(given.run / RECIPE_FILE).data.train)
    train = inputs.training_prompts(train_file)
    served = inputs.served_prompts(given.prompts, given.model)
    lengths = lambda texts: [len(inputs.words(t)) for t in texts]  # noqa: E731
    report.add(signals.length_drift(lengths(train), lengths(served), th.max_length_ks), f"prompt lengths ({len(served)} served, {len(train)} training prompts)")
    report.add(signals.vocabulary_drift(inputs.word_counts(train), inputs.word_counts(served), th.max_vocabulary_js), "prompt vocabulary")
