"""The eval runner: run an agent on every case of a dataset, score each run, keep the results.

``evaluate`` runs cases concurrently (async, at most ``concurrency`` at once, each within
``timeout`` seconds), ``repeats`` times each. A case that fails (a model error, a limit, a
timeout, anything it raises) is recorded as an error with its reason and scores 0 on every
scorer; it never stops the others. Everything lands in a run directory::

    RUN_DIR/eval.json       what was run: dataset, agent version (config_hash), scorers
    RUN_DIR/results.jsonl   one line per finished attempt, appended and flushed as it ends
    RUN_DIR/traces/         one trace per case and attempt

Because results are a journal, an interrupted eval resumes (``resume=True``): attempts already
in ``results.jsonl`` are not run again. Summaries (``agentloop.evals.summary``), comparisons
(``agentloop.evals.comparison``) and re-scoring (``rescore``) read the same directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentloop._sync import blocking
from agentloop.agent import Agent
from agentloop.agentfile import load_agent
from agentloop.errors import TraceError, UserError, first_problem
from agentloop.evals.datasets import Case, Dataset
from agentloop.evals.scorers import (
    Score,
    Scorer,
    ScorerError,
    apply_scorer,
    scorer_name,
    scorer_spec,
    scorers_for,
)
from agentloop.events import BaseEvent, RunCancelled, RunFailed, RunFinished, ScoreRecorded
from agentloop.models import infer_model
from agentloop.models.base import Model
from agentloop.settings import USE_AGENT_DEFAULT
from agentloop.trace import Trace, annotate, now_iso, read_trace, trace_path

FORMAT = "agentloop.eval/1"
META_FILE = "eval.json"
RESULTS_FILE = "results.jsonl"
TRACES_DIR = "traces"
DEFAULT_ROOT = "runs"


class EvalError(UserError):
    """An eval cannot start or resume: a missing or foreign run directory, a changed agent."""


class AttemptRecord(BaseModel):
    """One attempt at one case, as ``results.jsonl`` records it."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    attempt: int
    status: Literal["ok", "error"]
    error: str | None = None
    """For an errored attempt: the error type and message."""
    reason: str | None = None
    """Why the run stopped, if not with a final answer: max_steps, model_error, timeout, ..."""
    trace: str | None = None
    """The attempt's trace, relative to the run directory."""
    output: str | None = None
    scores: dict[str, Score] = Field(default_factory=dict)
    steps: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        """Finished without error and passed every scorer."""
        return self.status == "ok" and all(s.passed for s in self.scores.values())

    @property
    def key(self) -> tuple[str, int]:
        return (self.case_id, self.attempt)


class EvalMeta(BaseModel):
    """``eval.json``: what a run directory holds results of."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    format: str = FORMAT
    created: str
    label: str
    """The agent's name in reports: its file's stem, or the agent's name."""
    config_hash: str
    agent: dict[str, Any]
    agent_file: str | None = None
    model: str | None = None
    """The model string that replaced the agent file's model, if one did."""
    model_options: dict[str, Any] = Field(default_factory=dict)
    """The backend options given with ``model`` (``native_tools``, ``prompt_form``...)."""
    dataset: str | None = None
    dataset_name: str
    dataset_digest: str
    cases: int
    repeats: int
    timeout: float | None = None
    scorers: list[str]
    scorer_specs: list[str | None]
    """How to rebuild each scorer from the command line (``None``: a Python object)."""


@dataclass(frozen=True)
class EvalProgress:
    """Where a running eval stands, after each attempt."""

    done: int
    total: int
    passed: int
    errors: int
    last: AttemptRecord


ProgressListener = Callable[[EvalProgress], None]


class EvalRun:
    """A run directory read back: its metadata and the latest record of every attempt."""

    def __init__(self, path: Path, meta: EvalMeta, records: list[AttemptRecord]) -> None:
        self.path, self.meta = path, meta
        latest = {r.key: r for r in records}
        self.records = sorted(latest.values(), key=lambda r: r.key)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EvalRun:
        folder = Path(path)
        meta_file = folder / META_FILE
        try:
            meta = EvalMeta.model_validate_json(meta_file.read_bytes())
        except OSError:
            raise EvalError(f"{folder} is not an eval run directory (no {META_FILE})") from None
        except ValidationError as exc:
            raise EvalError(f"{meta_file} is not valid: {first_problem(exc).message}") from None
        return cls(folder, meta, read_records(folder / RESULTS_FILE))

    def trace_file(self, record: AttemptRecord) -> Path | None:
        return self.path / record.trace if record.trace else None

    def read_trace(self, record: AttemptRecord) -> Trace | None:
        file = self.trace_file(record)
        if file is None:
            return None
        try:
            return read_trace(file)
        except TraceError:
            return None

    @property
    def complete(self) -> bool:
        return len(self.records) >= self.meta.cases * self.meta.repeats


def read_records(path: Path) -> list[AttemptRecord]:
    """The records in a results file; a torn last line (a killed eval) is dropped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(AttemptRecord.model_validate_json(line))
        except ValidationError:
            if number == len(lines):
                break
            raise EvalError(f"{path}:{number}: not a valid result line") from None
    return records


def write_records(path: Path, records: Sequence[AttemptRecord]) -> None:
    """Replace a results file in one step (write aside, then rename)."""
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(record.model_dump_json() + "\n")
    temporary.replace(path)


# -- running -----------------------------------------------------------------------------------


async def evaluate(
    dataset: Dataset | str | os.PathLike[str],
    agent: Agent | str | os.PathLike[str],
    *,
    scorers: Sequence[Scorer] = (),
    run_dir: str | os.PathLike[str] | None = None,
    model: Model | str | None = None,
    concurrency: int = 4,
    repeats: int = 1,
    case_timeout: float | None = None,
    resume: bool = False,
    progress: ProgressListener | None = None,
    model_options: dict[str, Any] | None = None,
) -> EvalRun:
    """Run ``agent`` (an ``Agent`` or an agent file) on every case of ``dataset`` (a
    ``Dataset`` or a JSONL file), ``repeats`` times, scoring each run with ``scorers``; a
    run longer than ``case_timeout`` seconds is stopped and recorded as an error.

    ``model`` replaces the agent's model (a model string takes ``model_options``, the
    backend's options, recorded with it for a resume). ``run_dir`` defaults to a new folder under
    ``./runs``. With ``resume=True``, ``run_dir`` must hold an earlier run of the same agent
    version on the same dataset; only its unfinished attempts run. ``progress`` is called
    after every attempt. Returns the run, read back from its directory.
    """
    if concurrency < 1 or repeats < 1:
        raise UserError("concurrency and repeats must be at least 1")
    if case_timeout is not None and not case_timeout > 0:
        raise UserError(f"case_timeout must be a positive number of seconds, not {case_timeout}")
    if model_options and not isinstance(model, str):
        raise UserError("model_options go with a model string (model='openai:...')")
    cases, the_agent, folder, meta = _setup(
        dataset, agent, scorers, run_dir, model, repeats, case_timeout, model_options or {}
    )
    done = _prepare(folder, meta, resume)
    runner = _Runner(folder, the_agent, cases, scorers, case_timeout, progress)
    todo = [
        (case, attempt)
        for attempt in range(repeats)
        for case in cases
        if (case.id, attempt) not in done
    ]
    await runner.run_all(todo, concurrency, len(cases) * repeats, done)
    return EvalRun.load(folder)


evaluate_sync = blocking(evaluate)


def _setup(
    dataset: Dataset | str | os.PathLike[str],
    agent: Agent | str | os.PathLike[str],
    scorers: Sequence[Scorer],
    run_dir: str | os.PathLike[str] | None,
    model: Model | str | None,
    repeats: int,
    case_timeout: float | None,
    model_options: dict[str, Any],
) -> tuple[Dataset, Agent, Path, EvalMeta]:
    """Read the dataset and the agent, check the scorers, and describe the run."""
    if isinstance(agent, Agent) and model is not None:
        raise UserError("model= replaces an agent file's model; for an Agent, set its model")
    cases = dataset if isinstance(dataset, Dataset) else Dataset.from_jsonl(dataset)
    agent_file = None if isinstance(agent, Agent) else Path(agent)
    replacement = infer_model(model, **model_options) if isinstance(model, str) else model
    the_agent = agent if isinstance(agent, Agent) else load_agent(Path(agent), model=replacement)
    _check_scorers(scorers, cases)
    label = agent_file.stem if agent_file is not None else the_agent.name
    folder = Path(run_dir) if run_dir is not None else _new_run_dir(label, the_agent.config_hash)
    meta = EvalMeta(
        created=now_iso(),
        label=label,
        config_hash=the_agent.config_hash,
        agent=the_agent.config(),
        agent_file=str(agent_file.resolve()) if agent_file is not None else None,
        model=model if isinstance(model, str) else None,
        model_options=model_options,
        dataset=None if isinstance(dataset, Dataset) else str(Path(dataset).resolve()),
        dataset_name=cases.name,
        dataset_digest=cases.digest,
        cases=len(cases),
        repeats=repeats,
        timeout=case_timeout,
        scorers=[scorer_name(s) for s in scorers],
        scorer_specs=[scorer_spec(s) for s in scorers],
    )
    return cases, the_agent, folder, meta


def _check_scorers(scorers: Sequence[Scorer], cases: Dataset) -> None:
    names = [scorer_name(s) for s in scorers]
    twice = {n for n in names if names.count(n) > 1}
    if twice:
        raise ScorerError(
            f"two scorers are named {sorted(twice)[0]!r}; give one another name (name=...)"
        )
    for case in cases:
        scorers_for(case, scorers)  # raises for a case naming an unknown scorer


def _new_run_dir(label: str, version: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    safe = re.sub(r"[^\w.-]", "_", label)
    base = Path(DEFAULT_ROOT) / f"{stamp}-{safe}-{version[:8]}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


def _prepare(folder: Path, meta: EvalMeta, resume: bool) -> dict[tuple[str, int], AttemptRecord]:
    """Create the run directory, or check it for a resume; the attempts already done."""
    if not resume:
        if (folder / META_FILE).exists():
            raise EvalError(f"{folder} already holds an eval; resume it or choose another folder")
        (folder / TRACES_DIR).mkdir(parents=True, exist_ok=True)
        (folder / META_FILE).write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return {}
    before = EvalRun.load(folder)
    if before.meta.config_hash != meta.config_hash:
        raise EvalError(
            f"{folder} was run with agent version {before.meta.config_hash}, this agent is "
            f"{meta.config_hash}; resuming would mix two agents (start a new eval instead)"
        )
    if before.meta.dataset_digest != meta.dataset_digest:
        raise EvalError(f"{folder} was run on a different dataset (its cases changed)")
    if before.meta.repeats != meta.repeats:
        raise EvalError(f"{folder} was run with repeats={before.meta.repeats}")
    (folder / TRACES_DIR).mkdir(parents=True, exist_ok=True)
    # Rewrite the journal without a torn last line, so new lines do not glue onto it.
    write_records(folder / RESULTS_FILE, before.records)
    return {r.key: r for r in before.records}


class _Runner:
    def __init__(
        self,
        folder: Path,
        agent: Agent,
        cases: Dataset,
        scorers: Sequence[Scorer],
        timeout: float | None,
        progress: ProgressListener | None,
    ) -> None:
        self.folder, self.agent, self.cases = folder, agent, cases
        self.scorers, self.timeout, self.progress = scorers, timeout, progress
        self.results = folder / RESULTS_FILE

    async def run_all(
        self,
        todo: list[tuple[Case, int]],
        concurrency: int,
        total: int,
        done: dict[tuple[str, int], AttemptRecord],
    ) -> None:
        gate = asyncio.Semaphore(concurrency)
        counts = {
            "done": len(done),
            "passed": sum(r.passed for r in done.values()),
            "errors": sum(r.status == "error" for r in done.values()),
        }

        async def one(case: Case, attempt: int) -> None:
            async with gate:
                record = await self.attempt(case, attempt)
            self.save(record)
            counts["done"] += 1
            counts["passed"] += record.passed
            counts["errors"] += record.status == "error"
            if self.progress is not None:
                self.progress(EvalProgress(last=record, total=total, **counts))

        async with asyncio.TaskGroup() as group:
            for case, attempt in todo:
                group.create_task(one(case, attempt))

    def save(self, record: AttemptRecord) -> None:
        with self.results.open("a", encoding="utf-8") as f:
            f.write(record.model_dump_json() + "\n")
            f.flush()

    async def attempt(self, case: Case, attempt: int) -> AttemptRecord:
        """Run one case once and score it; whatever goes wrong becomes an error record."""
        run_ids: list[str] = []

        def first_event(event: BaseEvent) -> None:
            if not run_ids:
                run_ids.append(event.run_id)

        traces = self.folder / TRACES_DIR
        error: Exception | None = None
        try:
            await self.agent.run(
                case.input,
                trace_dir=traces,
                metadata={
                    "eval": self.folder.name,
                    "case_id": case.id,
                    "attempt": attempt,
                    **({"case": case.metadata} if case.metadata else {}),
                },
                listener=first_event,
                run_timeout=self.timeout if self.timeout is not None else USE_AGENT_DEFAULT,
            )
        except Exception as exc:
            error = exc
        path = trace_path(traces, run_ids[0]) if run_ids else None
        trace = _read(path)
        return await score_attempt(case, attempt, trace, self.folder, self.scorers, error)


def _read(path: Path | None) -> Trace | None:
    if path is None:
        return None
    try:
        return read_trace(path)
    except TraceError:
        return None


async def score_attempt(
    case: Case,
    attempt: int,
    trace: Trace | None,
    folder: Path,
    scorers: Sequence[Scorer],
    error: BaseException | None = None,
) -> AttemptRecord:
    """The record of one attempt: its trace's facts and its scores. An attempt whose run did
    not finish with an answer is an error, and every scorer gives it 0."""
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
            scores=_not_scored(names, message),
            **facts,
        )
    scores = [await apply_scorer(s, case, trace) for s in scorers_for(case, scorers)]
    if trace is not None and trace.path is not None:
        for score in scores:  # the verdicts travel with the run (export filters on them)
            annotate(
                trace.path,
                ScoreRecorded,
                scorer=score.scorer,
                value=score.value,
                passed=score.passed,
                explanation=score.explanation,
                eval_run=folder.name,
            )
    return AttemptRecord(
        case_id=case.id,
        attempt=attempt,
        status="ok",
        trace=relative,
        output=end.output,
        scores=dict(zip(names, scores, strict=True)),
        **facts,
    )


def _not_scored(names: list[str], message: str) -> dict[str, Score]:
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


# -- re-scoring ----------------------------------------------------------------------------------


async def rescore(
    run_dir: str | os.PathLike[str],
    scorers: Sequence[Scorer],
    *,
    dataset: Dataset | str | os.PathLike[str] | None = None,
    replace: bool = False,
) -> EvalRun:
    """Score a finished eval's recorded traces again, with no model calls.

    New scorers are added and same-named ones replaced; ``replace=True`` drops the old scores
    altogether. The dataset is read from where the eval recorded it unless given (cases carry
    ``expected`` and per-case settings). Errored attempts stay errors.
    """
    run = EvalRun.load(run_dir)
    source = dataset if dataset is not None else run.meta.dataset
    if source is None:
        raise EvalError(f"{run_dir} does not record its dataset's path; pass the dataset")
    cases = source if isinstance(source, Dataset) else Dataset.from_jsonl(source)
    _check_scorers(scorers, cases)
    updated: list[AttemptRecord] = []
    for record in run.records:
        case = cases.get(record.case_id)
        if case is None:
            raise EvalError(f"case {record.case_id!r} is not in the dataset any more")
        trace = run.read_trace(record) if record.status == "ok" else None
        if trace is None:
            names = [scorer_name(s) for s in scorers_for(case, scorers)]
            why = record.error or f"its trace {record.trace} cannot be read"
            fresh = _not_scored(names, why)
        else:
            fresh = (await score_attempt(case, record.attempt, trace, run.path, scorers)).scores
        kept = {**({} if replace else record.scores), **fresh}
        updated.append(record.model_copy(update={"scores": kept}))
    write_records(run.path / RESULTS_FILE, updated)
    names = [scorer_name(s) for s in scorers]
    specs = [scorer_spec(s) for s in scorers]
    old = [] if replace else list(zip(run.meta.scorers, run.meta.scorer_specs, strict=True))
    merged = [(n, s) for n, s in old if n not in names] + list(zip(names, specs, strict=True))
    meta = run.meta.model_copy(
        update={"scorers": [n for n, _ in merged], "scorer_specs": [s for _, s in merged]}
    )
    (run.path / META_FILE).write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return EvalRun.load(run.path)


rescore_sync = blocking(rescore)


def results_json(run: EvalRun) -> list[dict[str, Any]]:
    """Every record as JSON, with the trace path made absolute."""
    return [
        {**json.loads(r.model_dump_json()), "trace": str(run.trace_file(r) or "") or None}
        for r in run.records
    ]
