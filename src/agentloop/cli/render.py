"""Text for a terminal: run events as progress lines, traces as a step-by-step view (with the
scores, critiques and feedback appended to them) or a list, run results as JSON.

Part of the CLI layer (only ``agentloop.cli`` imports it). Everything here returns strings and
prints nothing. Every piece of text that came from a model, a tool or a trace file goes through
``escape`` first, so tool output holding ANSI escapes or a carriage return cannot rewrite the
terminal (reliability case S18).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from agentloop.events import (
    BaseEvent,
    CritiqueRecorded,
    FeedbackRecorded,
    ModelRequested,
    ModelResponded,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunWarned,
    ScoreRecorded,
    ToolCallRequested,
    ToolResultRecorded,
    ToolsChanged,
)
from agentloop.feedback.signals import feedback_counts
from agentloop.messages import Usage
from agentloop.result import RunResult
from agentloop.terminal import escape
from agentloop.trace import Trace

PROGRESS_LIMIT = 300
"""Characters of model text or tool output shown per item while a run is going."""
SHOW_LIMIT = 2000
"""Characters shown per item by ``agentloop traces show`` (``--full`` shows everything)."""
TASK_WIDTH = 50
"""Characters of the task's first line in ``agentloop traces list``."""
INDENT = "    "


def clip(text: str, limit: int | None) -> str:
    """Escape ``text`` and cut it to ``limit`` characters, saying how much was left out."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + f" ... [{len(text) - limit} more chars]"
    return escape(text)


def one_line(text: str, limit: int | None) -> str:
    """``clip`` with line breaks shown as ``\\n``, for values that must stay on one line."""
    return clip(text, limit).replace("\n", "\\n")


def block(label: str, text: str, limit: int | None, indent: str = INDENT) -> list[str]:
    """``label: text`` with the text's later lines indented under it."""
    first, *rest = clip(text, limit).split("\n")
    return [f"{indent}{label}: {first}", *(f"{indent}{INDENT}{line}" for line in rest)]


def usage_text(usage: Usage) -> str:
    return f"{usage.input_tokens} in / {usage.output_tokens} out tokens"


def usage_json(usage: Usage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def result_json(result: RunResult) -> dict[str, Any]:
    """A run's result as ``agentloop run --json`` prints it."""
    return {
        "output": result.output,
        "stop_reason": result.stop_reason,
        "steps": result.steps,
        "tool_calls": result.tool_calls,
        "usage": usage_json(result.usage),
        "duration_s": round(result.duration_s, 3),
        "trace_path": str(result.trace_path) if result.trace_path is not None else None,
        "run_id": result.run_id,
        "config_hash": result.config_hash,
    }


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- events ------------------------------------------------------------------------------------


def event_lines(event: BaseEvent, limit: int | None = PROGRESS_LIMIT) -> list[str]:
    """The lines that describe one event (none for events not worth a line).

    Steps are numbered from 0, as in the trace, in replay reports and in ``--fork-at``.
    """
    if isinstance(event, ModelRequested):
        return [f"step {event.step}"]
    if isinstance(event, ModelResponded):
        return _response_lines(event, limit)
    if isinstance(event, ToolCallRequested):
        status = "" if event.valid else f"  (rejected: {escape(event.rejection or 'invalid')})"
        args = one_line(event.raw_arguments, limit)
        return [
            f"{INDENT}call {one_line(event.name, 64)} {args}  [{escape(event.call_id)}]{status}"
        ]
    if isinstance(event, ToolResultRecorded):
        return _result_lines(event, limit)
    if isinstance(event, RunWarned):
        return [f"{INDENT}warning ({escape(event.kind)}): {one_line(event.message, limit)}"]
    if isinstance(event, ToolsChanged):
        return [_tools_changed_line(event, limit)]
    if isinstance(event, RunFinished | RunFailed | RunCancelled):
        return terminal_lines(event, limit)
    return []


def _tools_changed_line(event: ToolsChanged, limit: int | None) -> str:
    """``tools changed (source): +added -removed, N tools now``; the names are the source's."""
    names = [*(f"+{n}" for n in event.added), *(f"-{n}" for n in event.removed)]
    names += [f"left out {n}" for n in event.left_out]
    what = one_line(" ".join(names), limit) if names else "the same names"
    now = plural(len(event.tools), "tool")
    return f"{INDENT}tools changed ({one_line(event.source, 64)}): {what}, {now} from it now"


def _response_lines(event: ModelResponded, limit: int | None) -> list[str]:
    response = event.response
    lines = [
        f"{INDENT}retry {a.attempt}: {one_line(a.error, limit)}"
        + (f" (HTTP {a.status})" if a.status and f"HTTP {a.status}" not in a.error else "")
        + f", waited {a.delay_s:.1f} s"
        for a in response.attempts
    ]
    timing = f"{response.latency_ms:.0f} ms, " if response.latency_ms is not None else ""
    facts = f"({timing}{usage_text(response.usage)})"
    if response.text:
        lines += block(f"model {facts}", response.text, limit)
    elif response.tool_calls:
        lines.append(f"{INDENT}model {facts}: {plural(len(response.tool_calls), 'tool call')}")
    else:
        reason = escape(str(response.finish_reason))
        lines.append(f"{INDENT}model {facts}: empty response (finish_reason={reason})")
    return lines


def _result_lines(event: ToolResultRecorded, limit: int | None) -> list[str]:
    name = one_line(event.name, 64)
    took = f"{event.duration_ms:.1f} ms"
    if event.error:
        label = f"result {name} FAILED {event.error} ({took})"
    else:
        label = f"result {name} ({took})"
    if event.truncated_from is not None:
        label += f" [cut from {event.truncated_from} chars]"
    lines = block(label, event.content, limit)
    if event.exception:
        exc_lines = event.exception.strip().splitlines()
        shown = exc_lines if limit is None else exc_lines[-1:]
        lines += block("exception", "\n".join(shown), limit, indent=INDENT * 2)
    return lines


def terminal_lines(event: RunFinished | RunFailed | RunCancelled, limit: int | None) -> list[str]:
    """How a run ended: the answer, or the reason and error, then its totals."""
    totals = (
        f"{plural(event.steps, 'step')}, {plural(event.tool_calls, 'tool call')}, "
        f"{usage_text(event.usage)}, {event.duration_s:.2f} s"
    )
    if isinstance(event, RunFinished):
        lines = [f"finished: {totals}", *block("output", event.output, limit)]
    elif isinstance(event, RunFailed):
        lines = [f"failed ({escape(event.reason)}): {totals}"]
        lines += block(escape(event.error_type), event.message, limit)
        lines += [
            f"{INDENT}attempt {a.attempt}: {one_line(a.error, limit)}" for a in event.attempts
        ]
    else:
        lines = [f"cancelled: {totals}"]
        if event.interrupted_calls:
            calls = ", ".join(escape(c) for c in event.interrupted_calls)
            lines.append(f"{INDENT}interrupted calls: {calls}")
    return lines


# -- traces ------------------------------------------------------------------------------------


def trace_status(trace: Trace) -> str:
    """finished, failed, cancelled, or incomplete (no terminal event: the process died)."""
    end = trace.terminal
    if isinstance(end, RunFinished):
        return "finished"
    if isinstance(end, RunFailed):
        return "failed"
    if isinstance(end, RunCancelled):
        return "cancelled"
    return "incomplete"


def _lineage(trace: Trace) -> str:
    """``[replay of RUN] ``, ``[fork of RUN at step K] `` or ``[resume of RUN] ``, if any."""
    parent = trace.header.parent or {}
    kind, run = parent.get("kind"), parent.get("run_id")
    if not kind or not run:
        return ""
    at = f" at step {parent['step']}" if kind == "fork" and parent.get("step") is not None else ""
    return f"[{kind} of {run}{at}] "


def model_name(trace: Trace) -> str:
    model = trace.header.agent.get("model")
    if isinstance(model, dict):
        return str(model.get("name", "?"))
    return str(model or "?")


@dataclass(frozen=True)
class TraceSummary:
    """One trace as ``agentloop traces list`` shows it (and prints with ``--json``)."""

    run_id: str
    path: str
    created: str
    status: str
    reason: str | None
    steps: int
    tool_calls: int
    model: str
    task: str
    config_hash: str

    @classmethod
    def of(cls, trace: Trace) -> TraceSummary:
        end = trace.terminal
        reason = end.reason if isinstance(end, RunFailed | RunCancelled) else None
        return cls(
            run_id=trace.run_id,
            path=str(trace.path or ""),
            created=trace.header.created,
            status=trace_status(trace),
            reason=reason,
            steps=trace.steps,
            tool_calls=len(trace.tool_calls()),
            model=model_name(trace),
            task=_lineage(trace) + trace.header.task,
            config_hash=trace.header.config_hash,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def trace_table(summaries: list[TraceSummary]) -> list[str]:
    """Aligned columns, one line per trace, with a heading line."""
    heading = ("RUN ID", "CREATED (UTC)", "STATUS", "STEPS", "MODEL", "CONFIG", "TASK")
    rows = [heading] + [
        (
            escape(s.run_id),
            escape(s.created[:19].replace("T", " ")),
            escape(
                s.status
                if s.reason is None or s.status == "cancelled"
                else f"{s.status}:{s.reason}"
            ),
            str(s.steps),
            one_line(s.model, 24),
            escape(s.config_hash),
            one_line((s.task.strip().splitlines() or [""])[0], TASK_WIDTH),
        )
        for s in summaries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(heading) - 1)]
    return [
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]
        ).rstrip()
        for row in rows
    ]


def trace_lines(trace: Trace, limit: int | None = SHOW_LIMIT) -> Iterator[str]:
    """The whole trace, readable: the header, each step's events, and how the run ended."""
    header = trace.header
    model = trace.header.agent.get("model")
    where = ""
    if isinstance(model, dict):
        details = [str(model[k]) for k in ("kind", "endpoint") if model.get(k)]
        where = f" ({', '.join(details)})" if details else ""
    tools = [str(t.get("name")) for t in header.agent.get("tools", []) if isinstance(t, dict)]
    yield f"run      {escape(header.run_id)}"
    yield f"status   {trace_status(trace)}"
    yield f"created  {escape(header.created)}"
    yield f"model    {one_line(model_name(trace) + where, 200)}"
    yield f"config   {escape(header.config_hash)}"
    if tools:
        yield f"tools    {one_line(', '.join(tools), 500)}"
    if header.parent:
        yield f"parent   {one_line(str(header.parent), 200)}"
    counts = feedback_counts([trace])
    if counts:
        yield "feedback " + ", ".join(f"{escape(k)} {v}" for k, v in counts.items())
    instructions = header.agent.get("instructions")
    if instructions:
        yield from block("instructions", str(instructions), limit, indent="")
    yield from block("task", header.task, limit, indent="")
    for event in trace.events:
        if isinstance(event, ModelRequested):
            yield ""
        yield from event_lines(event, limit)
    if trace.terminal is None:
        yield ""
        yield "incomplete: the trace has no terminal event (the process was killed or crashed)"
        if trace.torn:
            yield f"{INDENT}its last line was cut off mid-write and is not shown"
    annotations = [
        e
        for e in trace.events
        if isinstance(e, ScoreRecorded | CritiqueRecorded | FeedbackRecorded)
    ]
    if annotations:
        yield ""
        yield "annotations"
        for annotation in annotations:
            yield from annotation_lines(annotation, limit)


def annotation_lines(
    event: ScoreRecorded | CritiqueRecorded | FeedbackRecorded, limit: int | None
) -> list[str]:
    """A score, critique or feedback appended to a trace after its run, readable."""
    if isinstance(event, ScoreRecorded):
        verdict = "passed" if event.passed else "failed"
        where = f" (eval {escape(event.eval_run)})" if event.eval_run else ""
        line = f"{INDENT}score {one_line(event.scorer, 64)}: {event.value:g} {verdict}{where}"
        return [line + (f": {one_line(event.explanation, limit)}" if event.explanation else "")]
    if isinstance(event, CritiqueRecorded):
        found = event.critique
        judge = event.judge.get("name") or event.judge.get("model") or "?"
        verdict = one_line(str(found.get("verdict")), 32)
        lines = [f"{INDENT}critique by {one_line(str(judge), 64)}: {verdict}"]
        if found.get("summary"):
            lines += block("summary", str(found["summary"]), limit, indent=INDENT * 2)
        for score in found.get("scores") or []:
            if isinstance(score, dict):
                name, value = score.get("principle"), score.get("score")
                lines.append(f"{INDENT * 2}{one_line(str(name), 64)}: {one_line(str(value), 16)}")
        for problem in found.get("problems") or []:
            if isinstance(problem, dict):
                text = f"{problem.get('problem')} (fix: {problem.get('fix')})"
                lines.append(f"{INDENT * 2}step {problem.get('step')}: {one_line(text, limit)}")
        return lines
    about = f" on step {event.about_step}" if event.about_step is not None else ""
    who = escape(event.source) + (f", {escape(event.user_id)}" if event.user_id else "")
    kinds = ", ".join(k for k in (event.rating, event.signal) if k) or "no rating"
    lines = [f"{INDENT}feedback{about} ({who}): {kinds}"]
    if event.comment:
        lines += block("comment", event.comment, limit, indent=INDENT * 2)
    if event.correction:
        lines += block("correction", event.correction, limit, indent=INDENT * 2)
    return lines
