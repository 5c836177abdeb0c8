"""Replay, fork and resume: run a recorded trace again through the same loop.

One mechanism serves all three. ``ReplayModel`` serves the recorded model responses in order,
and a replay tool runner serves the recorded tool results, up to a step; from there the run
either stops (replay), or goes on live with the agent given (fork, resume). Nothing external is
touched while recorded steps are served: no network, no key, no tool runs. Strict replay stops
at the first step where the run departs from the recording; lenient replay notes every
departure and goes on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from agentloop._sync import blocking
from agentloop.agent import Agent
from agentloop.context import ConversationTurn
from agentloop.errors import (
    AgentLoopError,
    HookFailed,
    ReplayDiverged,
    TraceError,
    UserError,
    first_problem,
)
from agentloop.events import BaseEvent, EventListener, RunCancelled
from agentloop.messages import Usage
from agentloop.models.base import Model
from agentloop.observations import MISTAKES
from agentloop.output import OutputSpec
from agentloop.replay.divergence import Divergence, config_divergences
from agentloop.replay.recorded_hooks import recorded_hook_failure, recorded_hooks
from agentloop.replay.recorded_tools import offline_tool, recorded_tool_changes
from agentloop.replay.recording import (
    Checker,
    RecordedCancellation,
    Recording,
    ReplayModel,
    ReplayTools,
)
from agentloop.result import RunResult
from agentloop.settings import USE_AGENT_DEFAULT, ModelSettings, Price, RunLimits, UseAgentDefault
from agentloop.streaming import AgentStream
from agentloop.tools import Tool, ToolChanges, ToolSource
from agentloop.trace import Trace, read_trace, trace_path


@dataclass(frozen=True)
class ReplayResult:
    """What a replay produced, and how it departed from its recording."""

    output: str | None
    diverged: bool
    divergence: Divergence | None
    """The first divergence (configuration differences first), or ``None``."""
    divergences: list[Divergence]
    """All of them; in strict mode the list ends at the first step divergence."""
    trace_path: Path | None
    """The replay's own trace (its header names the source run as ``parent``)."""
    source_run_id: str
    stop_reason: str
    error: str | None = None
    """Why the replayed run stopped without an answer, if it did."""

    def report(self) -> str:
        """A readable summary for a terminal."""
        if not self.diverged:
            return f"replay of {self.source_run_id}: no divergence; output: {self.output!r}"
        lines = [f"replay of {self.source_run_id}: {len(self.divergences)} divergence(s)"]
        lines += [d.describe() for d in self.divergences]
        return "\n".join(lines)


async def replay(
    trace: Trace | str | Path,
    agent: Agent | None = None,
    *,
    tools: Literal["recorded", "live"] = "recorded",
    model: Literal["recorded", "live"] = "recorded",
    fork_at: int | None = None,
    strict: bool = True,
    trace_dir: str | Path | UseAgentDefault | None = USE_AGENT_DEFAULT,
    listener: EventListener | None = None,
    pace: bool = False,
) -> ReplayResult:
    """Run a recorded trace again and report where the run departs from it.

    ``agent`` defaults to an agent rebuilt from the trace header, whose tools can only serve
    recorded results. ``tools="recorded"`` serves the recorded tool results (nothing runs,
    nothing external is touched); ``"live"`` runs the agent's tools and compares their
    results. ``model="live"`` asks the agent's model at every step and compares its actions
    with the recorded ones. ``fork_at=k`` serves steps before ``k`` from the recording and
    continues live with the agent given, with no comparison. ``strict`` stops at the first
    step divergence; ``strict=False`` notes them all. The replay writes its own trace naming
    its parent. Streamed (``replay_stream``), recorded responses arrive as deltas, at once or
    with ``pace`` at the recorded pace. A recording that was cancelled replays to
    ``run_cancelled`` (stop reason ``cancelled``).
    """
    if agent is not None and agent.tool_sources and not agent.is_open:
        async with agent:  # its MCP servers, open for the whole replay (and its config)
            return await replay(
                trace,
                agent,
                tools=tools,
                model=model,
                fork_at=fork_at,
                strict=strict,
                trace_dir=trace_dir,
                listener=listener,
            )
    source = trace if isinstance(trace, Trace) else read_trace(trace)
    recording = Recording(source)
    hook_failure = None
    if agent is None:
        if tools == "live" or model == "live" or fork_at is not None:
            raise UserError("live tools, a live model or a fork need the agent: pass agent=...")
        agent = agent_from_trace(source)
        hook_failure = recorded_hook_failure(source)
    forking = fork_at is not None
    checker = None if forking else Checker(strict)
    if checker is not None:
        checker.found.extend(config_divergences(source.header.agent, agent.config()))
    # Stand-in tools (agent_from_trace without tools) accept what the recording accepted;
    # only real tools can tell whether a recorded call would still be valid.
    offline = all(t.stand_in for t in agent.tools.values())
    replay_model = ReplayModel(
        recording,
        live=agent.model,
        live_from=fork_at,
        compare_live=model == "live",
        checker=checker,
        skip_tool_inputs=tools == "live",
        pace=pace,
    )
    runner = ReplayTools(
        recording, agent, tools, live_from=fork_at, checker=checker, check_calls=not offline
    )
    parent = {
        "run_id": source.run_id,
        "kind": "fork" if forking else "replay",
        "step": fork_at,
        "trace": str(source.path) if source.path else None,
    }
    # Tool lists a source changed mid-run change at the same step here, unless the tools
    # run live (their sources change them again) or the run goes on live from a fork.
    changes = recorded_tool_changes(source) if tools == "recorded" and not forking else None
    result, error = await _run(
        agent,
        source,
        recording,
        replay_model,
        runner,
        parent,
        trace_dir,
        listener,
        hook_failure,
        changes,
    )
    if checker is not None and not isinstance(error, ReplayDiverged):
        _check_ending(checker, recording, replay_model, result)
    found = checker.found if checker is not None else []
    first_step = next((d for d in found if d.step is not None), None)
    return ReplayResult(
        output=_text(result) if result else None,
        diverged=bool(found),
        divergence=found[0] if found else None,
        divergences=list(found) if not (strict and first_step) else _until(found, first_step),
        trace_path=result.trace_path if result else getattr(error, "trace_path", None),
        source_run_id=source.run_id,
        stop_reason=result.stop_reason if result else "error",
        error=str(error) if error else None,
    )


replay_sync = blocking(replay)


def replay_stream(
    trace: Trace | str | Path,
    agent: Agent | None = None,
    *,
    pace: bool = False,
    listener: EventListener | None = None,
    **options: Any,
) -> AgentStream[ReplayResult]:
    """``replay`` watched as it happens, like ``Agent.stream``: ``async with
    replay_stream(trace, pace=True) as run: async for event in run``, then ``run.result()``
    (a ``ReplayResult``). The recorded text arrives word by word, at once or with ``pace`` at
    the recorded pace: a streaming consumer tested offline against a real trace."""
    return AgentStream(
        lambda seen: replay(trace, agent, pace=pace, listener=seen, **options), listener
    )


async def resume(
    trace: Trace | str | Path,
    agent: Agent,
    *,
    trace_dir: str | Path | UseAgentDefault | None = USE_AGENT_DEFAULT,
    max_steps: int | UseAgentDefault | None = USE_AGENT_DEFAULT,
    listener: EventListener | None = None,
) -> RunResult:
    """Continue a run that did not finish (killed, crashed, cancelled, failed).

    The recorded steps are served from the trace; a tool call that started but has no result
    is re-run only if its tool is ``idempotent``, otherwise the model is told it was
    interrupted. A tool failure that ended the run (``tool_errors="raise"``) is run again if
    its tool is idempotent, else the model sees the recorded error as an observation. Then the
    run goes on live to a final answer, in a new trace naming its parent. A run stopped by
    ``max_steps`` or ``max_tool_calls`` needs a higher limit (``UserError`` otherwise).
    """
    if agent.tool_sources and not agent.is_open:
        async with agent:  # its MCP servers, open for the whole resume
            return await resume(
                trace, agent, trace_dir=trace_dir, max_steps=max_steps, listener=listener
            )
    source = trace if isinstance(trace, Trace) else read_trace(trace)
    if source.output is not None:
        raise UserError(f"run {source.run_id} already finished; nothing to resume")
    recording = Recording(source)
    live_from = len(recording.responses)
    steps = max_steps if not isinstance(max_steps, UseAgentDefault) else agent.limits.max_steps
    if steps is not None and steps <= live_from:
        raise UserError(
            f"run {source.run_id} already made {live_from} model requests and max_steps is "
            f"{steps}: raise it to continue (resume(..., max_steps=N) or --max-steps N on the "
            f"command line, N > {live_from})"
        )
    calls = sum(len(c) for c in recording.calls.values())
    limit = agent.limits.max_tool_calls
    stopped = getattr(source.terminal, "reason", None)
    mistakes = sum(r.error in MISTAKES for r in source.tool_results()) + sum(
        e.type == "warning" and getattr(e, "kind", "") == "empty_response" for e in source.events
    )
    budget = agent.limits.retry_budget
    if stopped == "retry_budget" and mistakes > budget:
        raise UserError(
            f"run {source.run_id} stopped after {mistakes} recoverable mistakes and "
            f"retry_budget is {budget}: raise it to {mistakes} or more to continue (the "
            "agent's limits; on the command line, retry_budget in an --agent file's [limits])"
        )
    if limit is not None and calls >= limit and stopped == "max_tool_calls":
        raise UserError(
            f"run {source.run_id} already made {calls} tool calls and max_tool_calls is "
            f"{limit}: raise it to continue (the agent's limits; on the command line, "
            "max_tool_calls in an --agent file's [limits])"
        )
    model = ReplayModel(recording, live=agent.model, live_from=live_from)
    runner = ReplayTools(recording, agent, live_from=live_from, resuming=True)
    parent = {
        "run_id": source.run_id,
        "kind": "resume",
        "step": live_from,
        "trace": str(source.path) if source.path else None,
    }
    return await agent.run(
        source.header.task,
        history=recording.history(),
        model=model,
        tool_runner=runner,
        parent=parent,
        trace_dir=trace_dir,
        max_steps=max_steps,
        metadata=source.header.metadata,
        listener=listener,
    )


resume_sync = blocking(resume)


def agent_from_trace(
    trace: Trace,
    *,
    model: Model | str | None = None,
    tools: Sequence[Tool | Callable[..., Any] | ToolSource] | None = None,
    instructions: str | None = None,
    trust: bool = False,
) -> Agent:
    """An agent rebuilt from a trace header: its instructions, settings, limits and tool
    schemas. By default its model serves the recording and its tools cannot run (an offline
    replay); pass ``model`` and ``tools`` (and new ``instructions``) to go live.

    A trace is data from whoever wrote it. With a live ``model`` the header's
    ``settings.extra`` (fields sent as they are in every request) is left out and its limits
    are kept only where they are no looser than the defaults, unless ``trust=True``.
    """
    config = trace.header.agent
    try:
        settings = ModelSettings.model_validate(config.get("settings", {}))
        limits = RunLimits.model_validate(config.get("limits", {}))
    except ValidationError as exc:  # a hostile or damaged header: a trace error, not a crash
        problem = first_problem(exc)
        raise TraceError(f"{trace.path}: invalid agent in the header: {problem}") from None
    if model is not None and not trust:
        settings = settings.model_copy(update={"extra": {}})
        limits = bounded(limits, RunLimits())
    agent: Agent = Agent(
        model if model is not None else ReplayModel(Recording(trace)),
        tools=tools if tools is not None else [offline_tool(t) for t in config.get("tools", [])],
        instructions=instructions if instructions is not None else config.get("instructions"),
        name=config.get("name", "agent"),
        settings=settings,
        limits=limits,
        delimit_tool_results=bool(config.get("delimit_tool_results", True)),
        hooks=recorded_hooks(trace),
        prices=_prices(config.get("prices")),
    )
    if isinstance(config.get("output"), dict):  # a typed output: same schema, read as JSON
        agent.output = OutputSpec.recorded(config["output"])
    return agent


def bounded(recorded: RunLimits, defaults: RunLimits) -> RunLimits:
    """``recorded`` limits, each no looser than its default (a trace cannot lift a budget)."""
    changes: dict[str, Any] = {}
    for name, default in defaults.model_dump().items():
        value = getattr(recorded, name)
        if isinstance(default, int | float) and not isinstance(default, bool):
            changes[name] = default if value is None else min(value, default)
    return recorded.model_copy(update=changes)


DEFAULT_OPENAI_ENDPOINT = "https://api.openai.com/v1"


def configured_endpoint() -> str:
    """The OpenAI-compatible endpoint this user configured: ``OPENAI_BASE_URL`` or the
    default."""
    return (os.environ.get("OPENAI_BASE_URL") or DEFAULT_OPENAI_ENDPOINT).rstrip("/")


def recorded_model(
    trace: Trace, *, trust: bool = False, options: dict[str, Any] | None = None
) -> Model:
    """The model a trace was recorded with, rebuilt from its header with every option that
    changes behaviour (native tools or the JSON protocol, prompt form, the local model's
    settings); ``options`` override them.

    A trace header never decides where credentials go: an OpenAI-compatible model is rebuilt
    only when its recorded endpoint is the one configured here (``OPENAI_BASE_URL`` or the
    default), and a local model file named in the header is loaded only with ``trust=True``;
    otherwise ``UserError`` names the flag to pass. ``UserError`` too when the header does not
    say enough or the model file is missing.
    """

    config = trace.header.agent.get("model", {})
    kind, name = config.get("kind"), config.get("name")
    given = options or {}
    if kind == "OpenAIModel" and name:
        from agentloop.models.openai import OpenAIModel

        endpoint = str(config.get("endpoint") or "").rstrip("/")
        if endpoint and endpoint != configured_endpoint() and not trust:
            raise UserError(
                f"run {trace.run_id} was recorded against {endpoint}, not the endpoint "
                f"configured here ({configured_endpoint()}), and a trace does not choose where "
                f"your API key goes: pass --model openai:{name} to continue on your endpoint, "
                "or --trust-trace to send the requests to the recorded one"
            )
        base_url = endpoint if trust and endpoint else None
        options = {**_recorded_options(config), **given}
        return _built(trace, OpenAIModel, str(name), options, base_url)
    if kind == "LocalModel":
        from agentloop.models.local import LocalModel

        file = str(config.get("file") or "")
        path = None if not file or file.startswith("bundled:") else file
        if path is not None and not trust:
            raise UserError(
                f"run {trace.run_id} was recorded with the model file {path}; a trace does not "
                f"choose what this machine loads: pass --model local:{path} to use it, or "
                "--trust-trace"
            )
        if path is not None and not Path(path).is_file():
            raise UserError(
                f"run {trace.run_id} was recorded with the model file {path}, which is not on "
                "this machine: pass --model local:/path/to/that/model.gguf (or --model local "
                "for the bundled model)"
            )
        return _built(trace, LocalModel, path, {**_recorded_options(config), **given})
    raise UserError(
        f"cannot rebuild the model of run {trace.run_id} ({kind or 'unknown'} {name or ''}) "
        "from its trace; pass a model (--model MODEL on the command line, or --agent FILE)"
    )


def model_for(spec: str, trace: Trace, options: dict[str, Any] | None = None) -> Model:
    """The model ``spec`` names; when it names the recorded model (same backend and name), with
    the recorded options (``options`` override them), else the backend's defaults plus
    ``options``."""
    from agentloop.models import infer_model

    given = options or {}
    model = infer_model(spec, **given)
    recorded = trace.header.agent.get("model", {})
    if (model.config().get("kind"), model.name) != (recorded.get("kind"), recorded.get("name")):
        return model
    if recorded.get("kind") == "LocalModel" and model.config().get("file") != recorded.get("file"):
        return model
    return infer_model(spec, **{**_recorded_options(recorded), **given})


_LOCAL_OPTIONS = ("context_size", "temperature", "seed", "max_tokens", "prompt_form", "tool_first")


def _recorded_options(config: dict[str, Any]) -> dict[str, Any]:
    """The constructor options a model header records."""
    if config.get("kind") == "OpenAIModel":
        if config.get("protocol") != "json":
            return {}
        return {"native_tools": False, "prompt_form": config.get("prompt_form", "chat")}
    if config.get("kind") == "LocalModel":
        return {key: config[key] for key in _LOCAL_OPTIONS if key in config}
    return {}


def _built(
    trace: Trace,
    backend: Callable[..., Model],
    name: str | None,
    options: dict[str, Any],
    base_url: str | None = None,
) -> Model:
    if base_url is not None:
        options = {**options, "base_url": base_url}
    try:
        return backend(name, **options)
    except TypeError as exc:
        raise UserError(f"cannot rebuild the model of run {trace.run_id}: {exc}") from None


async def _run(
    agent: Agent,
    source: Trace,
    recording: Recording,
    model: ReplayModel,
    runner: ReplayTools,
    parent: dict[str, Any],
    trace_dir: str | Path | UseAgentDefault | None,
    listener: EventListener | None,
    hook_failure: tuple[int, str, str] | None = None,
    tool_changes: ToolChanges | None = None,
) -> tuple[RunResult | None, AgentLoopError | None]:
    ended_as: list[str] = []

    def watch(event: BaseEvent) -> None:
        if isinstance(event, RunCancelled):
            ended_as.append(event.run_id)
        if listener is not None:
            listener(event)
        if (
            hook_failure is not None
            and (event.seq, getattr(event, "type", None)) == hook_failure[:2]
        ):
            raise HookFailed(hook_failure[2], hook="recorded")

    try:
        result = await agent.run(
            source.header.task,
            history=recording.history(),
            model=model,
            tool_runner=runner,
            parent=parent,
            trace_dir=trace_dir,
            metadata=source.header.metadata,
            listener=watch,
            conversation=_conversation(source),
            tool_changes=tool_changes,
        )
    except AgentLoopError as exc:
        return exc.partial, exc
    except RecordedCancellation:  # the recording was cancelled here; so is its replay
        folder = agent.trace_dir if isinstance(trace_dir, UseAgentDefault) else trace_dir
        ended = ended_as[-1] if ended_as else None
        path = trace_path(Path(folder), ended) if folder is not None and ended else None
        cancelled = RunResult(
            output=None,
            stop_reason="cancelled",
            steps=model.served,
            usage=Usage(),
            trace_path=path,
            messages=[],
            run_id=ended or "",
        )
        return cancelled, None
    return result, None


def _check_ending(
    checker: Checker, recording: Recording, model: ReplayModel, result: RunResult | None
) -> None:
    """Compare how the replay ended with how the recording ended."""
    end = recording.trace.terminal
    if model.served < len(recording.responses):
        checker.found.append(
            Divergence(
                step=model.served,
                kind="fewer_steps",
                expected=len(recording.responses),
                actual=model.served,
                detail="the run ended before the recording did",
            )
        )
    if end is None or result is None:
        return
    expected = _ending(end.type, getattr(end, "output", None), getattr(end, "reason", None))
    actual = _ending(
        "run_finished" if result.stop_reason == "final_answer" else "run_failed",
        result.output_text if result.output_text is not None else result.output,
        result.stop_reason,
    )
    if expected != actual and end.type != "run_cancelled":
        checker.found.append(
            Divergence(step=result.steps, kind="outcome_changed", expected=expected, actual=actual)
        )


def _ending(kind: str, output: str | None, reason: str | None) -> str:
    return f"finished: {output}" if kind == "run_finished" else f"{kind}: {reason}"


def _until(found: list[Divergence], stop: Divergence) -> list[Divergence]:
    return found[: found.index(stop) + 1]


def _text(result: RunResult[Any]) -> str | None:
    """The answer as the model wrote it (a typed output's JSON text)."""
    if result.output_text is not None:
        return result.output_text
    return None if result.output is None else str(result.output)


def _prices(recorded: Any) -> dict[str, Price]:
    """The price table a header recorded (budgets need it to replay), or none."""
    if not isinstance(recorded, dict):
        return {}
    try:
        return {str(k): Price.model_validate(v) for k, v in recorded.items()}
    except ValidationError as exc:
        raise TraceError(f"the trace header's prices are not valid: {first_problem(exc)}") from None


def _conversation(source: Trace) -> ConversationTurn | None:
    """The conversation turn the source recorded (its budget included), if any."""
    recorded = source.header.conversation
    if not recorded:
        return None
    try:
        return ConversationTurn.from_header(recorded)
    except (KeyError, TypeError, ValueError) as exc:
        raise TraceError(f"the trace header's conversation is not valid: {exc}") from None
