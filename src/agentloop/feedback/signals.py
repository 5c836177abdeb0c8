"""What a trace says about the run's quality and origin: ratings, corrections, implicit
signals, critique and eval scores, and whether the run is a replay, fork or resume.

Export (training data) and ``dataset from-traces`` (eval cases) read runs through these, so
both agree on what "well rated" and "derived from another run" mean.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Literal

from agentloop.feedback.critique import Critique, Rubric
from agentloop.trace import Trace

Signal = Literal["edit", "regenerate", "copy", "abandon"]
SIGNALS: tuple[Signal, ...] = ("edit", "regenerate", "copy", "abandon")
"""Implicit feedback an application records without asking its user to rate: the user
edited the answer (the edit is a correction), regenerated it (the answer was rejected),
copied it (kept it) or abandoned the conversation."""

DERIVED_KINDS = ("replay", "fork", "resume")
"""Header ``parent.kind`` values of runs made from another run's trace."""


def derived_from(trace: Trace) -> str | None:
    """``replay``, ``fork`` or ``resume`` when the run was made from another run's trace (its
    header's ``parent`` says so), else ``None``."""
    parent = trace.header.parent or {}
    kind = parent.get("kind")
    return str(kind) if kind in DERIVED_KINDS else None


def latest_rating(trace: Trace) -> str | None:
    ratings = [f.rating for f in trace.feedback() if f.rating]
    return ratings[-1] if ratings else None


def latest_correction(trace: Trace) -> str | None:
    """The latest corrected answer: a ``correction`` or the text of an ``edit`` signal about
    the run as a whole (a correction of one step is not a corrected final answer)."""
    corrections = [
        f.correction for f in trace.feedback() if f.correction is not None and f.about_step is None
    ]
    return corrections[-1] if corrections else None


def signals(trace: Trace) -> list[str]:
    """The implicit signals recorded on the run, oldest first."""
    return [f.signal for f in trace.feedback() if f.signal]


def preference(trace: Trace) -> float | None:
    """How much people liked the run, for ranking runs of one task: the latest explicit
    rating (up 1, down 0); else a regeneration or abandonment 0, a copy 1; else ``None``."""
    rating = latest_rating(trace)
    if rating is not None:
        return 1.0 if rating == "up" else 0.0
    found = signals(trace)
    if "regenerate" in found or "abandon" in found:
        return 0.0
    if "copy" in found:
        return 1.0
    return None


def critique_score(trace: Trace) -> float | None:
    """The overall score of the latest critique, in [0, 1]."""
    critiques = trace.critiques()
    if not critiques:
        return None
    latest = critiques[-1]
    rubric = Rubric.model_validate(latest.rubric)
    return Critique.model_validate(latest.critique).overall(rubric)


def eval_score(trace: Trace) -> float | None:
    scores = [s.value for s in trace.scores()]
    return sum(scores) / len(scores) if scores else None


def normalize_task(task: str) -> str:
    """A task as compared for de-duplication and train/test overlap: whitespace collapsed,
    case folded."""
    return " ".join(task.split()).casefold()


def feedback_counts(traces: Iterable[Trace]) -> dict[str, int]:
    """How many ratings (``up``, ``down``), corrections and implicit signals the runs got."""
    counts: Counter[str] = Counter()
    for trace in traces:
        for event in trace.feedback():
            counts.update(
                kind
                for kind in (
                    event.rating,
                    "correction" if event.correction is not None and not event.signal else None,
                    event.signal,
                )
                if kind
            )
    return dict(sorted(counts.items()))
