"""One page of one run, read straight from its trace: the steps on the page, in full, plus how
the run ended and what was said about it afterwards.

A trace with 10,000 steps must open in well under a second, so a page does not validate every
event: each line's step number is read from its first bytes (pydantic writes ``run_id``,
``step``, ``seq``, ``ts`` and ``type`` first), and only the lines of the steps shown, plus the
terminal event and the annotations after it, are parsed into events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agentloop import trace as trace_module
from agentloop.errors import TraceError
from agentloop.events import (
    ANNOTATION_TYPES,
    TERMINAL_TYPES,
    CritiqueRecorded,
    Event,
    EventAdapter,
    FeedbackRecorded,
    ModelRequested,
    ModelResponded,
    RunWarned,
    ScoreRecorded,
    ToolCallRequested,
    ToolResultRecorded,
    ToolsChanged,
)
from agentloop.trace import TraceHeader, parse_header

STEPS_PER_PAGE = 50
_STEP = re.compile(rb'"step":\s*(\d+)')
_TYPE = re.compile(rb'"type":\s*"([a-z_]+)"')


@dataclass
class CallView:
    """A tool call and what came of it."""

    call: ToolCallRequested
    result: ToolResultRecorded | None = None


@dataclass
class StepView:
    """Everything the trace records for one step, and the annotations that name it."""

    index: int
    request: ModelRequested | None = None
    response: ModelResponded | None = None
    calls: list[CallView] = field(default_factory=list)
    warnings: list[RunWarned] = field(default_factory=list)
    tools_changed: list[ToolsChanged] = field(default_factory=list)
    """Tool lists a source changed before this step's request."""
    other: list[Event] = field(default_factory=list)
    """Events with no place above: a terminal event that happened in this step."""
    feedback: list[FeedbackRecorded] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    """Problems a critique found at this step (its ``problems`` entries)."""


@dataclass
class RunPage:
    header: TraceHeader
    steps: list[StepView]
    step_count: int
    page: int
    pages: int
    terminal: Event | None
    feedback: list[FeedbackRecorded]
    """Feedback about the run as a whole."""
    critiques: list[CritiqueRecorded]
    scores: list[ScoreRecorded]
    torn: bool
    lines: int
    """Lines in the file when read (live mode asks for more than this)."""
    size: int


def line_count(path: Path) -> int:
    with path.open("rb") as file:
        return sum(1 for _ in file)


def load_run_page(path: Path, page: int = 1, per_page: int = STEPS_PER_PAGE) -> RunPage:
    """Page ``page`` (from 1; past the end shows the last) of the run in ``path``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror}") from None
    lines = data.split(b"\n")
    torn = bool(lines) and lines[-1] != b""
    if not torn:
        lines.pop()
    if not lines or not lines[0].strip():
        raise TraceError(f"{path} is empty, not an agentloop trace")
    limit = trace_module.MAX_LINE_BYTES
    if any(len(line) > limit for line in lines):
        raise TraceError(
            f"{path} has a line over {limit // 2**20} MiB; not a trace agentloop wrote"
        )
    header = parse_header(path, lines[0])
    body = lines[1:]
    tail = _tail(body)
    end = len(body) - len(tail)
    step_of = [
        _step(line, torn and number == len(body) - 1) for number, line in enumerate(body[:end])
    ]
    step_count = max(step_of, default=-1) + 1
    pages = max(1, -(-step_count // per_page))
    page = min(max(page, 1), pages)
    first, last = (page - 1) * per_page, page * per_page
    steps = {i: StepView(i) for i in range(first, min(last, step_count))}
    terminal = None
    for number, (line, step) in enumerate(zip(body[:end], step_of, strict=True)):
        if first <= step < last:
            event = _parse(line, torn and number == len(body) - 1)
            if event is not None:
                _place(steps[step], event)
                if event.type in TERMINAL_TYPES:
                    terminal = event
    for event in tail:
        if event.type in TERMINAL_TYPES:
            terminal = event
            if event.step in steps:
                steps[event.step].other.append(event)
    run_feedback: list[FeedbackRecorded] = []
    critiques = [e for e in tail if isinstance(e, CritiqueRecorded)]
    for event in tail:
        if isinstance(event, FeedbackRecorded):
            if event.about_step is None:
                run_feedback.append(event)
            elif event.about_step in steps:
                steps[event.about_step].feedback.append(event)
    for critique in critiques:
        problems = critique.critique.get("problems")
        for problem in problems if isinstance(problems, list) else []:
            if isinstance(problem, dict) and problem.get("step") in steps:
                steps[problem["step"]].problems.append(problem)
    return RunPage(
        header=header,
        steps=list(steps.values()),
        step_count=step_count,
        page=page,
        pages=pages,
        terminal=terminal,
        feedback=run_feedback,
        critiques=critiques,
        scores=[e for e in tail if isinstance(e, ScoreRecorded)],
        torn=torn,
        lines=len(lines),
        size=len(data),
    )


def _tail(body: list[bytes]) -> list[Event]:
    """The terminal event and the annotations after it, read from the end backwards."""
    found: list[Event] = []
    for number in range(len(body) - 1, -1, -1):
        kind = _TYPE.search(body[number], 0, 400)
        name = kind.group(1).decode() if kind else ""
        if name not in ANNOTATION_TYPES and name not in TERMINAL_TYPES:
            break
        event = _parse(body[number], number == len(body) - 1)
        if event is None:
            break
        found.append(event)
        if name in TERMINAL_TYPES:
            break
    return found[::-1]


def _step(line: bytes, last: bool) -> int:
    """The step a line belongs to, by pattern; a line without one is parsed, so one that is
    not an event raises (or, a torn last line, counts as no step: -1)."""
    found = _STEP.search(line, 0, 400)
    if found:
        return int(found.group(1))
    event = _parse(line, last)
    return event.step if event is not None else -1


def _parse(line: bytes, last: bool) -> Event | None:
    try:
        event: Event = EventAdapter.validate_json(line)
    except ValidationError:
        if last:
            return None  # a torn last line: the writer is mid-line or died there
        raise TraceError("a trace line is not a valid event") from None
    return event


def _place(step: StepView, event: Event) -> None:
    if isinstance(event, ModelRequested):
        step.request = event
    elif isinstance(event, ModelResponded):
        step.response = event
    elif isinstance(event, ToolCallRequested):
        step.calls.append(CallView(event))
    elif isinstance(event, ToolResultRecorded):
        for view in step.calls:
            if view.call.call_id == event.call_id and view.result is None:
                view.result = event
                return
        step.other.append(event)
    elif isinstance(event, RunWarned):
        step.warnings.append(event)
    elif isinstance(event, ToolsChanged):
        step.tools_changed.append(event)
    else:
        step.other.append(event)
