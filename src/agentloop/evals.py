"""The eval runner: run an agent on every case of a dataset, score each run, keep the results.

``evaluate`` runs cases concurrently (async, at most ``concurrency`` at once, each within
``timeout`` seconds), ``repeats`` times each. A case that fails (a model error, a limit, a
timeout, anything it raises) is recorded as an error with its reason and scores 0 on every
scorer; it never stops the others. Everything lands in a run directory::

    RUN_DIR/eval.json       what was run: dataset, agent version (config_hash), scorers
    RUN_DIR/results.jsonl   one line per finished attempt, appended and flushed as it ends
    RUN_DIR/traces/         one trace per case and attempt

Because results are a journal, an interrupted eval resumes (``resume=True``): attempts already
in ``results.jsonl`` are not run again. Summaries (``agentloop.summary``), comparisons
(``agentloop.comparison``) and re-scoring (``rescore``) read the same directory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentloop._sync import blocking
from agentloop.agent import Agent
from agentloop.datasets import Case, Dataset
from agentloop.errors import TraceError, UserError, first_problem
from agentloop.events import BaseEvent, RunCancelled, RunFailed, RunFinished, ScoreRecorded
from agentloop.models.base import Model
from agentloop.scorers import (
    Score,
    Scorer,
    ScorerError,
    apply_scorer,
    scorer_name,
    scorer_spec,
    scorers_for,
)
from agentloop.settings import USE_AGENT_DEFAULT
from agentloop.trace import (
    Trace,
    append_annotations,
    in_memory_trace,
    now_iso,
    read_trace,
    trace_path,
)

FORMAT = "agentloop.eval/1"
META_FILE = "eval.json"
RESULTS_FILE = "results.jsonl"
TRACES_DIR = "traces"
DEFAULT_ROOT = "runs"

_log = structlog.wrap_logger(
    logging.getLogger("agentloop"),
    wrapper_class=structlog.stdlib.BoundLogger,
    processors=[structlog.stdlib.render_to_log_kwargs],
)


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
    retries: list[str] = Field(default_factory=list)
    """Why earlier tries of this attempt were lost (the worker running it died); a backend
    that spreads cases over processes runs such an attempt once more elsewhere."""

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
    elapsed_s: float = 0.0
    """Seconds since this session of the eval started."""
    done_here: int = 0
    """Attempts finished in this session (``done`` also counts those resumed from disk)."""

    @property
    def rate(self) -> float:
        """Attempts finished per second in this session."""
        return self.done_here / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds until every attempt is done at the current rate (``None``: no rate yet)."""
        return (self.total - self.done) / self.rate if self.rate > 0 else None


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


async def evaluate_async(
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
    backend: Literal["local", "ray"] = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    collect_traces: bool = False,
) -> EvalRun:
    """Run ``agent`` (an ``Agent`` or an agent file) on every case of ``dataset`` (a
    ``Dataset`` or a JSONL file), ``repeats`` times, scoring each run with ``scorers``; a
    run longer than ``case_timeout`` seconds is stopped and recorded as an error.

    ``model`` replaces the agent's model. ``run_dir`` defaults to a new folder under
    ``./runs``. With ``resume=True``, ``run_dir`` must hold an earlier run of the same agent
    version on the same dataset; only its unfinished attempts run. ``progress`` is called
    after every attempt. Returns the run, read back from its directory.

    ``backend="ray"`` spreads the cases over a Ray cluster (``agentloop[ray]``; see
    ``agentloop.evals_ray``): ``agent`` must be an agent file and ``model`` a string, since
    every worker builds the agent itself; ``concurrency`` is then per worker. ``ray_address``
    (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:PORT"``; default: as ``ray.init()``),
    ``workers`` (default: one per CPU of the cluster) and ``collect_traces`` (ship traces back
    through Ray's object store instead of writing them to a folder every worker reaches)
    apply to it only.
    """
    if concurrency < 1 or repeats < 1:
        raise UserError("concurrency and repeats must be at least 1")
    if case_timeout is not None and not case_timeout > 0:
        raise UserError(f"case_timeout must be a positive number of seconds, not {case_timeout}")
    _check_backend(backend, agent, model, ray_address, workers, collect_traces)
    cases, the_agent, folder, meta = _setup(
        dataset, agent, scorers, run_dir, model, repeats, case_timeout
    )
    done = _prepare(folder, meta, resume)
    todo = [
        (case, attempt)
        for attempt in range(repeats)
        for case in cases
        if (case.id, attempt) not in done
    ]
    tally = Tally(len(cases) * repeats, done.values())
    try:
        if backend == "ray":
            from agentloop.evals_ray import run_on_ray

            assert isinstance(agent, str | os.PathLike)
            assert not isinstance(model, Model)
            await run_on_ray(
                folder=folder,
                agent=the_agent,
                agent_file=Path(agent),
                model=model,
                scorers=scorers,
                todo=todo,
                tally=tally,
                concurrency=concurrency,
                case_timeout=case_timeout,
                progress=progress,
                address=ray_address,
                workers=workers,
                collect_traces=collect_traces,
            )
        else:
            warn_if_queued(the_agent.model, concurrency)
            runner = _Runner(folder, the_agent, cases, scorers, case_timeout, progress)
            await runner.run_all(todo, concurrency, tally)
    finally:
        if the_agent is not agent:  # built here from the file: close what its model opened
            await the_agent.model.aclose()
    return EvalRun.load(folder)


def _check_backend(
    backend: str,
    agent: Agent | str | os.PathLike[str],
    model: Model | str | None,
    ray_address: str | None,
    workers: int | None,
    collect_traces: bool,
) -> None:
    if backend not in ("local", "ray"):
        raise UserError(f"backend must be 'local' or 'ray', not {backend!r}")
    if backend == "local":
        if ray_address is not None or workers is not None or collect_traces:
            raise UserError("ray_address, workers and collect_traces need backend='ray'")
        return
    if isinstance(agent, Agent):
        raise UserError(
            "backend='ray' needs an agent file, not an Agent object: every worker builds "
            "the agent from the file"
        )
    if isinstance(model, Model):
        raise UserError("backend='ray' takes model= as a model string, not a Model object")
    if workers is not None and workers < 1:
        raise UserError(f"workers must be at least 1, not {workers}")


evaluate = blocking(evaluate_async)


def _setup(
    dataset: Dataset | str | os.PathLike[str],
    agent: Agent | str | os.PathLike[str],
    scorers: Sequence[Scorer],
    run_dir: str | os.PathLike[str] | None,
    model: Model | str | None,
    repeats: int,
    case_timeout: float | None,
) -> tuple[Dataset, Agent, Path, EvalMeta]:
    """Read the dataset and the agent, check the scorers, and describe the run."""
    if isinstance(agent, Agent) and model is not None:
        raise UserError("model= replaces an agent file's model; for an Agent, set its model")
    cases = dataset if isinstance(dataset, Dataset) else Dataset.from_jsonl(dataset)
    agent_file = None if isinstance(agent, Agent) else Path(agent)
    the_agent = agent if isinstance(agent, Agent) else Agent.from_file(Path(agent), model=model)
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


def warn_if_queued(model: Model, concurrency: int) -> int:
    """Ready ``model`` for ``concurrency`` requests at once; if it serves fewer, say so (a
    warning on the ``agentloop`` logger, which the CLI prints): the rest queue, and their
    latency is mostly waiting. Returns how many it serves at once."""
    serves = model.expect_concurrency(concurrency)
    if serves < concurrency:
        _log.warning(
            f"{model.name} serves {serves} request(s) at once; with concurrency {concurrency} "
            "the other requests queue (their latency is mostly waiting)",
            model=model.name,
            serves=serves,
            concurrency=concurrency,
        )
    return serves


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


class Tally:
    """Counts finished attempts for progress reports (every backend keeps one)."""

    def __init__(self, total: int, done: Iterable[AttemptRecord]) -> None:
        self.total, self.started, self.done_here = total, time.perf_counter(), 0
        earlier = list(done)
        self.done = len(earlier)
        self.passed = sum(r.passed for r in earlier)
        self.errors = sum(r.status == "error" for r in earlier)

    def add(self, record: AttemptRecord) -> EvalProgress:
        self.done += 1
        self.done_here += 1
        self.passed += record.passed
        self.errors += record.status == "error"
        return EvalProgress(
            done=self.done,
            total=self.total,
            passed=self.passed,
            errors=self.errors,
            last=record,
            elapsed_s=time.perf_counter() - self.started,
            done_here=self.done_here,
        )


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

    async def run_all(self, todo: list[tuple[Case, int]], concurrency: int, tally: Tally) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(case: Case, attempt: int) -> None:
            async with gate:
                record = await self.attempt(case, attempt)
            self.save(record)
            progress = tally.add(record)
            if self.progress is not None:
                self.progress(progress)

        async with asyncio.TaskGroup() as group:
            for case, attempt in todo:
                group.create_task(one(case, attempt))

    def save(self, record: AttemptRecord) -> None:
        with self.results.open("a", encoding="utf-8") as f:
            f.write(record.model_dump_json() + "\n")
            f.flush()

    async def attempt(self, case: Case, attempt: int) -> AttemptRecord:
        """Run one case once and score it; whatever goes wrong becomes an error record."""
        return await run_attempt(
            self.agent, case, attempt, self.folder, self.scorers, self.timeout, eval_name=None
        )


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
    redact: Callable[[str], str] | None = None,
    eval_name: str | None = None,
) -> AttemptRecord:
    """The record of one attempt: its trace's facts and its scores, which are also appended
    to the trace (redacted with ``redact``, default patterns if not given). An attempt whose
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


# -- re-scoring ----------------------------------------------------------------------------------


async def rescore_async(
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
            fresh = not_scored(names, why)
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


rescore = blocking(rescore_async)


def results_json(run: EvalRun) -> list[dict[str, Any]]:
    """Every record as JSON, with the trace path made absolute."""
    return [
        {**json.loads(r.model_dump_json()), "trace": str(run.trace_file(r) or "") or None}
        for r in run.records
    ]
