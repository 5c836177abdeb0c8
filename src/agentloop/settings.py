"""Run limits and model settings, and the rule that merges them: agent default < per-run value."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from agentloop.types import ToolErrorPolicy


class UseAgentDefault:
    """Sentinel type: "not given, use the agent's value", as opposed to ``None`` ("no limit")."""

    _instance: UseAgentDefault | None = None

    def __new__(cls) -> UseAgentDefault:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "USE_AGENT_DEFAULT"


USE_AGENT_DEFAULT: Final = UseAgentDefault()


class RunLimits(BaseModel):
    """Budgets that end a run with a typed ``RunLimitExceeded`` error when they run out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_steps: int | None = Field(default=20, ge=1)
    """Most model requests in one run; ``None`` for no limit."""
    max_tool_calls: int | None = Field(default=None, ge=0)
    """Most tool calls in one run, counted as the model asks for them; ``None`` for no limit."""
    tool_timeout: float | None = Field(default=60.0, gt=0)
    """Seconds one tool call may take unless the tool sets its own; ``None`` waits forever."""
    run_timeout: float | None = Field(default=None, gt=0)
    """Wall-clock seconds for the whole run; ``None`` for no limit."""
    retry_budget: int = Field(default=3, ge=0)
    """How many recoverable mistakes (bad arguments, unknown tools, ``ToolRetry``, tool timeouts,
    cut-off calls, empty answers) the model may make in one run before it fails."""
    tool_concurrency: int = Field(default=8, ge=1)
    """Most tool calls from one model response running at once."""
    max_observation_chars: int = Field(default=20_000, ge=100)
    """Longer tool results are cut to this many characters, with a marker saying so."""
    tool_errors: ToolErrorPolicy = "raise"
    """``"raise"`` ends the run on an unexpected tool exception; ``"observe"`` shows the model
    a short message instead. The trace records the exception either way."""
    max_input_tokens: int | None = Field(default=None, ge=1)
    """Most prompt tokens over the run (or the conversation, for a ``Conversation``)."""
    max_output_tokens: int | None = Field(default=None, ge=1)
    """Most generated tokens over the run (or the conversation)."""
    max_total_tokens: int | None = Field(default=None, ge=1)
    """Most tokens in all over the run (or the conversation)."""
    max_cost: float | None = Field(default=None, gt=0)
    """Most the run (or the conversation) may cost, in the currency of the agent's ``prices``
    (which it needs)."""

    def merged(self, **overrides: Any) -> RunLimits:
        """These limits with every override that is not ``USE_AGENT_DEFAULT`` applied."""
        given = {k: v for k, v in overrides.items() if v is not USE_AGENT_DEFAULT}
        return self.model_copy(update=given) if given else self


class Price(BaseModel):
    """What a model costs, per million tokens (in any one currency, used consistently)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


class ModelSettings(BaseModel):
    """Sampling settings passed to the model on every request; ``None`` leaves the backend's
    default in place."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    parallel_tool_calls: bool | None = None
    tool_choice: str | None = None
    """``"auto"``, ``"required"`` (a tool call, no answer yet), ``"none"`` (answer now) or a
    tool's name (call that tool). Sent as ``tool_choice`` to a native backend; the JSON action
    protocol narrows its action schema the same way."""
    json_schema: dict[str, Any] | None = None
    """Constrain the answer to this JSON Schema where the backend can (an OpenAI-compatible
    server's ``response_format``; a grammar for llama.cpp). Validate the answer anyway."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """Backend-specific fields sent as they are (for an OpenAI-compatible server: extra body)."""

    def merged(self, other: ModelSettings | None) -> ModelSettings:
        """These settings, overridden field by field by what ``other`` sets."""
        if other is None:
            return self
        given = other.model_dump(exclude_unset=True)
        if "extra" in given:
            given["extra"] = {**self.extra, **other.extra}
        return self.model_copy(update=given)
