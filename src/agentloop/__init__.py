"""agentloop: a tool-using agent runtime with full traces, replay, evaluation and feedback.

The public API of the runtime is this module's ``__all__``: agents, tools, models, results,
errors, traces, and replay/resume. Evaluation lives in ``agentloop.evals`` and feedback
(critique, human feedback, export) in ``agentloop.feedback``. Everything else is internal and
may change.

Agent files are loaded on first use (``agentloop.load_agent``), so ``import agentloop`` stays
quick for code that needs none. (Replay cannot be: the function ``agentloop.replay`` shares its
name with the subpackage, which would shadow it once imported.)
"""

import typing

from agentloop.agent import Agent, AgentRun
from agentloop.context import RunContext
from agentloop.conversation import Conversation
from agentloop.errors import (
    AgentLoopError,
    ContextWindowExceeded,
    CostLimitExceeded,
    GuardrailTripped,
    HookFailed,
    MaxStepsExceeded,
    MaxToolCallsExceeded,
    ModelError,
    RetryBudgetExhausted,
    RunError,
    RunLimitExceeded,
    RunTimeout,
    TokenLimitExceeded,
    ToolExecutionError,
    ToolRetry,
    TraceError,
    UserError,
)
from agentloop.hooks import Hooks
from agentloop.messages import Message, ModelResponse, ToolCallPart, Usage
from agentloop.models import Model
from agentloop.observations import Observation
from agentloop.redaction import Redactor
from agentloop.replay import Divergence, ReplayResult, replay, replay_sync, resume, resume_sync
from agentloop.result import RunResult
from agentloop.settings import ModelSettings, Price, RunLimits
from agentloop.tools import Tool, Toolset, tool
from agentloop.trace import Trace, read_trace

if typing.TYPE_CHECKING:
    from agentloop.agentfile import load_agent

_LAZY = {"load_agent": "agentloop.agentfile"}


def __getattr__(name: str) -> typing.Any:
    """The names of ``_LAZY``, imported when first asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module 'agentloop' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__version__ = "0.1.0.dev0"

__all__ = [
    "Agent",
    "AgentLoopError",
    "AgentRun",
    "ContextWindowExceeded",
    "Conversation",
    "CostLimitExceeded",
    "Divergence",
    "GuardrailTripped",
    "HookFailed",
    "Hooks",
    "MaxStepsExceeded",
    "MaxToolCallsExceeded",
    "Message",
    "Model",
    "ModelError",
    "ModelResponse",
    "ModelSettings",
    "Observation",
    "Price",
    "Redactor",
    "ReplayResult",
    "RetryBudgetExhausted",
    "RunContext",
    "RunError",
    "RunLimitExceeded",
    "RunLimits",
    "RunResult",
    "RunTimeout",
    "TokenLimitExceeded",
    "Tool",
    "ToolCallPart",
    "ToolExecutionError",
    "ToolRetry",
    "Toolset",
    "Trace",
    "TraceError",
    "Usage",
    "UserError",
    "__version__",
    "load_agent",
    "read_trace",
    "replay",
    "replay_sync",
    "resume",
    "resume_sync",
    "tool",
]
