"""Evaluation: run an agent over a dataset of cases, score every run, summarize and compare.

Holds ``runner`` (``evaluate``/``rescore`` and their ``_sync`` doors), ``records`` (the run
directory and its journal), ``attempt`` (one case run and scored), ``ray_backend`` (cases spread
over a Ray cluster; the only module that imports ``ray``), ``datasets`` (cases from JSONL),
``from_traces`` (cases from recorded runs), ``scorers`` (the built-ins and the scorer protocol),
``judge`` (the model-judged scorer), ``specs`` (scorers named on the command line), ``stats``,
``summary`` and ``comparison`` (two agent versions, with significance). Evals layer: imports
everything below it (runtime, models, replay, feedback), never the CLI or the viewer.
"""

from agentloop.evals.comparison import Comparison, compare
from agentloop.evals.datasets import Case, Dataset
from agentloop.evals.from_traces import cases_from_traces
from agentloop.evals.judge import JudgeScorer
from agentloop.evals.records import EvalRun
from agentloop.evals.runner import evaluate, evaluate_sync, rescore, rescore_sync
from agentloop.evals.scorers import (
    Score,
    Scorer,
    citations,
    contains,
    exact_match,
    json_subset,
    max_steps,
    no_tool_errors,
    numeric,
    regex,
    tool_called,
    tool_not_called,
)
from agentloop.evals.summary import Summary, summarize

__all__ = [
    "Case",
    "Comparison",
    "Dataset",
    "EvalRun",
    "JudgeScorer",
    "Score",
    "Scorer",
    "Summary",
    "cases_from_traces",
    "citations",
    "compare",
    "contains",
    "evaluate",
    "evaluate_sync",
    "exact_match",
    "json_subset",
    "max_steps",
    "no_tool_errors",
    "numeric",
    "regex",
    "rescore",
    "rescore_sync",
    "summarize",
    "tool_called",
    "tool_not_called",
]
