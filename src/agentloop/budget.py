"""Token and cost budgets: ``RunLimits`` token and cost limits checked after each response.

A run's usage is checked against its own limits, and (for a turn of a ``Conversation`` with
``limits=``) the conversation's usage so far plus the run's against the conversation's. Cost
comes from the agent's ``prices`` (per model name, per million tokens). Exceeding a limit ends
the run with ``TokenLimitExceeded`` or ``CostLimitExceeded``, which carry the partial result.
Core layer.
"""

from __future__ import annotations

from collections.abc import Mapping

from agentloop.context import ConversationTurn
from agentloop.errors import CostLimitExceeded, TokenLimitExceeded
from agentloop.messages import Usage
from agentloop.settings import Price, RunLimits


class Budget:
    """The limits one run is held to."""

    def __init__(
        self,
        limits: RunLimits,
        prices: Mapping[str, Price],
        conversation: ConversationTurn | None = None,
    ) -> None:
        self.limits, self.prices, self.conversation = limits, prices, conversation
        scopes: list[tuple[str, RunLimits, Usage, float]] = [("run", limits, Usage(), 0.0)]
        if conversation is not None and isinstance(conversation.limits, RunLimits):
            scopes.append(
                (
                    "conversation",
                    conversation.limits,
                    conversation.usage_before,
                    conversation.cost_before,
                )
            )
        self.scopes = [s for s in scopes if _limited(s[1])]

    def cost(self, usage: Usage, model: str) -> float | None:
        """What ``usage`` cost by the price table, or ``None`` without a price for ``model``."""
        price = self.prices.get(model)
        if price is None:
            return None
        return price.cost(usage.input_tokens, usage.output_tokens)

    def check(self, usage: Usage, model: str) -> None:
        """Raise if the run's ``usage`` so far exceeds a limit."""
        for scope, limits, before, cost_before in self.scopes:
            total = before + usage
            for name, used, limit in (
                ("max_input_tokens", total.input_tokens, limits.max_input_tokens),
                ("max_output_tokens", total.output_tokens, limits.max_output_tokens),
                ("max_total_tokens", total.total_tokens, limits.max_total_tokens),
            ):
                if limit is not None and used > limit:
                    raise TokenLimitExceeded(
                        f"the {scope} used {used} tokens, beyond {name}={limit}"
                    )
            if limits.max_cost is not None:
                cost = self.cost(usage, model)
                if cost is None:
                    raise CostLimitExceeded(
                        f"max_cost is set but prices= has no price for model {model!r}"
                    )
                if cost_before + cost > limits.max_cost:
                    raise CostLimitExceeded(
                        f"the {scope} cost {cost_before + cost:.6g}, beyond "
                        f"max_cost={limits.max_cost:g}"
                    )


def _limited(limits: RunLimits) -> bool:
    return any(
        v is not None
        for v in (
            limits.max_input_tokens,
            limits.max_output_tokens,
            limits.max_total_tokens,
            limits.max_cost,
        )
    )
