"""The agent and its loop: ask the model, run the tools it asks for, repeat until it answers.

``Agent.run`` is the one async core; ``run_sync`` and ``iter`` are thin doors onto it. Every
step is written to the run's trace as it happens, and every way out (answer, error, limit,
cancellation) ends the trace with a terminal event.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic

from agentloop._sync import run_blocking
from agentloop.context import ConversationTurn
from agentloop.dispatch import Approver, ToolRunner
from agentloop.errors import (
    UserError,
)
from agentloop.events import (
    BaseEvent,
    EventListener,
)
from agentloop.hooks import Hooks
from agentloop.loop import Run
from agentloop.messages import (
    Message,
)
from agentloop.models import Model, infer_model
from agentloop.output import OutputSpec, OutputValidator
from agentloop.redaction import Redactor, register_secrets
from agentloop.result import OutputT, RunResult
from agentloop.settings import USE_AGENT_DEFAULT, ModelSettings, Price, RunLimits, UseAgentDefault
from agentloop.spec import AgentSpec
from agentloop.streaming import AgentStream, SyncAgentStream
from agentloop.tools import SourcedTools, Tool, ToolChanges, Toolset, ToolSource
from agentloop.trace import RunObserver
from agentloop.types import JSONObject, ToolErrorPolicy
from agentloop.untrusted import UNTRUSTED_NOTICE

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider


class Agent(Generic[OutputT]):
    """A model, its tools and instructions, and the limits a run works within.

    ``Agent[T]`` answers with a ``T`` when given ``output_type=T`` (a ``str`` without one)."""

    def __init__(
        self,
        model: Model | str,
        *,
        tools: Iterable[Tool | Callable[..., Any] | ToolSource] = (),
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
        output_type: type[OutputT] | None = None,
        output_validators: Sequence[OutputValidator] = (),
        hooks: Hooks | None = None,
        prices: Mapping[str, Price] | None = None,
        fallback_models: Sequence[Model | str] = (),
        otel: bool | TracerProvider = False,
    ) -> None:
        """``tools`` are ``Tool`` objects, plain typed functions, or tool sources such as an MCP
        server (``agentloop.mcp.MCPServer``), opened for each run or, inside ``async with
        agent:``, once for all runs; ``trace_dir=None`` turns tracing off. ``secrets`` (and
        the model's API key) are masked in traces and logs, as is text matching
        ``redact_patterns``. ``approver`` decides calls to tools marked
        ``requires_approval``; without one they are denied. ``delimit_tool_results`` wraps
        what tools return in ``<tool_output>`` tags that the system prompt explains, so the
        model treats it as data, not instructions (the trace keeps the raw result).

        ``output_type`` asks for a typed final answer (docs/embedding.md says how each backend
        is constrained); ``output_validators`` check it after parsing (raise ``ToolRetry`` to
        send the model back). ``hooks`` may change requests, tool calls and results, and
        guard the task and the output. ``prices`` (per model name) let ``RunLimits.max_cost``
        and ``RunResult.cost`` price a run. ``fallback_models`` take a request the model failed
        with a rate limit, a server error or a timeout, in order.

        ``otel=True`` also writes each run as OpenTelemetry spans (to the application's tracer
        provider, or one configured from the standard ``OTEL_*`` environment); ``otel=`` a
        ``TracerProvider`` sends them there. It needs ``agentloop[otel]``; see
        ``agentloop.otel``."""
        self.model = infer_model(model)
        items = list(tools)
        self.tool_sources: tuple[ToolSource, ...] = tuple(
            t for t in items if isinstance(t, ToolSource)
        )
        """Where more tools come from while the agent runs (MCP servers)."""
        self.tools = Toolset(t for t in items if not isinstance(t, ToolSource))
        self._sourced: list[SourcedTools] = []  # what the open sources served
        self._served: list[JSONObject] = []  # the identities of the open sources' tools
        # ... and, per run, how to ask them for changed tool lists (SourcedTools.changes)
        self._tool_changes: tuple[Callable[[], ToolChanges], ...] = ()
        self._open: Agent[OutputT] | None = None  # with its sources' tools, in `async with`
        self._open_stack: contextlib.AsyncExitStack | None = None
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
        self._spec_cache: tuple[tuple[Any, ...], AgentSpec] | None = None
        self.output = (
            OutputSpec(output_type, tuple(output_validators)) if output_type is not None else None
        )
        self.hooks = hooks or Hooks()
        self.prices = dict(prices or {})
        self.fallback_models = tuple(infer_model(m) for m in fallback_models)
        secrets = [*secrets, *(s for m in (self.model, *self.fallback_models) for s in m.secrets())]
        register_secrets(*secrets)  # so annotate(), add_feedback(), exports mask them too
        self.redact = Redactor(secrets, redact_patterns)
        """Masks secrets in everything this agent writes (traces, logs, spans)."""
        if self.limits.max_cost is not None and not self.prices:
            raise UserError("RunLimits.max_cost needs prices= (per model name: Price(...))")
        self.run_observers: tuple[RunObserver, ...] = ()
        """Called as each run starts, for more listeners to its events (OpenTelemetry)."""
        if otel is not False:
            self.run_observers = (_otel_observer(otel, self.redact),)

    def config(
        self,
        limits: RunLimits | None = None,
        settings: ModelSettings | None = None,
        model: Model | None = None,
    ) -> dict[str, Any]:
        """Everything that defines this agent's behaviour, as recorded in trace headers. Tools
        from sources count once the sources are open (in a run, or inside ``async with``)."""
        if self._open is not None:
            return self._open.config(limits, settings, model)
        config: dict[str, Any] = {
            "name": self.name,
            "model": (model or self.model).config(),
            "instructions": self.instructions,
            "delimit_tool_results": self.delimit_tool_results,
            "settings": self._settings(settings or self.settings).model_dump(
                mode="json", exclude_none=True
            ),
            "limits": (limits or self.limits).model_dump(mode="json"),
            "tools": [t.recorded() for t in self.tools.values()],
            **({"output": self.output.config()} if self.output else {}),
            **(
                {"prices": {k: v.model_dump() for k, v in sorted(self.prices.items())}}
                if self.prices
                else {}
            ),
            **({"hooks": self.hooks.names()} if self.hooks else {}),
            **(
                {"fallback_models": [m.config() for m in self.fallback_models]}
                if self.fallback_models
                else {}
            ),
        }
        if self._served:  # absent without sources, so their hashes stay as they were
            config["tool_sources"] = self._served
        return config

    def _settings(self, settings: ModelSettings) -> ModelSettings:
        """``settings``, with the typed output's schema as ``json_schema`` unless one is set."""
        if self.output is None or settings.json_schema is not None:
            return settings
        return settings.model_copy(update={"json_schema": self.output.schema})

    def system_prompt(self) -> str | None:
        """The system message: the instructions, plus what the tool-output tags mean."""
        notice = UNTRUSTED_NOTICE if self.tools and self.delimit_tool_results else None
        shape = self.output.instructions() if self.output else None
        parts = [p for p in (self.instructions, notice, shape) if p]
        return "\n\n".join(parts) if parts else None

    def replace(self, **changes: Any) -> Agent[OutputT]:
        """A copy of this agent with some attributes changed (``instructions``, ``model``,
        ``settings``, ``limits``, ``trace_dir``, ``approver``)."""
        copied = copy.copy(self)
        for name, value in changes.items():
            if name not in ("instructions", "model", "settings", "limits", "trace_dir", "approver"):
                raise UserError(f"Agent.replace() cannot change {name!r}")
            if name == "model":
                value = infer_model(value)
                register_secrets(*value.secrets())
            setattr(copied, name, value)
        return copied

    @property
    def config_hash(self) -> str:
        """The agent's version: changes with any prompt, setting, schema or tool source (and
        with what an MCP server serves, once it is open)."""
        if self._open is not None:
            return self._open.config_hash
        return self.spec(self.limits, self.settings, self.model).config_hash

    def spec(self, limits: RunLimits, settings: ModelSettings, model: Model) -> AgentSpec:
        """The immutable description a run executes, remembered for the last combination
        asked for: runs of the same agent share it, and hashing the configuration is not
        free."""
        key = (
            limits,
            settings,
            model,
            self.tools,
            self.instructions,
            self.name,
            self.delimit_tool_results,
            self.redact,
            self.approver,
            self.output,
            self.hooks,
            self.fallback_models,
        )
        cached = self._spec_cache
        if cached is None or not all(a is b or a == b for a, b in zip(cached[0], key, strict=True)):
            config = self.config(limits, settings, model)
            spec = AgentSpec(
                name=self.name,
                model=model,
                tools=self.tools,
                limits=limits,
                settings=self._settings(settings),
                system_prompt=self.system_prompt(),
                delimit_tool_results=self.delimit_tool_results,
                redact=self.redact,
                approver=self.approver,
                config=config,
                config_hash=config_hash(config),
                output=self.output,
                hooks=self.hooks,
                prices=self.prices,
                fallback_models=self.fallback_models,
                run_observers=self.run_observers,
                tool_changes=self._tool_changes,
            )
            cached = self._spec_cache = (key, spec)
        return cached[1]

    async def run(
        self,
        task: str,
        *,
        history: RunResult[Any] | Sequence[Message] = (),
        deps: Any = None,
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
        conversation: ConversationTurn | None = None,
        tool_changes: ToolChanges | None = None,
    ) -> RunResult[OutputT]:
        """Run ``task`` to a final answer. Per-run arguments override the agent's defaults.

        Raises a ``RunError`` (a limit, a tool failure) or ``ModelError``, each carrying
        ``partial`` and ``trace_path``; ``CancelledError`` propagates after the trace records it.
        ``history`` continues a conversation: a previous ``RunResult`` or its
        ``all_messages()`` (the agent's own system prompt is never repeated). ``deps`` reaches
        tools that take a ``RunContext`` and is never written to the trace. ``listener`` sees
        every event as it is written. ``tool_runner``, ``parent`` and ``tool_changes`` are the
        seams replay, fork and resume use: who produces tool results, which run this one
        continues (recorded in the trace header), and which tool lists change at which step
        (besides the tool sources' own changes); ``conversation`` is what ``Conversation``
        passes.
        """
        limits = self.limits.merged(
            max_steps=max_steps,
            max_tool_calls=max_tool_calls,
            run_timeout=run_timeout,
            retry_budget=retry_budget,
        )
        folder = self.trace_dir if isinstance(trace_dir, UseAgentDefault) else trace_dir
        run_model = infer_model(model) if model is not None else self.model
        async with self._sources_opened() as agent:
            run = Run(
                spec=agent.spec(limits, self.settings.merged(settings), run_model),
                task=task,
                history=history,
                trace_dir=Path(folder) if folder is not None else None,
                metadata=metadata or {},
                listener=listener,
                tool_runner=tool_runner,
                parent=parent,
                deps=deps,
                conversation=conversation,
                tool_changes=tool_changes,
            )
            return await run.execute()

    @property
    def is_open(self) -> bool:
        """Inside ``async with agent:``: its tool sources are open for every run."""
        return self._open is not None

    async def __aenter__(self) -> Agent[OutputT]:
        """Open the agent's tool sources once, shared by every run until the block ends."""
        if self._open is not None:
            raise UserError("this agent is already open (nested `async with agent:`)")
        async with contextlib.AsyncExitStack() as stack:
            for source in self.tool_sources:
                await stack.enter_async_context(source)
            self._open = await self._open_sources(stack)
            self._open_stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._open, self._open_stack = self._open_stack, None, None
        if stack is not None:
            await stack.aclose()

    @contextlib.asynccontextmanager
    async def _sources_opened(self) -> AsyncIterator[Agent[OutputT]]:
        """This agent with its sources' tools: the open one inside ``async with agent:``, else
        one whose sources are opened here and closed when the run ends, however it ends."""
        if not self.tool_sources:
            yield self
            return
        async with contextlib.AsyncExitStack() as stack:
            opened = await self._open_sources(stack)  # inside `async with`: shared, cheap
            if self._open is not None:
                if all(a is b for a, b in zip(opened._sourced, self._open._sourced, strict=True)):
                    opened = self._open  # nothing changed: keep its spec (and hash) cached
                self._open = opened
            yield opened

    async def _open_sources(self, stack: contextlib.AsyncExitStack) -> Agent[OutputT]:
        served: list[SourcedTools] = []
        for source in self.tool_sources:
            served.append(await stack.enter_async_context(source.open_tools()))
        opened = copy.copy(self)
        opened.tools = Toolset([*self.tools.values(), *(t for s in served for t in s.tools)])
        opened.tool_sources = ()
        opened._sourced = served
        opened._served = [s.config for s in served]
        opened._tool_changes = tuple(s.changes for s in served if s.changes is not None)
        opened._open = opened._open_stack = opened._spec_cache = None
        return opened

    def run_sync(self, task: str, **kwargs: Any) -> RunResult[OutputT]:
        """Blocking ``run``, for scripts. Inside a running event loop, use ``await run()``."""
        return run_blocking(
            self.run, task, what="Agent.run_sync()", use="await agent.run(...)", **kwargs
        )

    def iter(self, task: str, **kwargs: Any) -> AgentRun[OutputT]:
        """Watch a run event by event: ``async with agent.iter(task) as run: async for e in
        run``. Leaving the block early cancels the run (recorded as ``run_cancelled``)."""
        return AgentRun(self, task, kwargs)

    def stream(self, task: str, **kwargs: Any) -> AgentStream[RunResult[OutputT]]:
        """Watch a run as it happens, the answer's text included: ``async with
        agent.stream(task) as run: async for event in run``, then ``run.result()``. Takes
        ``run``'s arguments; see ``agentloop.streaming``."""
        listener = kwargs.pop("listener", None)
        return AgentStream(lambda seen: self.run(task, listener=seen, **kwargs), listener)

    def stream_sync(self, task: str, **kwargs: Any) -> SyncAgentStream[RunResult[OutputT]]:
        """Blocking ``stream``: ``with agent.stream_sync(task) as run: for event in run``."""
        return SyncAgentStream(self.stream(task, **kwargs))


class AgentRun(Generic[OutputT]):
    """A run in progress, iterated as its events happen; ``result`` once it has ended."""

    def __init__(self, agent: Agent[OutputT], task: str, kwargs: dict[str, Any]) -> None:
        self._queue: asyncio.Queue[BaseEvent | None] = asyncio.Queue()
        self._agent, self._task_text, self._kwargs = agent, task, kwargs
        self._task: asyncio.Task[RunResult[OutputT]] | None = None

    @property
    def result(self) -> RunResult[OutputT]:
        if self._task is None or not self._task.done():
            raise UserError("the run has not ended yet; iterate it to the end first")
        return self._task.result()

    async def __aenter__(self) -> AgentRun[OutputT]:
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


def _otel_observer(otel: bool | TracerProvider, redact: Redactor) -> RunObserver:
    try:
        from agentloop.otel import run_observer
    except ImportError as exc:
        raise UserError(str(exc)) from None
    return run_observer(None if isinstance(otel, bool) else otel, redact=redact)


def config_hash(config: dict[str, Any]) -> str:
    """A short, stable hash of an agent configuration (tool sources included via their
    ``source_hash``)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
