"""What an eval run adds up to: per scorer mean and pass rate with 95 % confidence intervals,
errors, steps, tokens, latency percentiles.

Every attempt counts, errored ones too: an error scores 0 on every scorer that applies to its
case, so an agent cannot look better by crashing. A scorer a case added for itself counts only
over the attempts of the cases that use it. A scorer that fails (raises) counts as a scorer
error, apart from the run errors; feedback recorded on the attempts' traces (ratings,
corrections, implicit signals) is counted by kind.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from agentloop.evals.records import AttemptRecord, EvalRun
from agentloop.evals.stats import mean_interval, percentile, wilson_interval
from agentloop.feedback.signals import feedback_counts


@dataclass(frozen=True)
class ScorerSummary:
    name: str
    n: int
    mean: float
    mean_ci: tuple[float, float]
    passed: int
    pass_rate: float
    pass_ci: tuple[float, float]
    """Wilson score interval for the pass rate."""
    errors: int = 0
    """Scores where the scorer itself failed (raised, or returned no ``Score``)."""


@dataclass(frozen=True)
class Summary:
    label: str
    config_hash: str
    attempts: int
    expected_attempts: int
    """cases × repeats: more than ``attempts`` while an eval is unfinished."""
    passed: int
    """Attempts that finished and passed every scorer."""
    pass_rate: float
    pass_ci: tuple[float, float]
    errors: int
    error_reasons: dict[str, int]
    scorers: list[ScorerSummary]
    steps_mean: float
    tool_calls_mean: float
    input_tokens: int
    output_tokens: int
    tokens_mean: float
    latency_p50: float
    latency_p95: float
    scorer_errors: int = 0
    """Scores where the scorer itself failed: a broken scorer, not a bad run."""
    feedback: dict[str, int] = field(default_factory=dict)
    """Feedback recorded on the attempts' traces, by kind: ``up``/``down`` ratings,
    ``correction``, and implicit signals (``edit``, ``regenerate``, ``copy``, ``abandon``)."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["scorers"] = [asdict(s) for s in self.scorers]
        return data


def summarize(run: EvalRun) -> Summary:
    records = run.records
    n = len(records)
    passed = sum(r.passed for r in records)
    durations = [r.duration_s for r in records]
    return Summary(
        label=run.meta.label,
        config_hash=run.meta.config_hash,
        attempts=n,
        expected_attempts=run.meta.cases * run.meta.repeats,
        passed=passed,
        pass_rate=passed / n if n else 0.0,
        pass_ci=wilson_interval(passed, n),
        errors=sum(r.status == "error" for r in records),
        error_reasons=dict(Counter(r.reason or "error" for r in records if r.status == "error")),
        scorers=[_scorer(name, records) for name in scorer_names(records, run.meta.scorers)],
        steps_mean=_mean([r.steps for r in records]),
        tool_calls_mean=_mean([r.tool_calls for r in records]),
        input_tokens=sum(r.input_tokens for r in records),
        output_tokens=sum(r.output_tokens for r in records),
        tokens_mean=_mean([r.input_tokens + r.output_tokens for r in records]),
        latency_p50=percentile(durations, 50),
        latency_p95=percentile(durations, 95),
        scorer_errors=sum(s.error for r in records for s in r.scores.values()),
        feedback=feedback_counts(t for r in records if (t := run.read_trace(r)) is not None),
    )


def scorer_names(records: list[AttemptRecord], first: list[str]) -> list[str]:
    """The eval's scorers in order, then those only some cases use, in the order first seen."""
    names = list(first)
    for record in records:
        names.extend(name for name in record.scores if name not in names)
    return names


def _scorer(name: str, records: list[AttemptRecord]) -> ScorerSummary:
    scores = [r.scores[name] for r in records if name in r.scores]
    values = [s.value for s in scores]
    passed = sum(s.passed for s in scores)
    return ScorerSummary(
        name=name,
        n=len(scores),
        mean=_mean(values),
        mean_ci=mean_interval(values),
        passed=passed,
        pass_rate=passed / len(scores) if scores else 0.0,
        pass_ci=wilson_interval(passed, len(scores)),
        errors=sum(s.error for s in scores),
    )


def _mean(values: list[float] | list[int]) -> float:
    return statistics.fmean(values) if values else 0.0
