"""The agent and its loop: ask the model, run the tools it asks for, repeat until it answers.

``Agent.run`` is the one async core; ``run_sync`` and ``iter`` are thin doors onto it. Every
step is written to the run's trace as it happens, and every way out (answer, error, limit,
cancellation) ends the trace with a terminal event.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import structlog

from agentloop._sync import run_blocking
from agentloop.actions import (
    Call,
    FinalAnswer,
    RejectedCall,
    ToolCall,
    looks_like_unparsed_tool_call,
    parse_actions,
    with_unique_call_ids,
)
from agentloop.dispatch import Approver, ToolOutcome, ToolRunner, run_tool_calls
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
    UserError,
)
from agentloop.events import (
    BaseEvent,
    EventListener,
    ModelRequest,
    ModelResponded,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunWarning,
    ToolCallRequested,
    ToolResult,
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
from agentloop.models import Model, infer_model
from agentloop.observations import Observation
from agentloop.redaction import Redactor
from agentloop.result import RunResult, StopReason
from agentloop.safety import UNTRUSTED_NOTICE, delimit_untrusted
from agentloop.settings import USE_AGENT_DEFAULT, ModelSettings, RunLimits, UseAgentDefault
from agentloop.tools import Tool, Toolset
from agentloop.trace import TraceHeader, TraceWriter, new_run_id, now_iso, trace_path
from agentloop.types import ToolErrorPolicy

_stdlib_log = logging.getLogger("agentloop")
_log = structlog.wrap_logger(
    _stdlib_log,
    wrapper_class=structlog.stdlib.BoundLogger,
    processors=[structlog.stdlib.render_to_log_kwargs],
)
MISTAKES = frozenset(
    {
        "invalid_json",
        "invalid_arguments",
        "unknown_tool",
        "retry",
        "timeout",
        "truncated_call",
        "tool_error",
    }
)
EMPTY_RESPONSE_NUDGE = (
    "Your last reply was empty. Call one of the tools, or give your final answer as text."
)


class Agent:
    """A model, its tools and instructions, and the limits a run works within."""

    def __init__(
        self,
        model: Model | str,
        *,
        tools: Iterable[Tool | Callable[..., Any]] = (),
        instructions: str | None = None,
        name: str = "agent",
        settings: ModelSettings | None = None,
        limits: RunLimits | None = None,
        max_steps: int | UseAgentDefault | None = USE_AGENT_DEFAULT,
        max_tool_calls: int | UseAgentDefault | None = USE_AGENT_DEFAULT,
        tool_timeout: float | UseAgentDefault | None = USE_AGENT_DEFAULT,
        run_timeout: float | UseAgentDefault | None = USE_AGENT_DEFAULT,
        retry_budget: int | UseAgentDefault = USE_AGENT_DEFAULT,
        tool_errors: ToolErrorPolicy | UseAgentDefault = USE_AGENT_DEFAULT,
        trace_dir: str | Path | None = "traces",
        secrets: Iterable[str] = (),
        redact_patterns: Iterable[str] = (),
        approver: Approver | None = None,
        delimit_tool_results: bool = True,
    ) -> None:
        """``tools`` are ``Tool`` objects or plain typed functions; ``trace_dir=None`` turns
        tracing off. ``secrets`` (and the model's API key) are masked in traces and logs, as is
        text matching ``redact_patterns``. ``approver`` decides calls to tools marked
        ``requires_approval``; without one they are denied. ``delimit_tool_results`` wraps
        what tools return in ``<tool_output>`` tags that the system prompt explains, so the
        model treats it as data, not instructions (the trace keeps the raw result)."""
        self.model = infer_model(model)
        self.tools = Toolset(tools)
        self.instructions = instructions
        self.name = name
        self.settings = settings or ModelSettings()
        self.limits = (limits or RunLimits()).merged(
            max_steps=max_steps,
            max_tool_calls=max_tool_calls,
            tool_timeout=tool_timeout,
            run_timeout=run_timeout,
            retry_budget=retry_budget,
            tool_errors=tool_errors,
        )
        self.trace_dir = Path(trace_dir) if trace_dir is not None else None
        self.approver = approver
        self.delimit_tool_results = delimit_tool_results
        self._config_cache: tuple[tuple[Any, ...], dict[str, Any], str] | None = None
        self.redact = Redactor([*secrets, *self.model.secrets()], redact_patterns)
        """Masks secrets in everything this agent writes (traces, logs)."""

    @classmethod
    def from_file(cls, path: str | Path, **options: Any) -> Agent:
        """The agent an agent file (TOML) describes; ``model=`` replaces its model, other
        keyword arguments go to ``Agent``. See ``agentloop.agentfile``."""
        from agentloop.agentfile import load_agent

        return load_agent(path, **options)

    def config(
        self,
        limits: RunLimits | None = None,
        settings: ModelSettings | None = None,
        model: Model | None = None,
    ) -> dict[str, Any]:
        """Everything that defines this agent's behaviour, as recorded in trace headers."""
        return {
            "name": self.name,
            "model": (model or self.model).config(),
            "instructions": self.instructions,
            "delimit_tool_results": self.delimit_tool_results,
            "settings": (settings or self.settings).model_dump(mode="json", exclude_none=True),
            "limits": (limits or self.limits).model_dump(mode="json"),
            "tools": [
                {
                    **t.spec(),
                    "timeout": t.timeout,
                    "requires_approval": t.requires_approval,
                    "idempotent": t.idempotent,
                    "source_hash": t.source_hash,
                }
                for t in self.tools.values()
            ],
        }

    def system_prompt(self) -> str | None:
        """The system message: the instructions, plus what the tool-output tags mean."""
        notice = UNTRUSTED_NOTICE if self.tools and self.delimit_tool_results else None
        parts = [p for p in (self.instructions, notice) if p]
        return "\n\n".join(parts) if parts else None

    def replace(self, **changes: Any) -> Agent:
        """A copy of this agent with some attributes changed (``instructions``, ``model``,
        ``settings``, ``limits``, ``trace_dir``, ``approver``)."""
        copied = copy.copy(self)
        for name, value in changes.items():
            if name not in ("instructions", "model", "settings", "limits", "trace_dir", "approver"):
                raise UserError(f"Agent.replace() cannot change {name!r}")
            if name == "model":
                value = infer_model(value)
            setattr(copied, name, value)
        return copied

    @property
    def config_hash(self) -> str:
        """The agent's version: changes with any prompt, setting, schema or tool source."""
        return self.versioned_config(self.limits, self.settings, self.model)[1]

    def versioned_config(
        self, limits: RunLimits, settings: ModelSettings, model: Model
    ) -> tuple[dict[str, Any], str]:
        """``config()`` and its hash, remembered for the last combination asked for: runs of
        the same agent share them, and hashing the configuration is not free."""
        key = (
            limits,
            settings,
            model,
            self.tools,
            self.instructions,
            self.name,
            self.delimit_tool_results,
        )
        cached = self._config_cache
        if cached is None or not all(a is b or a == b for a, b in zip(cached[0], key, strict=True)):
            config = self.config(limits, settings, model)
            cached = self._config_cache = (key, config, config_hash(config))
        return cached[1], cached[2]

    async def run(
        self,
        task: str,
        *,
        history: Sequence[Message] = (),
        settings: ModelSettings | None = None,
        trace_dir: str | Path | UseAgentDefault | None = USE_AGENT_DEFAULT,
        max_steps: int | UseAgentDefault | None = USE_AGENT_DEFAULT,
        max_tool_calls: int | UseAgentDefault | None = USE_AGENT_DEFAULT,
        run_timeout: float | UseAgentDefault | None = USE_AGENT_DEFAULT,
        retry_budget: int | UseAgentDefault = USE_AGENT_DEFAULT,
        model: Model | str | None = None,
        metadata: dict[str, Any] | None = None,
        listener: EventListener | None = None,
        tool_runner: ToolRunner | None = None,
        parent: dict[str, Any] | None = None,
    ) -> RunResult:
        """Run ``task`` to a final answer. Per-run arguments override the agent's defaults.

        Raises a ``RunError`` (a limit, a tool failure) or ``ModelError``, each carrying
        ``partial`` and ``trace_path``; ``CancelledError`` propagates after the trace records it.
        ``listener`` sees every event as it is written. ``tool_runner`` and ``parent`` are the
        seams replay, fork and resume use: who produces tool results, and which run this one
        continues (recorded in the trace header).
        """
        limits = self.limits.merged(
            max_steps=max_steps,
            max_tool_calls=max_tool_calls,
            run_timeout=run_timeout,
            retry_budget=retry_budget,
        )
        folder = self.trace_dir if isinstance(trace_dir, UseAgentDefault) else trace_dir
        run = _Run(
            agent=self,
            task=task,
            history=history,
            limits=limits,
            settings=self.settings.merged(settings),
            trace_dir=Path(folder) if folder is not None else None,
            metadata=metadata or {},
            listener=listener,
            model=infer_model(model) if model is not None else self.model,
            tool_runner=tool_runner,
            parent=parent,
        )
        return await run.execute()

    def run_sync(self, task: str, **kwargs: Any) -> RunResult:
        """Blocking ``run``, for scripts. Inside a running event loop, use ``await run()``."""
        return run_blocking(
            self.run, task, what="Agent.run_sync()", use="await agent.run(...)", **kwargs
        )

    def iter(self, task: str, **kwargs: Any) -> AgentRun:
        """Watch a run event by event: ``async with agent.iter(task) as run: async for e in
        run``. Leaving the block early cancels the run (recorded as ``run_cancelled``)."""
        return AgentRun(self, task, kwargs)


class AgentRun:
    """A run in progress, iterated as its events happen; ``result`` once it has ended."""

    def __init__(self, agent: Agent, task: str, kwargs: dict[str, Any]) -> None:
        self._queue: asyncio.Queue[BaseEvent | None] = asyncio.Queue()
        self._agent, self._task_text, self._kwargs = agent, task, kwargs
        self._task: asyncio.Task[RunResult] | None = None

    @property
    def result(self) -> RunResult:
        if self._task is None or not self._task.done():
            raise UserError("the run has not ended yet; iterate it to the end first")
        return self._task.result()

    async def __aenter__(self) -> AgentRun:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.cancel()

    async def cancel(self) -> None:
        """Stop the run if it is still going, and wait until its trace is closed."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def __aiter__(self) -> AsyncIterator[BaseEvent]:
        return self

    async def __anext__(self) -> BaseEvent:
        if self._task is None:
            run = self._agent.run(self._task_text, listener=self._queue.put_nowait, **self._kwargs)
            self._task = asyncio.ensure_future(run)
            self._task.add_done_callback(lambda _: self._queue.put_nowait(None))
        event = await self._queue.get()
        if event is None:
            self._task.result()  # re-raise the run's error, if any
            raise StopAsyncIteration
        return event


class _Run:
    """The state of one run: the conversation, counters, and the trace it writes."""

    def __init__(
        self,
        *,
        agent: Agent,
        task: str,
        history: Sequence[Message],
        limits: RunLimits,
        settings: ModelSettings,
        trace_dir: Path | None,
        metadata: dict[str, Any],
        listener: EventListener | None,
        model: Model,
        tool_runner: ToolRunner | None,
        parent: dict[str, Any] | None,
    ) -> None:
        self.agent, self.tools, self.limits, self.settings = agent, agent.tools, limits, settings
        self.model = model
        self.run_tools = tool_runner or self.run_tools_live
        self.run_id = new_run_id()
        self.config, self.config_hash = agent.versioned_config(limits, settings, model)
        listeners = (*capture_listeners.get(), *((listener,) if listener else ()))
        self.listeners = listeners
        self.redact = agent.redact
        self.messages: list[Message] = []
        system = agent.system_prompt()
        if system:
            self.messages.append(SystemMessage(content=system))
        self.messages.extend(history)
        self.messages.append(UserMessage(content=task))
        self.sent = 0  # messages already recorded in a model_request event
        self.step = self.seq = self.tool_calls = self.mistakes = 0
        self.requests = 0  # model requests made, the run's "steps" in results and traces
        self.usage = Usage()
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
        self.emit(ModelRequest, messages=new, message_count=self.sent)
        self.requests += 1
        response = await self.model.request(self.messages, self.tools, self.settings)
        response = with_unique_call_ids(response)
        self.usage += response.usage
        self.emit(ModelResponded, response=response)
        for attempt in response.attempts:
            _log.warning("model request retried", run_id=self.run_id, **attempt.model_dump())
        if response.text or response.tool_calls:
            self.messages.append(response.to_message())
        return response

    def nudge_after_empty_response(self, response: ModelResponse) -> None:
        last = self.messages[-1]
        if isinstance(last, UserMessage) and last.content == EMPTY_RESPONSE_NUDGE:
            raise ModelResponseError(
                "the model returned an empty response twice in a row "
                f"(finish_reason={response.finish_reason!r})",
                model=self.model.name,
            )
        self.emit(RunWarning, kind="empty_response", message="empty model response; nudged")
        self.count_mistakes(1)
        self.messages.append(UserMessage(content=EMPTY_RESPONSE_NUDGE))

    def warn_if_unparsed_tool_call(self, response: ModelResponse) -> None:
        if looks_like_unparsed_tool_call(response.text, self.tools):
            self.emit(
                RunWarning,
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
        return await run_tool_calls(valid, self.limits, self.agent.approver)

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
            ToolResult,
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
        if self.agent.delimit_tool_results and observation.error in (None, "retry"):
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


def config_hash(config: dict[str, Any]) -> str:
    """A short, stable hash of an agent configuration (tool sources included via their
    ``source_hash``)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


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
