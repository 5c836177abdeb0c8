"""An eval's run directory and its journal: what was run (``eval.json``), one record per
finished attempt (``results.jsonl``, appended as each ends), reading them back (``EvalRun``),
and the progress reports every backend gives while it fills them.

    RUN_DIR/eval.json       what was run: dataset, agent version (config_hash), scorers
    RUN_DIR/results.jsonl   one line per finished attempt, appended and flushed as it ends
    RUN_DIR/traces/         one trace per case and attempt
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentloop.errors import TraceError, UserError, first_problem
from agentloop.evals.scorers import Score
from agentloop.events import json_line
from agentloop.trace import Trace, read_trace

FORMAT = "agentloop.eval/1"
META_FILE = "eval.json"
RESULTS_FILE = "results.jsonl"
TRACES_DIR = "traces"


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


class Journal:
    """``results.jsonl`` opened for the length of an eval: each record is appended as one
    unbuffered write of its whole line, so a killed eval leaves every finished record."""

    def __init__(self, folder: Path) -> None:
        self._file = io.FileIO(folder / RESULTS_FILE, "a")

    def append(self, record: AttemptRecord) -> None:
        data = memoryview((json_line(record) + "\n").encode())
        while data:
            data = data[self._file.write(data) or 0 :]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_records(path: Path, records: Sequence[AttemptRecord]) -> None:
    """Replace a results file in one step (write aside, then rename)."""
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json_line(record) + "\n")
    temporary.replace(path)


def results_json(run: EvalRun) -> list[dict[str, Any]]:
    """Every record as JSON, with the trace path made absolute."""
    return [
        {**json.loads(json_line(r)), "trace": str(run.trace_file(r) or "") or None}
        for r in run.records
    ]


# -- progress ----------------------------------------------------------------------------------


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
