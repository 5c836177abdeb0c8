"""Human feedback on a run: thumbs up or down, a comment, a corrected answer, and the implicit
signals an application sees without asking (an edit, a regeneration, a copy, an abandoned
conversation).

An application calls ``add_feedback`` when its user rates, edits, regenerates, copies or
walks away from what the agent did; the CLI's ``agentloop feedback`` does the same from a
terminal. Each call appends a ``feedback`` event to the run's trace (several may exist per
run), where export finds it: an edit is a correction, a regeneration puts the run on the
rejected side of a pair.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from agentloop.errors import UserError
from agentloop.events import FeedbackRecorded
from agentloop.feedback.signals import SIGNALS, Signal
from agentloop.redaction import Redactor
from agentloop.trace import annotate, read_trace


def add_feedback(
    trace: str | Path,
    *,
    rating: Literal["up", "down"] | None = None,
    comment: str | None = None,
    correction: str | None = None,
    signal: Signal | None = None,
    step: int | None = None,
    user_id: str | None = None,
    source: str = "api",
    redact: Redactor | None = None,
) -> FeedbackRecorded:
    """Record feedback on the run in ``trace``: at least one of ``rating``, ``comment``,
    ``correction`` (what the final answer should have been) or ``signal`` (``edit`` with the
    edited answer as ``correction``, ``regenerate``, ``copy``, ``abandon``). ``step`` says
    which step it is about (from 0); ``redact`` masks secrets (otherwise the process's
    redactor: default patterns and every secret registered with ``register_secrets``, as
    ``Agent`` does)."""
    if rating is None and not comment and correction is None and signal is None:
        raise UserError("feedback needs a rating, a comment, a correction or a signal")
    if rating not in (None, "up", "down"):
        raise UserError(f"rating must be 'up' or 'down', not {rating!r}")
    if signal is not None and signal not in SIGNALS:
        raise UserError(f"signal must be one of {', '.join(SIGNALS)}, not {signal!r}")
    if signal == "edit" and correction is None:
        raise UserError("an edit signal needs the edited answer as correction")
    if signal not in (None, "edit") and correction is not None:
        raise UserError(f"a {signal} signal takes no correction (an edit does)")
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
        signal=signal,
        about_step=step,
        user_id=user_id,
        source=source,
    )
    assert isinstance(event, FeedbackRecorded)
    return event
