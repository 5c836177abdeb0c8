"""agentloop: a tool-using agent runtime with full traces, replay, evaluation and feedback.

The public API is this module's ``__all__``; everything else is internal and may change.
"""

from agentloop.agent import Agent, AgentRun
from agentloop.critique import critique
from agentloop.datasets import Case, Dataset
from agentloop.divergence import Divergence
from agentloop.errors import (
    AgentLoopError,
    ContextWindowExceeded,
    MaxStepsExceeded,
    MaxToolCallsExceeded,
    ModelError,
    RetryBudgetExhausted,
    RunError,
    RunLimitExceeded,
    RunTimeout,
    ToolExecutionError,
    ToolRetry,
    TraceError,
    UserError,
)
from agentloop.evals import EvalRun, evaluate, evaluate_async
from agentloop.feedback import add_feedback
from agentloop.messages import Message, ModelResponse, ToolCallPart, Usage
from agentloop.models import Model
from agentloop.observations import Observation
from agentloop.redaction import Redactor
from agentloop.replay import ReplayResult, replay, replay_async, resume, resume_async
from agentloop.result import RunResult
from agentloop.scorers import Score, Scorer
from agentloop.settings import ModelSettings, RunLimits
from agentloop.tools import Tool, Toolset, tool
from agentloop.trace import Trace, read_trace

__version__ = "0.1.0.dev0"

__all__ = [
    "Agent",
    "AgentLoopError",
    "AgentRun",
    "Case",
    "ContextWindowExceeded",
    "Dataset",
    "Divergence",
    "EvalRun",
    "MaxStepsExceeded",
    "MaxToolCallsExceeded",
    "Message",
    "Model",
    "ModelError",
    "ModelResponse",
    "ModelSettings",
    "Observation",
    "Redactor",
    "ReplayResult",
    "RetryBudgetExhausted",
    "RunError",
    "RunLimitExceeded",
    "RunLimits",
    "RunResult",
    "RunTimeout",
    "Score",
    "Scorer",
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
    "add_feedback",
    "critique",
    "evaluate",
    "evaluate_async",
    "read_trace",
    "replay",
    "replay_async",
    "resume",
    "resume_async",
    "tool",
]
