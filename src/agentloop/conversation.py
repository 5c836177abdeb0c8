"""A conversation: runs of one agent linked turn by turn.

``Conversation(agent)`` keeps the messages between turns (each turn's ``history`` is the
previous turn's result, so the system prompt is never repeated), links each turn's trace to the
conversation and to the previous run in its header (``conversation: {id, turn,
previous_run_id}``), and counts usage and cost across turns so ``RunLimits`` token and cost
limits can hold for the whole conversation (``limits=``). A conversation's traces can be listed
(``agentloop traces list``), replayed turn by turn and exported as one multi-turn example.
Agent layer.
"""

from __future__ import annotations

import uuid
from typing import Any, Generic

from agentloop._sync import run_blocking
from agentloop.agent import Agent
from agentloop.context import ConversationTurn
from agentloop.messages import Message, Usage
from agentloop.result import OutputT, RunResult
from agentloop.settings import RunLimits


class Conversation(Generic[OutputT]):
    """Turns with one agent; ``run`` (async) and ``run_sync`` take one turn each."""

    def __init__(
        self,
        agent: Agent[OutputT],
        conversation_id: str | None = None,
        *,
        limits: RunLimits | None = None,
    ) -> None:
        """``limits`` (token and cost limits) hold for the whole conversation; the agent's own
        limits still hold for each turn."""
        self.agent = agent
        self.id = conversation_id or uuid.uuid4().hex
        self.limits = limits
        self.results: list[RunResult[OutputT]] = []
        self.usage = Usage()
        self.cost = 0.0

    async def run(self, task: str, **options: Any) -> RunResult[OutputT]:
        """One turn: ``agent.run(task, history=<the previous turn>, ...)``. A turn that fails
        still counts its usage; its partial messages are not carried into the next turn."""
        last = self.results[-1] if self.results else None
        turn = ConversationTurn(
            id=self.id,
            turn=len(self.results),
            previous_run_id=last.run_id if last else None,
            usage_before=self.usage,
            cost_before=self.cost,
            limits=self.limits,
        )
        try:
            result = await self.agent.run(
                task, history=last if last is not None else (), conversation=turn, **options
            )
        except Exception as exc:
            partial = getattr(exc, "partial", None)
            if isinstance(partial, RunResult):
                self.usage += partial.usage
                self.cost += partial.cost or 0.0
            raise
        self.results.append(result)
        self.usage += result.usage
        self.cost += result.cost or 0.0
        return result

    def run_sync(self, task: str, **options: Any) -> RunResult[OutputT]:
        """Blocking ``run``, for scripts and terminals."""
        return run_blocking(
            self.run, task, what="Conversation.run_sync()", use="await conversation.run(...)",
            **options,
        )  # fmt: skip

    def all_messages(self) -> list[Message]:
        """The conversation so far (the last turn's ``all_messages()``)."""
        return self.results[-1].all_messages() if self.results else []
