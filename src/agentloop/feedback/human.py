"""Human feedback on a run: thumbs up or down, a comment, a corrected answer.

An application calls ``add_feedback`` when its user rates, edits or accepts what the agent did;
the CLI's ``agentloop feedback`` does the same from a terminal. Each call appends a
``feedback`` event to the run's trace (several may exist per run), where export finds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from agentloop.errors import UserError
from agentloop.events import FeedbackRecorded
from agentloop.redaction import Redactor
from agentloop.trace import annotate, read_trace


def add_feedback(
    trace: str | Path,
    *,
    rating: Literal["up", "down"] | None = None,
    comment: str | None = None,
    correction: str | None = None,
    step: int | None = None,
    user_id: str | None = None,
    source: str = "api",
    redact: Redactor | None = None,
) -> FeedbackRecorded:
    """Record feedback on the run in ``trace``: at least one of ``rating``, ``comment`` or
    ``correction`` (what the final answer should have been). ``step`` says which step it is
    about (from 0); ``redact`` masks secrets (otherwise the process's redactor: default
    patterns and every secret registered with ``register_secrets``, as ``Agent`` does)."""
    if rating is None and not comment and correction is None:
        raise UserError("feedback needs a rating, a comment or a correction")
    if rating not in (None, "up", "down"):
        raise UserError(f"rating must be 'up' or 'down', not {rating!r}")
    run = read_trace(trace)
    if step is not None and not 0 <= step < max(run.steps, 1):
        raise UserError(f"step {step} is not a step of run {run.run_id} (it has {run.steps})")
    event = annotate(
        trace,
        FeedbackRecorded,
        redact=redact,
        rating=rating,
        comment=comment,
        correction=correction,
        about_step=step,
        user_id=user_id,
        source=source,
    )
    assert isinstance(event, FeedbackRecorded)
    return event
