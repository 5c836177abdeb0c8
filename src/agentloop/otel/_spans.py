"""``SpanWriter``: one run's events, as the trace writer receives them, turned into spans.

A run becomes a tree: the root ``invoke_agent {agent}`` span, under it one ``chat {model}``
span per model request and one ``execute_tool {tool}`` span per tool call. Tool calls a model
asked for together are siblings, under the root beside the chat span that asked for them. A
replay, fork or resume links its root span to its parent run's root span.

The same class serves a live run (as an event listener: the root span starts with the run) and
a recorded trace (``agentloop export otel``, the events read back from the file): there is no
second way of making spans. Times are the events' own timestamps, so both give the same spans.
Content (messages, tool arguments and results) is added only when capture is on, taken from the
event's JSON after the run's redactor ran on it, exactly as the trace line is written.

A chat or tool span is noted when its closing event arrives and made (started and ended with
the tracer, which hands it to the span processors) in a batch with the others: when the run
ends, or ``BATCH_SECONDS`` after the first of the batch ended if the run is still going (a timer
on the run's event loop; without one, at the end). Making a run's spans together costs about
a third less than making each between the steps of the run, and its spans still arrive while a
long run goes on; a batch span processor waits longer than that before it sends them anyway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace import set_span_in_context as in_span

from agentloop.events import (
    BaseEvent,
    ModelRequested,
    ModelResponded,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunWarned,
    ToolCallRequested,
    ToolResultRecorded,
    ToolsChanged,
)
from agentloop.otel import _conventions as sc
from agentloop.otel._ids import ROOT, plan, root_context, span_id, trace_id, unplan
from agentloop.trace import TraceHeader

_log = logging.getLogger("agentloop.otel")
MAX_NAME = 100
"""Span names hold the model's tool name; a longer one is cut (the attribute keeps it whole)."""
CANCELLED = "CancelledError"
INTERRUPTED = "interrupted"
INCOMPLETE = "incomplete"
BATCH_SECONDS = 1.0
"""At most how long an ended chat or tool span of a running run waits to be made."""


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _redacted(redact: Callable[[str], str] | None, item: Any) -> dict[str, Any]:
    """The JSON form of an event or header, redacted as the trace writer redacts its line."""
    line = item.model_dump_json()
    data: dict[str, Any] = json.loads(redact(line) if redact else line)
    return data


@dataclass
class _Pending:
    """A chat or tool span not made yet. It is made after it ends, with all its attributes at
    once (cheaper than setting them twice; spans are exported only when they end anyway)."""

    key: str
    name: str
    attributes: dict[str, Any]
    start: float
    kind: SpanKind = SpanKind.INTERNAL
    end: float = 0.0
    error: tuple[str, str] | None = None
    """Its ``error.type`` and status description, if it failed."""
    closed_by: str = ""
    """What ended it (``a ToolResultRecorded event``), for the warning if it cannot be made."""


class SpanWriter:
    """An event listener that writes one run's spans with ``tracer``.

    ``header`` is the run's trace header (its id, agent, parent). ``redact`` is the run's
    redactor (``None`` for events read from a trace, which are redacted already). ``context``
    is where the root span goes: ``None`` puts it under the current span, if any.
    """

    def __init__(
        self,
        tracer: Tracer,
        header: TraceHeader,
        *,
        redact: Callable[[str], str] | None = None,
        capture_content: bool = False,
        context: Context | None = None,
    ) -> None:
        self._tracer = tracer
        self._run_id = header.run_id
        self._redact = redact
        self._capture = capture_content
        self._chat: _Pending | None = None
        self._tools: dict[tuple[int, str], _Pending] = {}
        self._ended: list[_Pending] = []  # the batch: ended, not made yet
        self._timer: asyncio.TimerHandle | None = None
        self._messages: list[dict[str, Any]] = []
        self.ended = False
        """The run's terminal event was seen (or ``close`` was called): the root span ended."""
        agent = header.agent
        name = str(agent.get("name", "agent"))
        self._trace_id = trace_id(header.run_id)
        # Redacting the header costs a dump and a parse: only when something from it is shown.
        empty: dict[str, Any] = {"metadata": {}, "task": "", "agent": {}}
        visible = _redacted(redact, header) if capture_content or header.metadata else empty
        turn = header.conversation or {}
        self._conversation = {sc.CONVERSATION_ID: str(turn.get("id") or header.run_id)}
        self._request = sc.request_attributes(agent)
        self._chat_name = f"chat {self._request[sc.REQUEST_MODEL]}"[:MAX_NAME]
        attributes: dict[str, Any] = {
            sc.OPERATION: "invoke_agent",
            sc.AGENT_NAME: name,
            sc.PROVIDER: self._request[sc.PROVIDER],
            sc.REQUEST_MODEL: self._request[sc.REQUEST_MODEL],
            "agentloop.run_id": header.run_id,
            "agentloop.config_hash": header.config_hash,
            **self._conversation,
        }
        if "turn" in turn:
            attributes["agentloop.conversation.turn"] = turn["turn"]
        for key, value in visible["metadata"].items():
            if isinstance(value, str | bool | int | float):
                attributes[f"agentloop.metadata.{key}"] = value
        links: list[Link] = []
        parent = header.parent or {}
        if parent.get("run_id"):
            for key in ("run_id", "kind", "step"):
                if parent.get(key) is not None:
                    attributes[f"agentloop.parent.{key}"] = parent[key]
            links.append(Link(root_context(str(parent["run_id"])), {"agentloop.link": "parent"}))
        if capture_content:
            task = [{"role": "user", "parts": [{"type": "text", "content": visible["task"]}]}]
            attributes[sc.INPUT_MESSAGES] = sc.dumps(task)
            instructions = visible["agent"].get("instructions")
            if instructions:
                attributes[sc.SYSTEM_INSTRUCTIONS] = sc.dumps(
                    [{"type": "text", "content": instructions}]
                )
        started = _started(header.created)
        self._root = self._start(
            ROOT, f"invoke_agent {name}"[:MAX_NAME], attributes, started, context, links=links
        )
        self._inside = in_span(self._root)

    # -- the listener ------------------------------------------------------------------------

    def __call__(self, event: BaseEvent) -> None:
        """Take the run's next event. A failure here is logged, never raised: a tracing
        backend must not break the run it watches."""
        if self.ended:
            return  # annotations (critique, feedback, scores) come after the run's end
        try:
            self._take(event)
        except Exception:
            kind = type(event).__name__
            _log.warning("OpenTelemetry: could not record a %s event", kind, exc_info=True)

    def _take(self, event: BaseEvent) -> None:
        if isinstance(event, ModelRequested):
            self._model_request(event)
        elif isinstance(event, ModelResponded):
            self._model_response(event)
        elif isinstance(event, ToolCallRequested):
            self._tool_call(event)
        elif isinstance(event, ToolResultRecorded):
            self._tool_result(event)
        elif isinstance(event, RunFinished | RunFailed | RunCancelled):
            self._end_run(event)
        elif isinstance(event, RunWarned):
            self._root.add_event(
                "agentloop.warning",
                {"agentloop.warning.kind": event.kind, "agentloop.step": event.step},
                timestamp=_ns(event.ts),
            )
        elif isinstance(event, ToolsChanged):
            self._root.add_event(
                "agentloop.tools_changed",
                {
                    "agentloop.tool_source": event.source,
                    "agentloop.tools.added": event.added,
                    "agentloop.tools.removed": event.removed,
                    "agentloop.step": event.step,
                },
                timestamp=_ns(event.ts),
            )

    def close(self, at: float) -> None:
        """End a run whose trace has no terminal event (the process was killed): every open
        span ends at ``at`` with ``error.type`` ``incomplete``."""
        if self.ended:
            return
        self._fail(self._root, INCOMPLETE, "the trace has no terminal event (the run was killed)")
        self._finish(at, INCOMPLETE, "the end of an incomplete trace")

    # -- one kind of event each ----------------------------------------------------------------

    def _model_request(self, event: ModelRequested) -> None:
        if self._chat is not None:  # a request without its response: never seen, but end it
            self._write(self._chat, event.ts, closed_by=_an(event))
        attributes = {
            **self._request,
            **self._conversation,
            sc.OPERATION: "chat",
            "agentloop.step": event.step,
        }
        if self._capture:
            messages = _redacted(self._redact, event)["messages"]
            self._messages.extend(sc.input_message(m) for m in messages)
            attributes[sc.INPUT_MESSAGES] = sc.dumps(self._messages)
        self._chat = _Pending(
            f"chat/{event.step}", self._chat_name, attributes, event.ts, SpanKind.CLIENT
        )

    def _model_response(self, event: ModelResponded) -> None:
        pending, self._chat = self._chat, None
        if pending is None:
            return
        response = event.response
        attributes: dict[str, Any] = {
            sc.RESPONSE_MODEL: response.model_name or self._request[sc.REQUEST_MODEL],
            sc.INPUT_TOKENS: response.usage.input_tokens,
            sc.OUTPUT_TOKENS: response.usage.output_tokens,
        }
        if response.protocol != "native":
            attributes["agentloop.model.protocol"] = response.protocol
        if response.finish_reason:
            attributes[sc.FINISH_REASONS] = [response.finish_reason]
        if response.attempts:
            attributes["agentloop.model.retries"] = len(response.attempts)
        if self._capture:
            visible = _redacted(self._redact, event)["response"]
            attributes[sc.OUTPUT_MESSAGES] = sc.dumps([sc.output_message(visible)])
        pending.attributes.update(attributes)
        self._write(pending, event.ts, closed_by=_an(event))

    def _tool_call(self, event: ToolCallRequested) -> None:
        attributes: dict[str, Any] = {
            sc.OPERATION: "execute_tool",
            sc.TOOL_NAME: event.name,
            sc.TOOL_CALL_ID: event.call_id,
            sc.TOOL_TYPE: "function",
            "agentloop.step": event.step,
        }
        if not event.valid:
            attributes["agentloop.tool.valid"] = False
        if self._capture:
            attributes[sc.TOOL_ARGUMENTS] = _redacted(self._redact, event)["raw_arguments"]
        key = f"tool/{event.step}/{event.call_id}"
        name = f"execute_tool {event.name}"[:MAX_NAME]
        self._tools[event.step, event.call_id] = _Pending(key, name, attributes, event.ts)

    def _tool_result(self, event: ToolResultRecorded) -> None:
        pending = self._tools.pop((event.step, event.call_id), None)
        if pending is None:  # a result for a call never announced: never seen, but keep it
            self._tool_call(
                ToolCallRequested.model_construct(
                    **event.model_dump(include={"run_id", "step", "seq", "ts", "call_id", "name"}),
                    raw_arguments="",
                    valid=False,
                )
            )
            pending = self._tools.pop((event.step, event.call_id))
        attributes = pending.attributes
        if event.truncated_from is not None:
            attributes["agentloop.tool.truncated_from"] = event.truncated_from
        if event.approval is not None:
            attributes["agentloop.tool.approval"] = event.approval
        if self._capture:
            attributes[sc.TOOL_RESULT] = _redacted(self._redact, event)["content"]
        ended = pending.start + event.duration_ms / 1000 if event.duration_ms > 0 else event.ts
        error = (event.error, f"tool call error: {event.error}") if event.error else None
        self._write(pending, min(ended, event.ts), error, closed_by=_an(event))

    def _end_run(self, event: RunFinished | RunFailed | RunCancelled) -> None:
        self._root.set_attributes(
            {
                sc.INPUT_TOKENS: event.usage.input_tokens,
                sc.OUTPUT_TOKENS: event.usage.output_tokens,
                "agentloop.steps": event.steps,
                "agentloop.tool_calls": event.tool_calls,
                "agentloop.duration_s": event.duration_s,
            }
        )
        error: str | None = None
        if isinstance(event, RunFinished):
            self._root.set_attribute("agentloop.stop_reason", "final_answer")
            if self._capture:
                output = _redacted(self._redact, event)["output"]
                message = {"role": "assistant", "parts": [{"type": "text", "content": output}]}
                self._root.set_attribute(sc.OUTPUT_MESSAGES, sc.dumps([message]))
        elif isinstance(event, RunFailed):
            error = event.error_type
            self._root.set_attribute("agentloop.stop_reason", event.reason)
            self._fail(self._root, error, _redacted(self._redact, event)["message"])
        else:
            error = CANCELLED
            self._root.set_attribute("agentloop.stop_reason", "cancelled")
            self._fail(self._root, error, f"the run was cancelled ({event.reason})")
        self._finish(event.ts, error, _an(event))

    # -- spans -------------------------------------------------------------------------------

    def _start(
        self,
        key: str,
        name: str,
        attributes: dict[str, Any],
        at: float,
        context: Context | None = None,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        links: Sequence[Link] = (),
    ) -> Span:
        token = plan(self._trace_id, span_id(self._run_id, key))
        try:
            return self._tracer.start_span(
                name,
                context=context if key == ROOT else self._inside,
                kind=kind,
                attributes=attributes,
                links=links,
                start_time=_ns(at),
            )
        finally:
            unplan(token)

    def _write(
        self,
        pending: _Pending,
        end: float,
        error: tuple[str, str] | None = None,
        *,
        closed_by: str,
    ) -> None:
        """Note that a chat or tool span ended (``error``: its ``error.type`` and status
        description); it is made with the rest of its batch."""
        pending.end, pending.error, pending.closed_by = end, error, closed_by
        self._ended.append(pending)
        if self._timer is None and len(self._ended) == 1:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop: a recorded trace, made at its end
                return
            self._timer = loop.call_later(BATCH_SECONDS, self._make_batch)

    def _make_batch(self) -> None:
        """Make (start and end) the ended spans not made yet. A span the tracer cannot make
        is logged and skipped: a tracing backend must not break the run it watches."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._ended = self._ended, []
        for pending in batch:
            try:
                self._make(pending)
            except Exception:
                _log.warning("OpenTelemetry: could not record %s", pending.closed_by, exc_info=True)

    def _make(self, pending: _Pending) -> None:
        if pending.error is not None:
            pending.attributes[sc.ERROR_TYPE] = pending.error[0]
        span = self._start(
            pending.key, pending.name, pending.attributes, pending.start, kind=pending.kind
        )
        if pending.error is not None:
            span.set_status(Status(StatusCode.ERROR, pending.error[1]))
        span.end(_ns(pending.end))

    @staticmethod
    def _fail(span: Span, error_type: str, description: str) -> None:
        span.set_attribute(sc.ERROR_TYPE, error_type)
        span.set_status(Status(StatusCode.ERROR, description))

    def _finish(self, at: float, error: str | None, closed_by: str) -> None:
        """End the spans still open (a request or tool calls cut off by the run's end), then
        the root."""
        if self._chat is not None:
            during = (error or INCOMPLETE, "the run ended during this request")
            self._write(self._chat, at, during, closed_by=closed_by)
            self._chat = None
        for pending in self._tools.values():
            cut = (INTERRUPTED, "the run ended before this tool call did")
            self._write(pending, at, cut, closed_by=closed_by)
        self._tools.clear()
        self.ended = True
        self._make_batch()
        self._root.end(_ns(at))


def _started(created: str) -> float:
    """The run's start from its header's ``created`` (ISO 8601); a header that holds no such
    time (a damaged or hand-made trace) starts now rather than failing the export."""
    try:
        return datetime.fromisoformat(created).timestamp()
    except ValueError:
        return time.time()


def _an(event: BaseEvent) -> str:
    return f"a {type(event).__name__} event"
