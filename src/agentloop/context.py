"""What a tool may know about the run that calls it: ``RunContext``.

A tool whose first parameter is annotated ``RunContext[Deps]`` receives the run's ``deps``
(whatever the app passed as ``agent.run(task, deps=...)``: a database handle, a client, a user),
the run id, the step, the usage so far and the approver. That parameter is not part of the
tool's schema: the model never sees it. ``deps`` is never written to the trace (only its type
name is). Core layer: imports only ``messages``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic

from typing_extensions import TypeVar

from agentloop.messages import Usage

DepsT = TypeVar("DepsT", default=Any)


@dataclass(frozen=True)
class RunContext(Generic[DepsT]):
    """The run as a tool sees it."""

    deps: DepsT
    """What the app passed as ``deps=`` (``None`` if nothing)."""
    run_id: str
    step: int
    """The step (model request) whose tool calls are running, from 0."""
    usage: Usage
    """Tokens used by the run so far."""
    approver: Callable[..., Any] | None = None
    conversation_id: str | None = None


@dataclass(frozen=True)
class ConversationTurn:
    """Where a run sits in a conversation (``agentloop.conversation``): recorded in its trace
    header, and the usage and cost of the earlier turns, which conversation budgets count."""

    id: str
    turn: int
    """From 0."""
    previous_run_id: str | None = None
    usage_before: Usage = field(default_factory=Usage)
    cost_before: float = 0.0
    limits: Any = None
    """The conversation's ``RunLimits`` (token and cost limits over all turns), if any."""

    def header(self) -> dict[str, Any]:
        """What the trace header records; with conversation limits, also what the earlier
        turns used, so a replay of this turn is held to the same budget."""
        recorded: dict[str, Any] = {
            "id": self.id,
            "turn": self.turn,
            "previous_run_id": self.previous_run_id,
        }
        if self.limits is not None:
            recorded["usage_before"] = self.usage_before.model_dump()
            recorded["cost_before"] = self.cost_before
            recorded["limits"] = self.limits.model_dump(mode="json")
        return recorded

    @staticmethod
    def from_header(recorded: dict[str, Any]) -> ConversationTurn:
        """The turn a trace header recorded (``ValueError`` if it is not one)."""
        from agentloop.settings import RunLimits

        limits = recorded.get("limits")
        return ConversationTurn(
            id=str(recorded["id"]),
            turn=int(recorded.get("turn", 0)),
            previous_run_id=recorded.get("previous_run_id"),
            usage_before=Usage.model_validate(recorded.get("usage_before") or {}),
            cost_before=float(recorded.get("cost_before") or 0.0),
            limits=RunLimits.model_validate(limits) if isinstance(limits, dict) else None,
        )


_current: ContextVar[RunContext[Any] | None] = ContextVar("agentloop_run_context", default=None)


def current_run_context() -> RunContext[Any]:
    """The context of the run whose tool is executing (set by the loop around each step's
    tool calls; worker threads and tasks inherit it)."""
    context = _current.get()
    if context is None:
        raise LookupError("no agentloop run is executing a tool in this context")
    return context


def set_run_context(context: RunContext[Any] | None) -> None:
    """Make ``context`` the one tools of the current task see (the loop's job)."""
    _current.set(context)


def is_run_context(annotation: Any) -> bool:
    """Whether a parameter annotation is ``RunContext`` or ``RunContext[...]``."""
    origin = getattr(annotation, "__origin__", annotation)
    return origin is RunContext
