"""One attempt at one case: run the agent, score the run from the events it emitted, and
append the scores to its trace. Every backend runs cases through ``run_attempt``, so a case
earns the same record whichever process runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from agentloop.agent import Agent
from agentloop.errors import TraceError
from agentloop.evals.datasets import Case
from agentloop.evals.records import TRACES_DIR, AttemptRecord
from agentloop.evals.scorers import Score, Scorer, apply_scorer, scorer_name, scorers_for
from agentloop.events import BaseEvent, RunCancelled, RunFailed, RunFinished, ScoreRecorded
from agentloop.models.base import Model
from agentloop.redaction import Redactor
from agentloop.settings import USE_AGENT_DEFAULT
from agentloop.trace import Trace, append_annotations, in_memory_trace, trace_path

eval_log = structlog.wrap_logger(  # what evals say to the user: the CLI prints warnings
    logging.getLogger("agentloop"),
    wrapper_class=structlog.stdlib.BoundLogger,
    processors=[structlog.stdlib.render_to_log_kwargs],
)


def warn_if_queued(model: Model, concurrency: int) -> int:
    """Ready ``model`` for ``concurrency`` requests at once; if it serves fewer, say so (a
    warning on the ``agentloop`` logger, which the CLI prints): the rest queue, and their
    latency is mostly waiting. Returns how many it serves at once."""
    serves = model.expect_concurrency(concurrency)
    if serves < concurrency:
        eval_log.warning(
            f"{model.name} serves {serves} request(s) at once; with concurrency {concurrency} "
            "the other requests queue (their latency is mostly waiting)",
            model=model.name,
            serves=serves,
            concurrency=concurrency,
        )
    return serves


async def run_attempt(
    agent: Agent,
    case: Case,
    attempt: int,
    folder: Path,
    scorers: Sequence[Scorer],
    case_timeout: float | None,
    *,
    eval_name: str | None,
) -> AttemptRecord:
    """Run one case once, its trace going to ``folder/traces``, and score it from the events
    the run emitted (the trace is not read back); whatever goes wrong becomes an error record.
    ``eval_name`` (default: the folder's name) is what the trace's metadata calls the eval."""
    events: list[BaseEvent] = []
    traces = folder / TRACES_DIR
    error: Exception | None = None
    try:
        await agent.run(
            case.input,
            trace_dir=traces,
            metadata={
                "eval": eval_name or folder.name,
                "case_id": case.id,
                "attempt": attempt,
                **({"case": case.metadata} if case.metadata else {}),
            },
            listener=events.append,
            run_timeout=case_timeout if case_timeout is not None else USE_AGENT_DEFAULT,
        )
    except Exception as exc:
        error = exc
    trace = _held(traces, events)
    return await score_attempt(
        case, attempt, trace, folder, scorers, error, redact=agent.redact, eval_name=eval_name
    )


def _held(traces: Path, events: list[BaseEvent]) -> Trace | None:
    """The run's trace as its listener saw it, or ``None`` if it wrote none."""
    if not events:
        return None
    try:
        return in_memory_trace(trace_path(traces, events[0].run_id), events)
    except (OSError, TraceError):
        return None


async def score_attempt(
    case: Case,
    attempt: int,
    trace: Trace | None,
    folder: Path,
    scorers: Sequence[Scorer],
    error: BaseException | None = None,
    *,
    redact: Redactor | None = None,
    eval_name: str | None = None,
) -> AttemptRecord:
    """The record of one attempt: its trace's facts and its scores, which are also appended
    to the trace (redacted by ``redact``, else the process's redactor). An attempt whose
    run did not finish with an answer is an error, and every scorer gives it 0."""
    end = trace.terminal if trace is not None else None
    facts: dict[str, Any] = {}
    if isinstance(end, RunFinished | RunFailed | RunCancelled):
        facts = {
            "steps": end.steps,
            "tool_calls": end.tool_calls,
            "input_tokens": end.usage.input_tokens,
            "output_tokens": end.usage.output_tokens,
            "duration_s": end.duration_s,
        }
    relative = None
    if trace is not None and trace.path is not None:
        relative = (
            str(trace.path.relative_to(folder)) if trace.path.is_relative_to(folder) else None
        )
    names = [scorer_name(s) for s in scorers_for(case, scorers)]
    if error is not None or trace is None or not isinstance(end, RunFinished):
        message, reason = _failure(error, end)
        return AttemptRecord(
            case_id=case.id,
            attempt=attempt,
            status="error",
            error=message,
            reason=reason,
            trace=relative,
            scores=not_scored(names, message),
            **facts,
        )
    scores = [await apply_scorer(s, case, trace) for s in scorers_for(case, scorers)]
    if trace.path is not None and scores and not trace.torn:
        # The verdicts travel with the run (export filters on them), in one write.
        annotations: list[tuple[type[BaseEvent], dict[str, Any]]] = [
            (
                ScoreRecorded,
                {
                    "scorer": score.scorer,
                    "value": score.value,
                    "passed": score.passed,
                    "explanation": score.explanation,
                    "eval_run": eval_name or folder.name,
                },
            )
            for score in scores
        ]
        append_annotations(trace, annotations, redact=redact)
    return AttemptRecord(
        case_id=case.id,
        attempt=attempt,
        status="ok",
        trace=relative,
        output=end.output,
        scores=dict(zip(names, scores, strict=True)),
        **facts,
    )


def not_scored(names: list[str], message: str) -> dict[str, Score]:
    return {
        n: Score(value=0.0, passed=False, explanation=f"not scored: {message}", scorer=n)
        for n in names
    }


def _failure(error: BaseException | None, end: object) -> tuple[str, str]:
    if isinstance(end, RunFailed):
        return f"{end.error_type}: {end.message}", end.reason
    if isinstance(end, RunCancelled):
        return "the run was cancelled", "cancelled"
    if error is not None:
        partial = getattr(error, "partial", None)
        reason = partial.stop_reason if partial is not None else "error"
        return f"{type(error).__name__}: {error}", reason
    return "the run left no finished trace", "error"
