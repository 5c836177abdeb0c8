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
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from agentloop.actions import (
    Call,
    FinalAnswer,
    RejectedCall,
    ToolCall,
    looks_like_unparsed_tool_call,
    parse_actions,
    with_unique_call_ids,
)
from agentloop.budget import Budget
from agentloop.context import ConversationTurn, set_run_context
from agentloop.deltas import delta_listener
from agentloop.dispatch import OutcomeListener, ToolAborted, ToolOutcome, ToolRunner, run_tool_calls
from agentloop.errors import (
    AgentLoopError,
    CostLimitExceeded,
    GuardrailTripped,
    HookFailed,
    MaxStepsExceeded,
    MaxToolCallsExceeded,
    ModelError,
    ModelResponseError,
    OutputTruncated,
    ReplayDiverged,
    RetryBudgetExhausted,
    RunTimeout,
    TokenLimitExceeded,
    ToolExecutionError,
)
from agentloop.events import (
    TERMINAL_TYPES,
    BaseEvent,
    EventListener,
    ModelRequested,
    ModelResponded,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunWarned,
    ToolCallRequested,
    ToolResultRecorded,
    ToolsChanged,
    capture_listeners,
    json_line,
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
from agentloop.redaction import redact_log_event
from agentloop.result import RunResult, StopReason
from agentloop.spec import AgentSpec
from agentloop.steered import Steered
from agentloop.tools import ToolChanges
from agentloop.trace import TraceHeader, TraceWriter, new_run_id, now_iso, trace_path
from agentloop.untrusted import delimit_untrusted

_stdlib_log = logging.getLogger("agentloop")


@cache
def _log() -> Any:
    """The run logger: structlog over the standard ``agentloop`` logger, redacting every entry.
    Made on the first run, so ``import agentloop`` does not load structlog (~35 ms)."""
    import structlog

    return structlog.wrap_logger(
        _stdlib_log,
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[redact_log_event, structlog.stdlib.render_to_log_kwargs],
    )


EMPTY_RESPONSE_NUDGE = (
    "Your last reply was empty. Call one of the tools, or give your final answer as text."
)


class Run(Steered):
    """The state of one run: the conversation, counters, and the trace it writes."""

    def __init__(
        self,
        *,
        spec: AgentSpec,
        task: str,
        history: RunResult[Any] | Sequence[Message],
        trace_dir: Path | None,
        metadata: dict[str, Any],
        listener: EventListener | None,
        tool_runner: ToolRunner | None,
        parent: dict[str, Any] | None,
        deps: Any = None,
        conversation: ConversationTurn | None = None,
        tool_changes: ToolChanges | None = None,
    ) -> None:
        self.spec = spec
        self.tools, self.limits, self.settings = spec.tools, spec.limits, spec.settings
        self.model = spec.model
        self.run_tools = tool_runner or self.run_tools_live
        # Asked before each model request: the tool sources' own, then the caller's (replay).
        self.tool_changes = [make() for make in spec.tool_changes]
        self.tool_changes += [tool_changes] if tool_changes is not None else []
        self.taken: dict[str, frozenset[str]] = {}  # per source, the tools offered from it
        self.run_id = new_run_id()
        self.config, self.config_hash = spec.config, spec.config_hash
        listeners = (*capture_listeners.get(), *((listener,) if listener else ()))
        self.listeners = listeners
        self.redact = spec.redact
        self.messages: list[Message] = []
        system = spec.system_prompt
        if system:
            self.messages.append(SystemMessage(content=system))
        if isinstance(history, RunResult):
            history = history.messages
        # The agent's own system prompt (and its untrusted-data notice) leads; a system
        # message carried over from an earlier turn's result is not sent twice.
        self.messages.extend(m for m in history if not isinstance(m, SystemMessage))
        self.history_length = len(self.messages)
        self.messages.append(UserMessage(content=task))
        self.task, self.deps, self.conversation = task, deps, conversation
        self.budget = Budget(spec.limits, spec.prices, conversation)
        self.output_text: str | None = None
        self.sent = 0  # messages already recorded in a model_request event
        self.step = self.seq = self.tool_calls = self.mistakes = 0
        self.requests = 0  # model requests made, the run's "steps" in results and traces
        self.usage = Usage()
        self.on_delta = delta_listener.get()
        self.pending: set[str] = set()
        self.started = time.perf_counter()
        self.writer: TraceWriter | None = None
        if trace_dir is not None or spec.run_observers:
            header = TraceHeader(
                run_id=self.run_id,
                created=now_iso(),
                task=task,
                agent=self.config,
                config_hash=self.config_hash,
                agentloop_version=_version(),
                parent=parent,
                metadata=metadata,
                conversation=conversation.header() if conversation else None,
                deps_type=type(deps).__qualname__ if deps is not None else None,
            )
            if trace_dir is not None:
                self.writer = TraceWriter(trace_path(trace_dir, self.run_id), header, self.redact)
            self.listeners += tuple(observe(header) for observe in spec.run_observers)

    @cached_property
    def log(self) -> Any:
        """The run's logger: every entry goes through the run's redactor (a structlog
        processor). Bound on first use: most runs log nothing at the default level."""
        return _log().bind(run_id=self.run_id, _redactor=self.redact)

    # -- the loop ------------------------------------------------------------------------

    async def execute(self) -> RunResult[Any]:
        if _stdlib_log.isEnabledFor(logging.INFO):  # structlog's processors run before its
            self.log.info("run started", model=self.model.name)  # level check: skip when off
        deadline = asyncio.timeout(self.limits.run_timeout)
        try:
            try:
                async with deadline:
                    await self.check_input()
                    output = await self.loop()
            except TimeoutError:
                if not deadline.expired():
                    raise
                raise RunTimeout(f"the run took longer than {self.limits.run_timeout} s") from None
        except asyncio.CancelledError:
            self.end(RunCancelled, reason="cancelled", interrupted_calls=sorted(self.pending))
            raise
        except ToolAborted as aborted:  # SystemExit/KeyboardInterrupt from a tool
            original = aborted.original
            self.end(
                RunFailed,
                reason="error",
                error_type=type(original).__name__,
                message=self.redact(f"{aborted}: {original}"),
            )
            raise original from None
        except (KeyboardInterrupt, SystemExit) as exc:
            self.end(RunFailed, reason="error", error_type=type(exc).__name__, message=str(exc))
            raise
        except Exception as exc:
            reason = _stop_reason(exc)
            # The raw text: the logger's redaction processor masks it, like any log entry.
            self.log.warning("run failed", reason=reason, error=f"{type(exc).__name__}: {exc}")
            extra = {"partial_output": exc.text} if isinstance(exc, OutputTruncated) else {}
            self.end(
                RunFailed,
                reason=reason,
                error_type=type(exc).__name__,
                message=self.redact(str(exc)),
                attempts=list(getattr(exc, "attempts", ())),
                **extra,
            )
            if isinstance(exc, AgentLoopError):
                exc.partial = self.result(None, reason)
                exc.trace_path = self.trace_path
            raise
        self.end(RunFinished, output=self.output_text)
        return self.result(output, "final_answer")

    async def loop(self) -> Any:
        while True:
            self.check_step_budget()
            if self.tool_changes:
                await self.refresh_tools()
            response = await self.ask_model()
            actions = parse_actions(response, self.tools)
            if not actions or isinstance(actions, FinalAnswer):
                self.check_not_cut_off(response)
            if isinstance(actions, FinalAnswer):
                self.warn_if_unparsed_tool_call(response)
                accepted, value = await self.check_output(actions.text)
                if accepted:
                    self.output_text = actions.text
                    return value
                self.step += 1
                continue
            if actions:
                await self.act(actions)
            else:
                self.nudge_after_empty_response(response)
            self.step += 1

    # -- one step --------------------------------------------------------------------------

    async def refresh_tools(self) -> None:
        """Take the tool lists that changed since the last step (an MCP server announced
        ``tools/list_changed``; a replay's recorded changes), each recorded as a
        ``tools_changed`` event: the model is offered the new list from this step on."""
        for ask in self.tool_changes:
            self.flush_trace()
            try:
                changes = await ask(self.step)
            except AgentLoopError as exc:  # the list could not be taken: keep the tools
                message = f"{exc}; the run keeps the tools it has"
                self.emit(RunWarned, kind="tool_source", message=self.redact(message))
                continue
            for change in changes:
                before = self.taken.get(change.source, change.replaces)
                self.tools, offered, clashes = self.tools.changed(change.tools, before)
                now = self.taken[change.source] = frozenset(t.name for t in offered)
                self.emit(
                    ToolsChanged,
                    source=change.source,
                    tools=[t.recorded() for t in offered],
                    added=sorted(now - before),
                    removed=sorted(before - now),
                    left_out=clashes,
                    source_config=change.config,
                )
                if clashes:
                    self.emit(
                        RunWarned,
                        kind="tool_source",
                        message=f"{change.source!r} now offers tools named {clashes}, which "
                        "other tools of the run already have; they are left out (give the "
                        "source a prefix)",
                    )

    def check_step_budget(self) -> None:
        limit = self.limits.max_steps
        if limit is not None and self.step >= limit:
            raise MaxStepsExceeded(f"no final answer after max_steps={limit} model requests")

    async def ask_model(self) -> ModelResponse:
        settings = await self.before_request() if self.spec.hooks.before_request else None
        new = self.messages[self.sent :]
        self.sent = len(self.messages)
        self.emit(ModelRequested, messages=new, message_count=self.sent)
        self.requests += 1
        response = await self.request(settings or self.settings)
        response = with_unique_call_ids(response)
        self.usage += response.usage
        self.emit(ModelResponded, response=response)
        self.budget.check(self.usage, self.spec.model.name)
        for attempt in response.attempts:
            self.log.warning("model request retried", **attempt.model_dump())
        if response.text or response.tool_calls:
            self.messages.append(response.to_message())
        return response

    def check_not_cut_off(self, response: ModelResponse) -> None:
        """A reply cut off by the token limit with no tool call is no answer: retrying with the
        same settings would be cut again, so the run stops and says what to raise."""
        if response.finish_reason != "length":
            return
        text = response.text or ""
        limit = self.settings.max_tokens
        raise OutputTruncated(
            f"the model's output was cut off by the token limit (finish_reason=length) after "
            f"{len(text)} characters, before it held a complete action; it was neither run nor "
            f"taken as the answer. Raise max_tokens (now "
            f"{limit if limit is not None else 'the model default'}: ModelSettings(max_tokens="
            "...), or max_tokens in the agent file's [settings])",
            text=text,
            model=self.model.name,
        )

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
        if self.spec.hooks.before_tool_call:
            actions = await self.before_tool_calls(actions)
        for action in actions:
            if isinstance(action, RejectedCall):
                self.journal(action, action.observation, None)
        calls = [a for a in actions if isinstance(a, ToolCall)]
        self.pending.update(c.call_id for c in calls)

        def done(outcome: ToolOutcome) -> None:  # each result reaches the trace as it exists
            if outcome.call.call_id in self.pending:
                self.pending.discard(outcome.call.call_id)
                self.journal(outcome.call, outcome.observation, outcome)
                if self.pending:  # other calls still run: this one's result is kept now
                    self.flush_trace()

        set_run_context(self.context())
        self.flush_trace()  # every call is in the trace before any of them runs
        try:
            ran = await self.run_tools(actions, self.step, done)
        finally:
            set_run_context(None)
        for finished in ran:
            done(finished)  # a runner that did not report it
        self.pending.clear()
        outcomes = {o.call.call_id: o for o in ran}
        mistakes = 0
        for action in actions:
            observation = action.observation if isinstance(action, RejectedCall) else None
            observation = observation or outcomes[action.call_id].observation
            await self.add_observation(action, observation)
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

    async def run_tools_live(
        self, calls: Sequence[Call], step: int, done: OutcomeListener
    ) -> list[ToolOutcome]:
        valid = [c for c in calls if isinstance(c, ToolCall)]
        return await run_tool_calls(valid, self.limits, self.spec.approver, done)

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

    def journal(self, action: Call, observation: Observation, outcome: ToolOutcome | None) -> None:
        """Write one call's result to the trace (as soon as it exists)."""
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
            self.log.debug(
                "tool call",
                tool=action.part.name,
                error=observation.error,
                duration_ms=round(outcome.duration_ms, 2) if outcome else 0.0,
            )
        if outcome is not None and outcome.still_running:
            self.emit(
                RunWarned,
                kind="tool_still_running",
                message=f"{action.part.name!r} (call {action.call_id}) timed out and its thread "
                "is still running in the background; it cannot be stopped",
            )

    async def add_observation(self, action: Call, observation: Observation) -> None:
        """Put one call's observation into the conversation (in call order, after the step)."""
        content = observation.content
        if self.spec.hooks.after_tool_call and isinstance(action, ToolCall):
            content = await self.after_tool_call(action, content)
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
        if self.writer is None and not self.listeners:  # nobody to see it: only count it
            self.seq += 1
            return
        # Built without re-validation: the fields come from typed code, and read_trace
        # validates every event when a trace is read back. The trace gets the line of the
        # event's values; the event itself is built only for listeners.
        given = {"run_id": self.run_id, "step": self.step, "seq": self.seq, "ts": time.time()}
        given |= fields
        values = event_type.values(given)
        self.seq += 1
        if self.writer is not None:  # written at the next wait (flush_trace) or the run's end
            self.writer.add_line(json_line(values))
        if not self.listeners:
            return
        event = event_type.from_values(values, set(given))
        for listener in self.listeners:
            try:
                listener(event)
            except HookFailed:
                raise
            except Exception as exc:
                name = getattr(listener, "__qualname__", type(listener).__name__)
                if getattr(event, "type", None) in TERMINAL_TYPES:
                    # The run has ended and its trace is closed: the outcome stands.
                    _log().warning("listener failed", run_id=self.run_id, listener=name)
                    continue
                raise HookFailed(
                    f"listener {name} raised {type(exc).__name__}: {exc}", hook=name
                ) from exc

    def flush_trace(self) -> None:
        if self.writer is not None:
            self.writer.flush()

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
        if _stdlib_log.isEnabledFor(logging.INFO):
            self.log.info("run ended", outcome=kind.__name__, steps=self.step)

    @property
    def trace_path(self) -> Path | None:
        return self.writer.path if self.writer is not None else None

    def result(self, output: Any, reason: StopReason) -> RunResult[Any]:
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
            history_length=self.history_length,
            conversation_id=self.conversation.id if self.conversation else None,
            output_text=self.output_text,
            cost=self.budget.cost(self.usage, self.spec.model.name),
        )


def _stop_reason(exc: BaseException) -> StopReason:
    reasons: list[tuple[type[BaseException], StopReason]] = [
        (MaxStepsExceeded, "max_steps"),
        (MaxToolCallsExceeded, "max_tool_calls"),
        (RunTimeout, "run_timeout"),
        (RetryBudgetExhausted, "retry_budget"),
        (ToolExecutionError, "tool_error"),
        (OutputTruncated, "output_truncated"),
        (ModelError, "model_error"),
        (ReplayDiverged, "replay_diverged"),
        (TokenLimitExceeded, "token_limit"),
        (CostLimitExceeded, "cost_limit"),
        (GuardrailTripped, "guardrail"),
        (HookFailed, "hook_error"),
    ]
    return next((reason for kind, reason in reasons if isinstance(exc, kind)), "error")


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentloop")
    except PackageNotFoundError:
        return "unknown"
