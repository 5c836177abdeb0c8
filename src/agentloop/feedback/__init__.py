"""Feedback on runs and what it turns into: AI critique and revision, human feedback, and
fine-tuning exports (SFT examples, preference pairs).

Holds ``critique`` (a judge model's critique of a run; ``revise`` forks it with the critique
as guidance), ``human`` (``add_feedback``: ratings, comments, corrections and implicit signals
appended to a trace), ``signals`` (what a trace says about its run's quality and origin),
``export`` (training data from traces) and ``formats`` (the OpenAI and TRL line formats).
Feedback layer: imports the runtime, models and replay; evals build on it (the judge scorer),
never the other way round.
"""

from agentloop.feedback.critique import (
    Critique,
    CritiqueResult,
    Revision,
    Rubric,
    critique,
    critique_sync,
    revise,
    revise_sync,
)
from agentloop.feedback.export import Filters, dpo_export, sft_export, write_jsonl
from agentloop.feedback.human import add_feedback

__all__ = [
    "Critique",
    "CritiqueResult",
    "Filters",
    "Revision",
    "Rubric",
    "add_feedback",
    "critique",
    "critique_sync",
    "dpo_export",
    "revise",
    "revise_sync",
    "sft_export",
    "write_jsonl",
]
