"""The model-judged scorer: a critique's overall score as an eval score.

Evals layer: it builds on ``agentloop.feedback.critique`` (feedback comes before evals in the
import order, so critique never needs to know about scores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentloop.evals.scorers import Score
from agentloop.feedback.critique import Rubric, critique, load_rubric
from agentloop.models import Model, infer_model
from agentloop.trace import Trace


class JudgeScorer:
    """The model-judged scorer for evaluation: a critique's overall score is the value, and
    the run passes at ``threshold`` or above. The critique is stored in the case's trace."""

    def __init__(
        self,
        judge: Model | str,
        rubric: Rubric | str | Path | None = None,
        *,
        threshold: float = 0.6,
        name: str = "judge",
    ) -> None:
        self.judge = infer_model(judge)
        self.rubric = load_rubric(rubric)
        self.threshold = threshold
        self.__name__ = name
        self.spec = f"judge:model={judge if isinstance(judge, str) else self.judge.name}"

    async def __call__(self, case: Any, trace: Trace) -> Any:
        result = await critique(trace, self.judge, self.rubric, store=trace.path is not None)
        return Score(
            value=result.overall,
            passed=result.overall >= self.threshold,
            explanation=f"{result.critique.verdict}: {result.critique.summary}",
            scorer=self.__name__,
        )
