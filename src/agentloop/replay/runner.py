"""Replay, fork and resume: run a recorded trace again through the same loop.

One mechanism serves all three. ``ReplayModel`` serves the recorded model responses in order,
and a replay tool runner serves the recorded tool results, up to a step; from there the run
either stops (replay), or goes on live with the agent given (fork, resume). Nothing external is
touched while recorded steps are served: no network, no key, no tool runs. Strict replay stops
at the first step where the run departs from the recording; lenient replay notes every
departure and goes on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agentloop._sync import blocking
from agentloop.agent import Agent
from agentloop.errors import AgentLoopError, ReplayDiverged, UserError
from agentloop.events import BaseEvent, EventListener, RunCancelled
from agentloop.messages import Usage
from agentloop.models.base import Model
from agentloop.replay.divergence import Divergence, config_divergences
from agentloop.replay.recording import (
    Checker,
    RecordedCancellation,
    Recording,
    ReplayModel,
    ReplayTools,
)
from agentloop.result import RunResult
from agentloop.settings import USE_AGENT_DEFAULT, ModelSettings, RunLimits, UseAgentDefault
from agentloop.streaming import AgentStream
from agentloop.tools import Tool
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
    source = trace if isinstance(trace, Trace) else read_trace(trace)
    recording = Recording(source)
    if agent is None:
        if tools == "live" or model == "live" or fork_at is not None:
            raise UserError("live tools, a live model or a fork need the agent: pass agent=...")
        agent = agent_from_trace(source)
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
    result, error = await _run(
        agent, source, recording, replay_model, runner, parent, trace_dir, listener
    )
    if checker is not None and not isinstance(error, ReplayDiverged):
        _check_ending(checker, recording, replay_model, result)
    found = checker.found if checker is not None else []
    first_step = next((d for d in found if d.step is not None), None)
    return ReplayResult(
        output=result.output if result else None,
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
    """Continue a run that did not finish (killed, crashed, cancelled, failed on a limit).

    The recorded steps are served from the trace; a tool call that started but has no result
    is re-run only if its tool is ``idempotent``, otherwise the model is told it was
    interrupted; then the run goes on live to a final answer, in a new trace naming its parent.
    """
    source = trace if isinstance(trace, Trace) else read_trace(trace)
    if source.output is not None:
        raise UserError(f"run {source.run_id} already finished; nothing to resume")
    recording = Recording(source)
    live_from = len(recording.responses)
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
    tools: Sequence[Tool | Callable[..., Any]] | None = None,
    instructions: str | None = None,
) -> Agent:
    """An agent rebuilt from a trace header: its instructions, settings, limits and tool
    schemas. By default its model serves the recording and its tools cannot run (an offline
    replay); pass ``model`` and ``tools`` (and new ``instructions``) to go live."""
    config = trace.header.agent
    return Agent(
        model if model is not None else ReplayModel(Recording(trace)),
        tools=tools if tools is not None else [_offline_tool(t) for t in config.get("tools", [])],
        instructions=instructions if instructions is not None else config.get("instructions"),
        name=config.get("name", "agent"),
        settings=ModelSettings.model_validate(config.get("settings", {})),
        limits=RunLimits.model_validate(config.get("limits", {})),
        delimit_tool_results=bool(config.get("delimit_tool_results", True)),
    )


def recorded_model(trace: Trace) -> Model:
    """The model a trace was recorded with, rebuilt from its header (for resuming or forking
    with the same model); ``UserError`` if the header does not say enough."""
    from agentloop.models import infer_model

    config = trace.header.agent.get("model", {})
    kind, name = config.get("kind"), config.get("name")
    if kind == "OpenAIModel" and name:
        from agentloop.models.openai import OpenAIModel

        return OpenAIModel(str(name), base_url=config.get("endpoint"))
    if isinstance(config.get("spec"), str):
        return infer_model(config["spec"])
    raise UserError(
        f"cannot rebuild the model of run {trace.run_id} ({kind or 'unknown'} {name or ''}) "
        "from its trace; pass a model (--model MODEL on the command line)"
    )


async def _run(
    agent: Agent,
    source: Trace,
    recording: Recording,
    model: ReplayModel,
    runner: ReplayTools,
    parent: dict[str, Any],
    trace_dir: str | Path | UseAgentDefault | None,
    listener: EventListener | None,
) -> tuple[RunResult | None, AgentLoopError | None]:
    ended_as: list[str] = []

    def watch(event: BaseEvent) -> None:
        if isinstance(event, RunCancelled):
            ended_as.append(event.run_id)
        if listener is not None:
            listener(event)

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
        result.output,
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


def _offline_tool(spec: dict[str, Any]) -> Tool:
    name = spec["name"]

    def unavailable(**_: Any) -> Any:
        raise UserError(f"tool {name!r} is not available in an offline replay")

    tool = Tool.from_schema(
        name=name,
        description=spec.get("description", ""),
        parameters=spec.get("parameters", {"type": "object"}),
        func=unavailable,
        timeout=spec.get("timeout"),
        requires_approval=bool(spec.get("requires_approval")),
        idempotent=bool(spec.get("idempotent")),
    )
    # Validation already happened in the recorded run, and its outcome (a rejection message or
    # the result) is served from the trace; re-validating with jsonschema could disagree with
    # the original validator (pydantic converts "3" to 3, jsonschema does not).
    return dataclasses.replace(
        tool, validate=dict, source_hash=spec.get("source_hash", ""), stand_in=True
    )
