"""Eval cases from recorded runs: production traces (rated, corrected) become a dataset.

A run gives a case when people (or a judge) said what its answer should be: a correction or
an edit is the expected answer; otherwise a run rated up or copied, or one whose critique or
eval score reaches the given threshold, lends its own answer. Cases are de-duplicated by task
(a correction wins over a well-rated answer, then the newest run), keep their source run in
``metadata``, and can be split into train and test sets with a seed, so the same traces always
give the same split. Replays, forks and resumes are left out unless asked for.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agentloop.evals.datasets import Case
from agentloop.feedback.signals import (
    critique_score,
    derived_from,
    eval_score,
    latest_correction,
    latest_rating,
    normalize_task,
    signals,
)
from agentloop.trace import Trace


@dataclass(frozen=True)
class CaseFilters:
    """Which runs may become cases and what counts as a well-rated answer."""

    version: str | None = None
    """Only runs of this agent version (``config_hash``, or its start)."""
    min_critique: float | None = None
    """A run whose latest critique scores at least this lends its answer."""
    min_score: float | None = None
    """A run whose mean eval score is at least this lends its answer."""
    include_replays: bool = False


@dataclass
class Harvest:
    """The cases found, in a stable order, and why other runs gave none."""

    cases: list[Case] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def split(self, test_fraction: float, seed: int = 0) -> tuple[list[Case], list[Case]]:
        """A seeded train/test split: ``round(n * test_fraction)`` cases go to test."""
        if not 0 <= test_fraction <= 1:
            raise ValueError("the test fraction must be between 0 and 1")
        order = sorted(self.cases, key=lambda c: c.id)
        random.Random(seed).shuffle(order)
        n_test = round(len(order) * test_fraction)
        test_ids = {c.id for c in order[:n_test]}
        mark = [_with_split(c, "test" if c.id in test_ids else "train") for c in self.cases]
        return [c for c in mark if c.id not in test_ids], [c for c in mark if c.id in test_ids]


def cases_from_traces(traces: Iterable[Trace], filters: CaseFilters = CaseFilters()) -> Harvest:
    """One case per task from the runs that say what the answer should be."""
    harvest = Harvest()
    best: dict[str, tuple[int, str, Case]] = {}
    for trace in traces:
        found = _expected(trace, filters)
        if isinstance(found, str):
            harvest.skipped[found] = harvest.skipped.get(found, 0) + 1
            continue
        expected, source = found
        key = normalize_task(trace.header.task)
        case = Case(
            id="t-" + hashlib.sha256(key.encode()).hexdigest()[:12],
            input=trace.header.task,
            expected=expected,
            metadata={
                "source_run": trace.run_id,
                "source_trace": str(trace.path) if trace.path else None,
                "expected_from": source,
                "agent_version": trace.header.config_hash,
            },
        )
        rank = (1 if source == "correction" else 0, trace.header.created, case)
        if key in best:
            harvest.skipped["another run of the same task"] = (
                harvest.skipped.get("another run of the same task", 0) + 1
            )
            if rank[:2] <= best[key][:2]:
                continue
        best[key] = rank
    harvest.cases = sorted((c for _, _, c in best.values()), key=lambda c: c.id)
    return harvest


def _expected(trace: Trace, filters: CaseFilters) -> tuple[Any, str] | str:
    """The expected answer and where it came from, or why the run gives no case."""
    kind = derived_from(trace)
    if kind and not filters.include_replays:
        return f"a {kind} of another run (--include-replays keeps it)"
    if filters.version and not trace.header.config_hash.startswith(filters.version):
        return "other agent version"
    correction = latest_correction(trace)
    if correction is not None:
        return correction, "correction"
    if trace.output is None:
        return "the run did not finish and has no correction"
    rating = latest_rating(trace)
    if rating == "down":
        return "rated down and not corrected"
    if rating == "up":
        return trace.output, "rating"
    if "copy" in signals(trace) and not {"regenerate", "abandon"} & set(signals(trace)):
        return trace.output, "copy"
    critique = critique_score(trace)
    if _reaches(critique, filters.min_critique):
        return trace.output, "critique"
    score = eval_score(trace)
    if _reaches(score, filters.min_score):
        return trace.output, "score"
    return "no correction and not well rated"


def _reaches(value: float | None, threshold: float | None) -> bool:
    return value is not None and threshold is not None and value >= threshold


def _with_split(case: Case, split: str) -> Case:
    return case.model_copy(update={"metadata": {**case.metadata, "split": split}})
