"""Comparing two eval runs: changed cases with both traces, and the paired tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentloop import Agent
from agentloop.evals import Case, Dataset, EvalRun, evaluate_sync
from agentloop.evals.comparison import compare
from agentloop.evals.scorers import contains, exact_match
from agentloop.messages import Message
from agentloop.testing import FunctionModel, ModelCall

CASES = Dataset([Case(id=f"c{i}", input=f"case {i}", expected="yes") for i in range(10)])


def run_passing(tmp_path: Path, name: str, passing: set[int]) -> EvalRun:
    def answer(messages: list[Message], call: ModelCall) -> str:
        n = int(str(messages[-1].content).split()[-1])
        return "yes" if n in passing else "no"

    agent = Agent(FunctionModel(answer), instructions=name)
    return evaluate_sync(CASES, agent, scorers=[exact_match()], run_dir=tmp_path / name)


def test_compare_flags_changed_cases_and_tests_the_difference(tmp_path: Path) -> None:
    a = run_passing(tmp_path, "a", {0, 1})
    b = run_passing(tmp_path, "b", {1, 2, 3, 4, 5, 6, 7, 8})
    result = compare(a.path, b.path)
    assert [c.case_id for c in result.worse] == ["c0"]
    assert sorted(c.case_id for c in result.better) == [f"c{i}" for i in range(2, 9)]
    assert {c.case_id for c in result.cases if c.change == "same"} == {"c1", "c9"}
    worse = result.worse[0]
    assert (worse.pass_a, worse.pass_b) == (1.0, 0.0)
    assert worse.trace_a is not None and Path(worse.trace_a).is_file()
    assert worse.trace_b is not None and Path(worse.trace_b).parent == b.path / "traces"
    assert result.version_a != result.version_b and result.same_dataset
    overall = result.deltas[0]
    assert (overall.metric, overall.a, overall.b, overall.cases) == ("pass rate", 0.2, 0.8, 10)
    assert overall.delta == pytest.approx(0.6)
    # Discordant cases: 1 passed only in A (c0), 7 only in B (c2..c8). Exact McNemar:
    # p = 2·P(X <= 1), X ~ Binomial(8, 1/2) = 2·(1 + 8)/256 = 0.0703125: not significant.
    assert overall.test.test == "mcnemar_exact"
    assert overall.test.p_value == 0.0703125 and not overall.significant
    assert [d.metric for d in result.deltas] == ["pass rate", "exact pass rate"]
    data = result.to_json()
    assert (data["better"], data["worse"]) == (7, 1)
    assert data["deltas"][0]["test"]["p_value"] == 0.0703125


def test_a_clear_improvement_is_significant(tmp_path: Path) -> None:
    a = run_passing(tmp_path, "a", set())
    b = run_passing(tmp_path, "b", set(range(10)))
    # 10 discordant cases all one way: p = 2/2^10 = 0.001953125
    overall = compare(a, b).deltas[0]
    assert overall.test.p_value == 2 / 1024 and overall.significant


def test_fractional_scores_get_the_permutation_test(tmp_path: Path) -> None:
    cases = Dataset(
        [Case(id=f"c{i}", input=f"case {i}", expected=["alpha", "beta"]) for i in range(4)]
    )

    def agent(text: str) -> Agent:
        return Agent(FunctionModel(lambda m, c: text), instructions=text)

    # A finds one of the two words in every case (0.5); B finds both in three cases (1.0)
    # and none in one (0.0): differences +.5 +.5 +.5 -.5, exact p = 10/16 (see test_eval_stats).
    a = evaluate_sync(cases, agent("alpha"), scorers=[contains()], run_dir=tmp_path / "a")

    def mixed(messages: list[Message], call: ModelCall) -> str:
        return "gamma" if str(messages[-1].content).endswith("3") else "alpha beta"

    b = evaluate_sync(
        cases, Agent(FunctionModel(mixed)), scorers=[contains()], run_dir=tmp_path / "b"
    )
    mean = next(d for d in compare(a, b).deltas if d.metric == "contains mean")
    assert (mean.a, mean.b) == (0.5, 0.75)
    assert mean.test.test == "paired_permutation" and mean.test.p_value == 10 / 16
