"""One run of an agent: the step loop, the limits it enforces and the trace it writes.

``Agent.run`` makes a ``Run`` and executes it. The loop reads top to bottom: ask the model,
turn its answer into actions, run the tools, repeat until a final answer; every step emits
events to the trace and to listeners, and every way out ends the trace with a terminal event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from contextlib import aclosing
from functools import cache
from pathlib import Path
from typing import Any

import structlog

from agentloop.actions import (
    Call,
    FinalAnswer,
    RejectedCall,
    ToolCall,
    looks_like_unparsed_tool_call,
    parse_actions,
    with_unique_call_ids,
)
from agentloop.deltas import DeltaListener, TextDelta, delta_listener
from agentloop.dispatch import ToolOutcome, ToolRunner, run_tool_calls
from agentloop.errors import (
    AgentLoopError,
    MaxStepsExceeded,
    MaxToolCallsExceeded,
    ModelError,
    ModelResponseError,
    ReplayDiverged,
    RetryBudgetExhausted,
    RunTimeout,
    ToolExecutionError,
)
from agentloop.events import (
    BaseEvent,
    EventListener,
    ModelRequested,
    ModelResponded,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunWarned,
    StreamInterrupted,
    ToolCallRequested,
    ToolResultRecorded,
    capture_listeners,
)
from agentloop.messages import (
    Message,
    ModelResponse,
    SystemMessage,
    ToolMessage,
    Usage,
    UserMessage,
)
from agentloop.observations import MISTAKES, Observation
from agentloop.result import RunResult, StopReason
from agentloop.spec import AgentSpec
from agentloop.trace import TraceHeader, TraceWriter, new_run_id, now_iso, trace_path
from agentloop.untrusted import delimit_untrusted

_stdlib_log = logging.getLogger("agentloop")
_log = structlog.wrap_logger(
    _stdlib_log,
    wrapper_class=structlog.stdlib.BoundLogger,
    processors=[structlog.stdlib.render_to_log_kwargs],
)
EMPTY_RESPONSE_NUDGE = (
    "Your last reply was empty. Call one of the tools, or give your final answer as text."
)


class Run:
    """The state of one run: the conversation, counters, and the trace it writes."""

    def __init__(
        self,
        *,
        spec: AgentSpec,
        task: str,
        history: Sequence[Message],
        trace_dir: Path | None,
        metadata: dict[str, Any],
        listener: EventListener | None,
        tool_runner: ToolRunner | None,
        parent: dict[str, Any] | None,
    ) -> None:
        self.spec = spec
        self.tools, self.limits, self.settings = spec.tools, spec.limits, spec.settings
        self.model = spec.model
        self.run_tools = tool_runner or self.run_tools_live
        self.run_id = new_run_id()
        self.config, self.config_hash = spec.config, spec.config_hash
        listeners = (*capture_listeners.get(), *((listener,) if listener else ()))
        self.listeners = listeners
        self.redact = spec.redact
        self.messages: list[Message] = []
        system = spec.system_prompt
        if system:
            self.messages.append(SystemMessage(content=system))
        self.messages.extend(history)
        self.messages.append(UserMessage(content=task))
        self.sent = 0  # messages already recorded in a model_request event
        self.step = self.seq = self.tool_calls = self.mistakes = 0
        self.requests = 0  # model requests made, the run's "steps" in results and traces
        self.usage = Usage()
        self.on_delta = delta_listener.get()
        self.pending: set[str] = set()
        self.started = time.perf_counter()
        self.writer: TraceWriter | None = None
        if trace_dir is not None:
            header = TraceHeader(
                run_id=self.run_id,
                created=now_iso(),
                task=task,
                agent=self.config,
                config_hash=self.config_hash,
                agentloop_version=_version(),
                parent=parent,
                metadata=metadata,
            )
            self.writer = TraceWriter(trace_path(trace_dir, self.run_id), header, self.redact)

    # -- the loop ------------------------------------------------------------------------

    async def execute(self) -> RunResult:
        _log.info("run started", run_id=self.run_id, model=self.model.name)
        deadline = asyncio.timeout(self.limits.run_timeout)
        try:
            try:
                async with deadline:
                    output = await self.loop()
            except TimeoutError:
                if not deadline.expired():
                    raise
                raise RunTimeout(f"the run took longer than {self.limits.run_timeout} s") from None
        except asyncio.CancelledError:
            self.end(RunCancelled, reason="cancelled", interrupted_calls=sorted(self.pending))
            raise
        except Exception as exc:
            reason = _stop_reason(exc)
            self.end(
                RunFailed,
                reason=reason,
                error_type=type(exc).__name__,
                message=self.redact(str(exc)),
                attempts=list(getattr(exc, "attempts", ())),
            )
            if isinstance(exc, AgentLoopError):
                exc.partial = self.result(None, reason)
                exc.trace_path = self.trace_path
            raise
        self.end(RunFinished, output=output)
        return self.result(output, "final_answer")

    async def loop(self) -> str:
        while True:
            self.check_step_budget()
            response = await self.ask_model()
            actions = parse_actions(response, self.tools)
            if isinstance(actions, FinalAnswer):
                self.warn_if_unparsed_tool_call(response)
                return actions.text
            if actions:
                await self.act(actions)
            else:
                self.nudge_after_empty_response(response)
            self.step += 1

    # -- one step --------------------------------------------------------------------------

    def check_step_budget(self) -> None:
        limit = self.limits.max_steps
        if limit is not None and self.step >= limit:
            raise MaxStepsExceeded(f"no final answer after max_steps={limit} model requests")

    async def ask_model(self) -> ModelResponse:
        new = self.messages[self.sent :]
        self.sent = len(self.messages)
        self.emit(ModelRequested, messages=new, message_count=self.sent)
        self.requests += 1
        on_delta = self.on_delta
        if on_delta is None:
            response = await self.model.request(self.messages, self.tools, self.settings)
        else:
            response = await self.stream_model(on_delta)
        response = with_unique_call_ids(response)
        self.usage += response.usage
        self.emit(ModelResponded, response=response)
        for attempt in response.attempts:
            _log.warning("model request retried", run_id=self.run_id, **attempt.model_dump())
        if response.text or response.tool_calls:
            self.messages.append(response.to_message())
        return response

    async def stream_model(self, on_delta: DeltaListener) -> ModelResponse:
        """``Model.request_stream``, each delta passed to ``on_delta`` as it arrives; if the
        stream ends early (cancelled, broken) the trace keeps what had arrived."""
        stream = self.model.request_stream(self.messages, self.tools, self.settings)
        text: list[str] = []
        started, first = time.perf_counter(), None
        try:
            async with aclosing(stream):
                async for item in stream:
                    if isinstance(item, ModelResponse):
                        break
                    if first is None:
                        first = time.perf_counter()
                    if isinstance(item, TextDelta):
                        text.append(item.text)
                    on_delta(self.step, item)
                else:
                    raise ModelResponseError("the stream ended without a response")
        except BaseException as exc:
            partial = getattr(exc, "partial_text", None)
            if first is None and partial is None and not isinstance(exc, asyncio.CancelledError):
                raise  # nothing had arrived (an HTTP error, a refused connection)
            self.emit(
                StreamInterrupted,
                partial_text=partial if partial is not None else "".join(text),
                partial_tool_calls=list(getattr(exc, "partial_tool_calls", ())),
                error_type=type(exc).__name__,
                first_token_ms=(first - started) * 1000 if first is not None else None,
            )
            raise
        if item.first_token_ms is None and first is not None:  # a backend that sent it whole
            ended = time.perf_counter()
            item = item.model_copy(
                update={
                    "first_token_ms": (first - started) * 1000,
                    "generation_ms": (ended - first) * 1000,
                }
            )
        return item

    def nudge_after_empty_response(self, response: ModelResponse) -> None:
        last = self.messages[-1]
        if isinstance(last, UserMessage) and last.content == EMPTY_RESPONSE_NUDGE:
            raise ModelResponseError(
                "the model returned an empty response twice in a row "
                f"(finish_reason={response.finish_reason!r})",
                model=self.model.name,
            )
        self.emit(RunWarned, kind="empty_response", message="empty model response; nudged")
        self.count_mistakes(1)
        self.messages.append(UserMessage(content=EMPTY_RESPONSE_NUDGE))

    def warn_if_unparsed_tool_call(self, response: ModelResponse) -> None:
        if looks_like_unparsed_tool_call(response.text, self.tools):
            self.emit(
                RunWarned,
                kind="possible_unparsed_tool_call",
                message="the answer text looks like a tool call the server did not parse; "
                "it was treated as the final answer",
            )

    async def act(self, actions: list[Call]) -> None:
        self.check_tool_call_budget(len(actions))
        for action in actions:
            self.record_call(action)
        calls = [a for a in actions if isinstance(a, ToolCall)]
        self.pending.update(c.call_id for c in calls)
        ran = await self.run_tools(actions, self.step)
        self.pending.clear()
        outcomes = {o.call.call_id: o for o in ran}
        mistakes = 0
        for action in actions:
            outcome = outcomes.get(action.call_id)
            observation = action.observation if isinstance(action, RejectedCall) else None
            observation = observation or outcomes[action.call_id].observation
            self.record_result(action, observation, outcome)
            mistakes += observation.error in MISTAKES
        failed = [o for o in ran if o.exception is not None]
        if failed and self.limits.tool_errors == "raise":
            exc, call = failed[0].exception, failed[0].call
            raise ToolExecutionError(
                f"tool {call.tool.name!r} raised {type(exc).__name__}: {exc} "
                "(tool_errors='observe' would show the model a short error instead)",
                tool=call.tool.name,
                call_id=call.call_id,
            ) from exc
        self.count_mistakes(mistakes)

    async def run_tools_live(self, calls: Sequence[Call], step: int) -> list[ToolOutcome]:
        valid = [c for c in calls if isinstance(c, ToolCall)]
        return await run_tool_calls(valid, self.limits, self.spec.approver)

    def check_tool_call_budget(self, asked: int) -> None:
        limit = self.limits.max_tool_calls
        if limit is not None and self.tool_calls + asked > limit:
            raise MaxToolCallsExceeded(
                f"the model asked for {self.tool_calls + asked} tool calls in all, "
                f"beyond max_tool_calls={limit}"
            )
        self.tool_calls += asked

    def record_call(self, action: Call) -> None:
        valid = isinstance(action, ToolCall)
        self.emit(
            ToolCallRequested,
            call_id=action.call_id,
            name=action.part.name,
            raw_arguments=action.part.arguments,
            arguments=action.raw_arguments if isinstance(action, ToolCall) else None,
            valid=valid,
            rejection=action.observation.error if isinstance(action, RejectedCall) else None,
        )

    def record_result(
        self, action: Call, observation: Observation, outcome: ToolOutcome | None
    ) -> None:
        self.emit(
            ToolResultRecorded,
            call_id=action.call_id,
            name=action.part.name,
            content=observation.content,
            error=observation.error,
            duration_ms=outcome.duration_ms if outcome else 0.0,
            truncated_from=observation.truncated_from,
            exception=outcome.exception_text if outcome else None,
            approval=outcome.approval if outcome else None,
        )
        if _stdlib_log.isEnabledFor(logging.DEBUG):  # per call: skip structlog's work when off
            _log.debug(
                "tool call",
                run_id=self.run_id,
                tool=action.part.name,
                error=observation.error,
                duration_ms=round(outcome.duration_ms, 2) if outcome else 0.0,
            )
        content = observation.content
        if self.spec.delimit_tool_results and observation.error in (None, "retry"):
            # What the tool said (its result, or its ToolRetry message) is outside data; the
            # error texts agentloop writes itself are not.
            content = delimit_untrusted(action.part.name, content)
        self.messages.append(
            ToolMessage(call_id=action.call_id, name=action.part.name, content=content)
        )

    def count_mistakes(self, n: int) -> None:
        self.mistakes += n
        if self.mistakes > self.limits.retry_budget:
            raise RetryBudgetExhausted(
                f"the model made {self.mistakes} recoverable mistakes, more than "
                f"retry_budget={self.limits.retry_budget}; see the tool results in the trace"
            )

    # -- the trace -------------------------------------------------------------------------

    def emit(self, event_type: type[BaseEvent], /, **fields: Any) -> None:
        # Built without re-validation: the fields come from typed code, and read_trace
        # validates every event when a trace is read back.
        event = event_type.model_construct(
            run_id=self.run_id, step=self.step, seq=self.seq, ts=time.time(), **fields
        )
        self.seq += 1
        if self.writer is not None:
            self.writer.write(event)
        for listener in self.listeners:
            listener(event)

    def end(self, kind: type[BaseEvent], **fields: Any) -> None:
        duration = time.perf_counter() - self.started
        try:
            self.emit(
                kind,
                usage=self.usage,
                steps=self.requests,
                tool_calls=self.tool_calls,
                duration_s=duration,
                **fields,
            )
        finally:
            if self.writer is not None:
                self.writer.close()
        _log.info("run ended", run_id=self.run_id, outcome=kind.__name__, steps=self.step)

    @property
    def trace_path(self) -> Path | None:
        return self.writer.path if self.writer is not None else None

    def result(self, output: str | None, reason: StopReason) -> RunResult:
        return RunResult(
            output=output,
            stop_reason=reason,
            steps=self.requests,
            usage=self.usage,
            trace_path=self.trace_path,
            messages=list(self.messages),
            run_id=self.run_id,
            config_hash=self.config_hash,
            tool_calls=self.tool_calls,
            duration_s=time.perf_counter() - self.started,
        )


def _stop_reason(exc: BaseException) -> StopReason:
    reasons: list[tuple[type[BaseException], StopReason]] = [
        (MaxStepsExceeded, "max_steps"),
        (MaxToolCallsExceeded, "max_tool_calls"),
        (RunTimeout, "run_timeout"),
        (RetryBudgetExhausted, "retry_budget"),
        (ToolExecutionError, "tool_error"),
        (ModelError, "model_error"),
        (ReplayDiverged, "replay_diverged"),
    ]
    return next((reason for kind, reason in reasons if isinstance(exc, kind)), "error")


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentloop")
    except PackageNotFoundError:
        return "unknown"
