"""Compare two eval runs case by case: which cases got better or worse, and whether the overall
difference is more than noise.

Cases pair by id. Per case, a run's pass share is the share of its attempts that passed (0 or 1
with one attempt each) and its score is the mean scorer value. A case got *better* when its
pass share rose (or, at an equal pass share, its score rose) and *worse* when it fell.

Aggregate deltas come with a paired test (``agentloop.evals.stats``): the exact McNemar test when
every paired outcome is a plain pass or fail, else the paired permutation test on per-case
differences. Mean scores of scorers that give values between 0 and 1 get the permutation test.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from agentloop.evals.records import AttemptRecord, EvalRun
from agentloop.evals.stats import Significance, mcnemar_exact, paired_permutation
from agentloop.evals.summary import scorer_names

ALPHA = 0.05
_EPS = 1e-9


@dataclass(frozen=True)
class CaseChange:
    case_id: str
    change: Literal["better", "worse", "same"]
    pass_a: float
    pass_b: float
    score_a: float
    score_b: float
    trace_a: str | None
    """The case's first attempt's trace in run A."""
    trace_b: str | None


@dataclass(frozen=True)
class Delta:
    """One aggregate, in A and B, over the cases both runs have, with a paired test."""

    metric: str
    a: float
    b: float
    delta: float
    cases: int
    test: Significance

    @property
    def significant(self) -> bool:
        return self.test.p_value < ALPHA


@dataclass(frozen=True)
class Comparison:
    label_a: str
    label_b: str
    version_a: str
    version_b: str
    path_a: str
    path_b: str
    same_dataset: bool
    cases: list[CaseChange]
    """Every paired case, changed ones first (worse, then better)."""
    deltas: list[Delta]
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    @property
    def better(self) -> list[CaseChange]:
        return [c for c in self.cases if c.change == "better"]

    @property
    def worse(self) -> list[CaseChange]:
        return [c for c in self.cases if c.change == "worse"]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["deltas"] = [
            {**asdict(d), "significant": d.significant, "alpha": ALPHA} for d in self.deltas
        ]
        data["better"] = len(self.better)
        data["worse"] = len(self.worse)
        return data


def compare(
    run_a: EvalRun | str | os.PathLike[str], run_b: EvalRun | str | os.PathLike[str]
) -> Comparison:
    """Compare run B against run A (the baseline)."""
    a = run_a if isinstance(run_a, EvalRun) else EvalRun.load(run_a)
    b = run_b if isinstance(run_b, EvalRun) else EvalRun.load(run_b)
    by_a, by_b = _by_case(a), _by_case(b)
    shared = [case for case in by_a if case in by_b]
    shared_scorers = [
        n for n in scorer_names(a.records, a.meta.scorers) if n in set(_names(b.records))
    ]
    changes = [_change(case, a, b, by_a[case], by_b[case], shared_scorers) for case in shared]
    order = {"worse": 0, "better": 1, "same": 2}
    changes.sort(key=lambda c: order[c.change])
    deltas = [_delta("pass rate", [(c.pass_a, c.pass_b) for c in changes])]
    for name in shared_scorers:
        pairs = [
            (_pass_share(by_a[c], name), _pass_share(by_b[c], name))
            for c in shared
            if _has(by_a[c], name) and _has(by_b[c], name)
        ]
        deltas.append(_delta(f"{name} pass rate", pairs))
        values = [
            (_mean_value(by_a[c], name), _mean_value(by_b[c], name))
            for c in shared
            if _has(by_a[c], name) and _has(by_b[c], name)
        ]
        if any(v not in (0.0, 1.0) for pair in values for v in pair):
            deltas.append(_delta(f"{name} mean", values, binary=False))
    return Comparison(
        label_a=a.meta.label,
        label_b=b.meta.label,
        version_a=a.meta.config_hash,
        version_b=b.meta.config_hash,
        path_a=str(a.path),
        path_b=str(b.path),
        same_dataset=a.meta.dataset_digest == b.meta.dataset_digest,
        cases=changes,
        deltas=deltas,
        only_a=[c for c in by_a if c not in by_b],
        only_b=[c for c in by_b if c not in by_a],
    )


def _by_case(run: EvalRun) -> dict[str, list[AttemptRecord]]:
    grouped: dict[str, list[AttemptRecord]] = {}
    for record in run.records:
        grouped.setdefault(record.case_id, []).append(record)
    return grouped


def _names(records: list[AttemptRecord]) -> list[str]:
    return [n for r in records for n in r.scores]


def _has(records: list[AttemptRecord], name: str) -> bool:
    return any(name in r.scores for r in records)


def _pass_share(records: list[AttemptRecord], name: str | None = None) -> float:
    if name is None:
        return statistics.fmean(r.passed for r in records)
    return statistics.fmean(r.scores[name].passed for r in records if name in r.scores)


def _mean_value(records: list[AttemptRecord], name: str) -> float:
    return statistics.fmean(r.scores[name].value for r in records if name in r.scores)


def _score(records: list[AttemptRecord], names: list[str]) -> float:
    values = [r.scores[n].value for r in records for n in names if n in r.scores]
    return statistics.fmean(values) if values else 0.0


def _change(
    case: str,
    a: EvalRun,
    b: EvalRun,
    records_a: list[AttemptRecord],
    records_b: list[AttemptRecord],
    names: list[str],
) -> CaseChange:
    pass_a, pass_b = _pass_share(records_a), _pass_share(records_b)
    score_a, score_b = _score(records_a, names), _score(records_b, names)
    if abs(pass_b - pass_a) > _EPS:
        change: Literal["better", "worse", "same"] = "better" if pass_b > pass_a else "worse"
    elif abs(score_b - score_a) > _EPS:
        change = "better" if score_b > score_a else "worse"
    else:
        change = "same"
    trace_a, trace_b = a.trace_file(records_a[0]), b.trace_file(records_b[0])
    return CaseChange(
        case_id=case,
        change=change,
        pass_a=pass_a,
        pass_b=pass_b,
        score_a=score_a,
        score_b=score_b,
        trace_a=str(trace_a) if trace_a else None,
        trace_b=str(trace_b) if trace_b else None,
    )


def _delta(metric: str, pairs: list[tuple[float, float]], *, binary: bool = True) -> Delta:
    mean_a = statistics.fmean(p[0] for p in pairs) if pairs else 0.0
    mean_b = statistics.fmean(p[1] for p in pairs) if pairs else 0.0
    if binary and all(x in (0.0, 1.0) and y in (0.0, 1.0) for x, y in pairs):
        test = mcnemar_exact(
            only_a=sum(x == 1.0 and y == 0.0 for x, y in pairs),
            only_b=sum(x == 0.0 and y == 1.0 for x, y in pairs),
        )
    else:
        test = paired_permutation([y - x for x, y in pairs])
    return Delta(metric, mean_a, mean_b, mean_b - mean_a, len(pairs), test)
