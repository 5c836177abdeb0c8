"""Every error agentloop raises, rooted in one class.

Catch ``AgentLoopError`` to catch them all. The tree::

    AgentLoopError
      UserError                 misuse of the API: fix your code or configuration
        ToolDefinitionError     a tool cannot be built (bad schema, bad signature, duplicate name)
        ScriptError             a ScriptedModel was called past its script or left steps unused
        ModelRequestsBlocked    a real model request was attempted while requests are blocked
      TraceError                a file is not a readable agentloop trace
        TraceFormatError        the trace was written by a newer, unknown format version
      ModelError                the model backend failed; names the model and the endpoint
        ModelConnectionError    the endpoint could not be reached (after retries)
        ModelTimeoutError       the endpoint did not answer in time (after retries)
        ModelHTTPError          the endpoint answered with an error status
          ModelAuthError        401/403: the key is missing, wrong or not allowed
          ModelNotFoundError    404: unknown model or wrong base_url
          ModelRateLimited      429 that retries could not get past
          ContextWindowExceeded the conversation no longer fits the model's context
        ModelResponseError      the answer could not be used (malformed body, empty twice)
          ModelStreamError      a stream broke (dropped, stalled, malformed, error event);
                                carries what had arrived (``partial_text``)
          OutputTruncated       the answer was cut off by the token limit (finish_reason=length)
      RunError                  a run stopped early; carries the partial result and trace path
        RunLimitExceeded        a budget ran out
          MaxStepsExceeded
          MaxToolCallsExceeded
          RunTimeout
          RetryBudgetExhausted  the model kept making recoverable mistakes
          TokenLimitExceeded    the run (or its conversation) used more tokens than allowed
          CostLimitExceeded     the run (or its conversation) cost more than allowed
        GuardrailTripped        an input or output guardrail stopped the run
        HookFailed              a hook raised; the run stopped and its trace says where
        ToolExecutionError      a tool raised unexpectedly and tool_errors="raise"
        ReplayDiverged          a strict replay departed from its recording

Errors that the *model* should see (bad arguments, unknown tools, ``ToolRetry``, timeouts) are
not raised to the caller: they become observations. ``ToolRetry`` is the one a tool raises on
purpose, and it is deliberately not an ``AgentLoopError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pydantic import ValidationError

    from agentloop.result import RunResult


class AgentLoopError(Exception):
    """Root of every error agentloop raises.

    When the error ends a run, the agent attaches what was done so far: ``partial`` (a
    ``RunResult``) and ``trace_path`` (the run's trace, which always ends with a terminal event).
    """

    partial: RunResult | None = None
    trace_path: Path | None = None


class ValidationProblem(NamedTuple):
    """The first thing pydantic found wrong with a value, for an error message that names the
    field to fix."""

    where: str
    """The dotted path of the field (``settings.temperature``); empty for the value itself."""
    message: str
    kind: str
    """Pydantic's error type, e.g. ``extra_forbidden`` for an unknown field."""

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


def first_problem(exc: ValidationError) -> ValidationProblem:
    """The first error in ``exc``."""
    error = exc.errors(include_url=False)[0]
    return ValidationProblem(".".join(str(p) for p in error["loc"]), error["msg"], error["type"])


class UserError(AgentLoopError):
    """The API was used in a way that cannot work; the message says what to change."""


class ToolDefinitionError(UserError):
    """A tool could not be built or registered."""


class ScriptError(UserError):
    """A scripted test model was used differently from its script."""


class ModelRequestsBlocked(UserError):
    """A real model request was attempted inside ``block_model_requests()``."""


class TraceError(AgentLoopError):
    """A file could not be read as an agentloop trace."""


class TraceFormatError(TraceError):
    """The trace uses a format version this agentloop does not know."""


class ModelError(AgentLoopError):
    """The model backend failed. ``model`` and ``endpoint`` say which one."""

    def __init__(self, message: str, *, model: str = "", endpoint: str = "") -> None:
        where = ", ".join(p for p in (f"model={model!r}" if model else "", endpoint) if p)
        super().__init__(f"{message} ({where})" if where else message)
        self.model = model
        self.endpoint = endpoint


class ModelConnectionError(ModelError):
    """The endpoint could not be reached."""


class ModelTimeoutError(ModelError):
    """The endpoint did not answer in time."""


class ModelHTTPError(ModelError):
    """The endpoint answered with an HTTP error status."""

    def __init__(self, message: str, *, status: int, model: str = "", endpoint: str = "") -> None:
        super().__init__(message, model=model, endpoint=endpoint)
        self.status = status


class ModelAuthError(ModelHTTPError):
    """401 or 403: check the API key (it is never echoed) and its permissions."""


class ModelNotFoundError(ModelHTTPError):
    """404: the model name or the base_url is wrong."""


class ModelRateLimited(ModelHTTPError):
    """429 that the retry layer could not get past (or Retry-After beyond the cap)."""


class ContextWindowExceeded(ModelHTTPError):
    """The request no longer fits the model's context window; retrying cannot help."""


class ModelResponseError(ModelError):
    """The model's answer could not be used."""


class ModelStreamError(ModelResponseError):
    """A streamed response broke off: the connection dropped or stalled after output had
    reached the caller (before that, the request is retried), a line was not server-sent
    events, or the server sent an error in the middle of the stream.

    ``partial_text`` is the text that had arrived, ``partial_tool_calls`` the raw tool calls
    (name, argument text so far); the run's trace keeps both."""

    def __init__(
        self,
        message: str,
        *,
        partial_text: str = "",
        partial_tool_calls: tuple[tuple[str, str], ...] = (),
        model: str = "",
        endpoint: str = "",
    ) -> None:
        super().__init__(message, model=model, endpoint=endpoint)
        self.partial_text = partial_text
        self.partial_tool_calls = partial_tool_calls


class OutputTruncated(ModelResponseError):
    """The model's output was cut off by the token limit (``finish_reason="length"``) before it
    held a complete action: it is neither run nor taken as the answer. ``text`` is what the
    model wrote before the cut. Retrying with the same settings would be cut again; raise
    ``max_tokens``."""

    def __init__(self, message: str, *, text: str, model: str = "", endpoint: str = "") -> None:
        super().__init__(message, model=model, endpoint=endpoint)
        self.text = text


class RunError(AgentLoopError):
    """A run ended before a final answer."""


class RunLimitExceeded(RunError):
    """A run budget (steps, tool calls, time, retries) ran out."""


class MaxStepsExceeded(RunLimitExceeded):
    """The run used ``max_steps`` model requests without a final answer."""


class MaxToolCallsExceeded(RunLimitExceeded):
    """The run asked for more tool calls than ``max_tool_calls``."""


class RunTimeout(RunLimitExceeded):
    """The run took longer than ``run_timeout`` seconds."""


class RetryBudgetExhausted(RunLimitExceeded):
    """The model made more recoverable mistakes than ``retry_budget`` allows."""


class TokenLimitExceeded(RunLimitExceeded):
    """The run (or its conversation) used more input, output or total tokens than its
    ``RunLimits`` allow."""


class CostLimitExceeded(RunLimitExceeded):
    """The run (or its conversation) cost more than ``RunLimits.max_cost``, priced by the
    agent's ``prices`` table."""


class GuardrailTripped(RunError):
    """An input or output guardrail refused the task or the final output."""

    def __init__(self, message: str, *, guardrail: str) -> None:
        super().__init__(message)
        self.guardrail = guardrail


class HookFailed(RunError):
    """A hook raised an exception: the run stopped (recorded in its trace) and ``hook`` names
    which one."""

    def __init__(self, message: str, *, hook: str) -> None:
        super().__init__(message)
        self.hook = hook


class ToolExecutionError(RunError):
    """A tool raised an unexpected exception and the agent runs with ``tool_errors="raise"``."""

    def __init__(self, message: str, *, tool: str, call_id: str) -> None:
        super().__init__(message)
        self.tool = tool
        self.call_id = call_id


class ReplayDiverged(RunError):
    """A strict replay found the run departing from its recording; ``divergence`` says how."""

    def __init__(self, message: str, divergence: object) -> None:
        super().__init__(message)
        self.divergence = divergence


class ToolRetry(Exception):
    """Raise inside a tool to send ``message`` back to the model as the call's result.

    Use it for mistakes the model can fix (a missing file, a bad id). It counts against the run's
    retry budget.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
