"""Replay, fork and resume: run a recorded trace again, offline or against live parts.

Holds ``runner`` (``replay``/``resume``, their ``_sync`` doors, ``replay_stream``),
``recording`` (a recorded run served as a model and as tools), ``paced`` (a recorded response
served as deltas) and ``divergence`` (where two runs part ways, and ``diff_traces``).
Replay layer: imports the runtime and models, never evals, feedback or the CLI.
"""

from agentloop.replay.divergence import Divergence, TraceDiff, diff_traces
from agentloop.replay.runner import (
    ReplayResult,
    replay,
    replay_stream,
    replay_sync,
    resume,
    resume_sync,
)

__all__ = [
    "Divergence",
    "ReplayResult",
    "TraceDiff",
    "diff_traces",
    "replay",
    "replay_stream",
    "replay_sync",
    "resume",
    "resume_sync",
]
