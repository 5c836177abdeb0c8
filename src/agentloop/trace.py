"""Traces: the append-only JSONL journal of a run, and reading one back.

Line 1 is a ``TraceHeader`` (format version, run id, the agent's configuration and its
``config_hash``, the task); every later line is one event (``agentloop.events``), redacted and
handed to the operating system before the run waits on anything (a model, a tool, a hook), in
one unbuffered write for the lines made since the last wait. A killed process leaves a
readable prefix: ``read_trace`` drops a torn last line. Only JSON is ever read; nothing
in a trace can run code.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentloop.errors import TraceError, TraceFormatError, first_problem
from agentloop.events import (
    ANNOTATION_TYPES,
    TERMINAL_TYPES,
    BaseEvent,
    CritiqueRecorded,
    Event,
    EventAdapter,
    EventListener,
    FeedbackRecorded,
    ModelResponded,
    RunFinished,
    ScoreRecorded,
    ToolCallRequested,
    ToolResultRecorded,
    ToolsChanged,
    json_line,
)
from agentloop.messages import Message
from agentloop.redaction import Redactor, default_redactor
from agentloop.regular_files import NotRegularFile, open_regular

FORMAT_NAME = "agentloop.trace"
FORMAT_VERSION = 1
FORMAT = f"{FORMAT_NAME}/{FORMAT_VERSION}"
_FORMAT_RE = re.compile(rf"^{re.escape(FORMAT_NAME)}/(\d+)\Z")
MAX_LINE_BYTES = 64 * 1024 * 1024
"""The longest line ``read_trace`` accepts; a longer one is a ``TraceError``. agentloop's own
lines stay far below it (tool results are cut at ``max_output_chars``; each ``model_request``
holds only the new messages)."""


class TraceHeader(BaseModel):
    """The first line of every trace."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    format: str = FORMAT
    run_id: str
    created: str
    """UTC time the run started, ISO 8601."""
    task: str
    agent: dict[str, Any]
    """The agent's configuration: model, instructions, settings, limits, tool schemas."""
    config_hash: str
    """The agent's version: a hash of ``agent`` plus each tool's source."""
    agentloop_version: str = ""
    parent: dict[str, Any] | None = None
    """For a replay, fork or resume: which run it came from and at which step."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    conversation: dict[str, Any] | None = None
    """For a turn of a conversation: ``id``, ``turn`` (from 0) and ``previous_run_id``."""
    deps_type: str | None = None
    """The type name of the run's ``deps`` (the value itself is never written)."""


RunObserver: TypeAlias = Callable[[TraceHeader], EventListener]
"""Called as a run starts, with the header its trace begins with; returns a listener for the
run's events (the OpenTelemetry integration's span writer is one)."""


class TraceWriter:
    """Appends one redacted JSON line per event, so the file is always a valid prefix of the
    run.

    ``write`` hands a line to the operating system at once. ``add`` keeps it until ``flush``:
    a run adds the events of a stretch of work that never waits and flushes before it waits on
    a model, a tool or a hook, so what a killed process leaves still holds every event up to
    the wait it died in, at one ``write`` per wait instead of one per event. An append a
    millisecond or more after the last one costs 10-20 µs on this machine's disk (1 µs back
    to back): the file's times are dirtied again and the caches are cold. A step has four
    events and two waits.

    The file is unbuffered and each flush goes out in one ``write`` of its bytes: the same
    guarantee as a buffered write plus ``flush``, without a text layer to copy through.
    """

    def __init__(self, path: Path, header: TraceHeader, redact: Redactor) -> None:
        self.path = path
        self._redact = redact
        self._pending: list[str] = []
        try:
            self._file: io.FileIO | None = io.FileIO(path, "x")
        except FileNotFoundError:  # the folder is made on first use, not checked every run
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = io.FileIO(path, "x")
        self.write(header)

    def add(self, event: BaseModel) -> None:
        """Keep ``event``'s line for the next ``flush`` (serialized now, as it is now)."""
        self.add_line(json_line(event))

    def add_line(self, line: str) -> None:
        """Keep an event's JSON line, as ``model_dump_json`` gives it, for the next ``flush``."""
        if self._file is None:
            raise TraceError(f"trace {self.path} is already closed")
        self._pending.append(line)

    def flush(self) -> None:
        """Redact the lines added since the last flush and append them, in one unbuffered
        write (checked for secrets together: one check for the usual clean lines)."""
        if not self._pending or self._file is None:
            return
        lines, self._pending = self._pending, []  # taken first: a failed write is not repeated
        _write_all(self._file, self._redact.lines(lines).encode())

    def write(self, event: BaseModel) -> None:
        """Append ``event`` (after any lines added before it) now."""
        self.add(event)
        self.flush()

    def close(self) -> None:
        """Flush what was added, then close the file; safe to call twice.

        Every flushed line was handed to the operating system, which is what survives a killed
        process. There is deliberately no fsync: it costs milliseconds per run and only guards
        against the whole machine going down.
        """
        if self._file is not None:
            try:
                self.flush()
            finally:
                self._file.close()
                self._file = None


def _write_all(file: io.FileIO, data: bytes) -> None:
    """Write every byte: a raw write may take fewer than it was given."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        view = view[written or 0 :]


class Trace(BaseModel):
    """A trace read back from disk."""

    model_config = ConfigDict(frozen=True)

    path: Path | None = None
    header: TraceHeader
    events: list[Event]
    torn: bool = False
    """The last line was incomplete (the writing process died mid-line) and was dropped."""

    @property
    def run_id(self) -> str:
        return self.header.run_id

    @property
    def terminal(self) -> Event | None:
        """The run's terminal event, or ``None`` if the run never finished (a crash)."""
        for event in reversed(self.events):
            if event.type not in ANNOTATION_TYPES:
                return event if event.type in TERMINAL_TYPES else None
        return None

    def critiques(self) -> list[CritiqueRecorded]:
        return [e for e in self.events if isinstance(e, CritiqueRecorded)]

    def feedback(self) -> list[FeedbackRecorded]:
        return [e for e in self.events if isinstance(e, FeedbackRecorded)]

    def scores(self) -> list[ScoreRecorded]:
        return [e for e in self.events if isinstance(e, ScoreRecorded)]

    @property
    def output(self) -> str | None:
        end = self.terminal
        return end.output if isinstance(end, RunFinished) else None

    @property
    def steps(self) -> int:
        """How many model responses the trace records."""
        return sum(1 for e in self.events if isinstance(e, ModelResponded))

    def tool_calls(self) -> list[ToolCallRequested]:
        return [e for e in self.events if isinstance(e, ToolCallRequested)]

    def tool_results(self) -> list[ToolResultRecorded]:
        return [e for e in self.events if isinstance(e, ToolResultRecorded)]

    def tools(self) -> list[dict[str, Any]]:
        """Every tool the run offered at some step (header ``agent.tools`` entries): those it
        started with, then those a source added mid-run (``tools_changed``); a tool offered
        with a new schema appears with its latest one."""
        offered = {str(t["name"]): t for t in self.header.agent.get("tools", [])}
        for event in self.events:
            if isinstance(event, ToolsChanged):
                offered.update((str(t["name"]), t) for t in event.tools)
        return list(offered.values())

    def messages(self) -> list[Message]:
        """The conversation: every message the model was sent, plus its last response."""
        out: list[Message] = []
        last: Message | None = None
        for event in self.events:
            if event.type == "model_request":
                out.extend(event.messages)  # includes the previous response's message
                last = None
            elif event.type == "model_response" and (
                event.response.text or event.response.tool_calls
            ):
                last = event.response.to_message()
        return [*out, last] if last is not None else out


def annotate(
    path: str | os.PathLike[str],
    event_type: type[BaseEvent],
    *,
    redact: Redactor | None = None,
    **fields: Any,
) -> BaseEvent:
    """Append an annotation (a critique, feedback or score event) to a finished trace.

    The event gets the run's id, its last step and the next sequence number, and its values are
    redacted before it is written: by ``redact``, else by the process's redactor (default
    patterns and every secret registered with ``register_secrets``, which ``Agent`` does).
    A trace whose last line is torn cannot be appended to, since the new line would join the
    broken one. A caller that holds the trace already (the eval runner) uses
    ``append_annotations`` and skips reading it.
    """
    trace = read_trace(path)
    if trace.torn:
        raise TraceError(f"{path}: the last line is torn (a crashed write); cannot append to it")
    return append_annotations(trace, [(event_type, fields)], redact=redact)[0]


def append_annotations(
    trace: Trace,
    annotations: Sequence[tuple[type[BaseEvent], dict[str, Any]]],
    *,
    redact: Redactor | None = None,
) -> list[BaseEvent]:
    """Append annotations after the last event of ``trace`` (read back, or held in memory by
    whoever wrote it), in one write, without reading the file again.

    Each event gets the run's id, the last step and the next sequence number; its values are
    redacted (by ``redact``, else the process's redactor) before it is written.
    """
    if trace.path is None:
        raise TraceError("this trace has no file to append annotations to")
    last = trace.events[-1] if trace.events else None
    step, seq = (last.step, last.seq + 1) if last is not None else (0, 0)
    redact = redact or default_redactor()
    events = [
        event_type(run_id=trace.run_id, step=step, seq=seq + number, ts=time.time(), **fields)
        for number, (event_type, fields) in enumerate(annotations)
    ]
    if not events:
        return events
    with trace.path.open("a", encoding="utf-8") as file:
        file.write(redact.lines([json_line(event) for event in events]))
    return events


def in_memory_trace(path: Path, events: Sequence[BaseEvent]) -> Trace:
    """The trace of a run that just ended, from the events its listener saw and the header
    line of its file: what ``read_trace`` would return, without reading and validating every
    event again. The events are the run's own (not yet redacted) objects."""
    with path.open("rb") as file:
        header = parse_header(path, file.readline())
    held = cast("list[Event]", list(events))  # the run emits only Event types
    return Trace.model_construct(path=path, header=header, events=held, torn=False)


def trace_path(trace_dir: Path, run_id: str) -> Path:
    return trace_dir / f"{run_id}.jsonl"


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """Read a trace file. A torn last line is dropped (``Trace.torn``); anything else that is
    not a trace raises ``TraceError``; a newer format raises ``TraceFormatError``."""
    file = Path(path)
    data = _read_regular(file)
    lines = data.split(b"\n")
    torn = False
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        torn = True  # no final newline: the last line may be cut; try it, drop it if broken
    if not lines:
        raise TraceError(f"{file} is empty, not an agentloop trace")
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_BYTES:
            raise TraceError(
                f"{file}:{number}: a line of {len(line) // 2**20} MiB, more than the "
                f"{MAX_LINE_BYTES // 2**20} MiB a trace line may hold; not a trace agentloop wrote"
            )
    header = parse_header(file, lines[0])
    events: list[Event] = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            events.append(EventAdapter.validate_json(line))
        except (ValidationError, RecursionError) as exc:
            if torn and number == len(lines):
                break
            problem = first_problem(exc) if isinstance(exc, ValidationError) else "nested too deep"
            raise TraceError(f"{file}:{number}: not a valid trace event: {problem}") from None
    else:
        torn = False
    return Trace(path=file, header=header, events=events, torn=torn)


def read_header(path: str | os.PathLike[str]) -> TraceHeader:
    """Only a trace's first line, its header: what a listing needs, without reading the events."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            line = handle.readline()
    except OSError as exc:
        raise TraceError(f"cannot read trace {file}: {exc.strerror}") from None
    if not line.strip():
        raise TraceError(f"{file} is empty, not an agentloop trace")
    return parse_header(file, line)


def iter_trace_files(trace_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Trace files in a folder, newest first."""
    folder = Path(trace_dir)
    if not folder.is_dir():
        return iter(())
    files = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
    return iter(files)


def _read_regular(file: Path) -> bytes:
    """The bytes of ``file``, which must be a regular file: opened without blocking, so a FIFO
    or a device named ``*.jsonl`` in a folder of traces cannot hang a command."""
    try:
        fd = open_regular(file, os.O_RDONLY)
    except NotRegularFile:
        raise TraceError(f"{file} is not a regular file; not an agentloop trace") from None
    except OSError as exc:
        raise TraceError(f"cannot read trace {file}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        try:
            return handle.read()
        except OSError as exc:
            raise TraceError(f"cannot read trace {file}: {exc.strerror}") from None


def parse_header(file: Path, line: bytes) -> TraceHeader:
    """The header on a trace's first line; ``TraceError`` if it is not one, ``TraceFormatError``
    if its format is newer than this agentloop reads."""
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError):
        raise TraceError(
            f"{file}: line 1 is not JSON (or is nested too deep); not an agentloop trace"
        ) from None
    fmt = raw.get("format") if isinstance(raw, dict) else None
    match = _FORMAT_RE.match(fmt) if isinstance(fmt, str) else None
    if match is None:
        raise TraceError(f"{file}: no '{FORMAT_NAME}/N' format on line 1; not an agentloop trace")
    if int(match.group(1)) > FORMAT_VERSION:
        raise TraceFormatError(
            f"{file} uses {fmt}, newer than this agentloop reads ({FORMAT}); upgrade agentloop"
        )
    try:
        return TraceHeader.model_validate(raw)
    except RecursionError:
        raise TraceError(f"{file}: invalid trace header: nested too deep") from None
    except ValidationError as exc:
        raise TraceError(f"{file}: invalid trace header: {first_problem(exc)}") from None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id() -> str:
    """Sortable and unique: UTC time plus random hex."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(4).hex()
