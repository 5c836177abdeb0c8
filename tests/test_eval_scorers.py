"""Built-in scorers on real traces, per-case settings, specs, and custom scorers from files."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agentloop import Agent, ModelResponse, Trace, read_trace, tool
from agentloop.evals import Case, Score
from agentloop.evals.scorers import (
    ScorerError,
    apply_scorer,
    contains,
    exact_match,
    json_subset,
    max_steps,
    no_tool_errors,
    normalize,
    numeric,
    regex,
    scorer_spec,
    scorers_for,
    tool_called,
    tool_not_called,
)
from agentloop.evals.specs import parse_scorer
from agentloop.testing import ScriptedModel


@tool
def lookup(key: str, limit: int = 3) -> str:
    """Look a key up.

    Args:
        key: What to look up.
        limit: How many results.
    """
    if key == "boom":
        raise ValueError("no such key")
    return f"value of {key}"


def trace_of(tmp_path: Path, *steps: Any) -> Trace:
    agent = Agent(
        ScriptedModel(list(steps)), tools=[lookup], trace_dir=tmp_path, tool_errors="observe"
    )
    result = agent.run_sync("task")
    assert result.trace_path is not None
    return read_trace(result.trace_path)


def score(scorer: Any, case: Case, trace: Trace) -> Score:
    return asyncio.run(apply_scorer(scorer, case, trace))


def test_output_scorers(tmp_path: Path) -> None:
    trace = trace_of(tmp_path, "  The  Answer is: Paris!  ")
    case = Case(id="c", input="q", expected="the answer is: paris!")
    assert not score(exact_match(), case, trace).passed
    assert score(exact_match(ignore_case=True), case, trace).passed
    loose = Case(id="c", input="q", expected="the answer is paris")
    assert score(exact_match(ignore_case=True, ignore_punctuation=True), loose, trace).passed
    miss = score(exact_match(), loose, trace)
    assert miss.value == 0.0 and miss.scorer == "exact" and "expected" in miss.explanation
    assert score(contains(), Case(id="c", input="q", expected="Paris"), trace).passed
    partial = score(contains(expected=["Paris", "Rome"]), case, trace)
    assert (partial.value, partial.passed) == (0.5, False) and "'Rome'" in partial.explanation
    assert score(regex(r"Answer is: \w+"), case, trace).passed
    assert not score(regex(r"answer is"), case, trace).passed
    assert score(regex(r"answer is", ignore_case=True), case, trace).passed
    assert normalize(" A\n b ", ignore_case=True) == "a b"


def test_numeric_and_json_subset(tmp_path: Path) -> None:
    trace = trace_of(tmp_path, "Roughly 1,234.5 units, or 3.14 per box")
    case = Case(id="c", input="q", expected=3.1)
    assert not score(numeric(), case, trace).passed
    assert score(numeric(tolerance=0.05), case, trace).passed
    assert score(numeric(relative=0.02), case, trace).passed
    assert not score(numeric(), Case(id="c", input="q", expected="n/a"), trace).passed
    json_trace = trace_of(tmp_path, 'Here:\n```json\n{"a": 1, "b": {"c": [1, 2]}, "x": true}\n```')
    ok = Case(id="c", input="q", expected={"b": {"c": [1, 2]}, "x": True})
    assert score(json_subset(), ok, json_trace).passed
    bad = score(json_subset(), Case(id="c", input="q", expected={"b": {"c": [1, 3]}}), json_trace)
    assert not bad.passed and "$.b.c[1]" in bad.explanation
    assert not score(json_subset(), Case(id="c", input="q", expected={"x": 1}), json_trace).passed
    assert not score(json_subset(), ok, trace).passed  # no JSON at all


def test_trajectory_scorers(tmp_path: Path) -> None:
    trace = trace_of(
        tmp_path,
        ModelResponse.tool_call("lookup", {"key": "otters", "limit": 5}),
        ModelResponse.tool_call("lookup", {"key": "boom"}),
        "done",
    )
    case = Case(id="c", input="q")
    assert score(tool_called("lookup"), case, trace).passed
    assert score(tool_called("lookup", min_times=2), case, trace).passed
    assert score(tool_called("lookup", arguments={"key": "otters"}), case, trace).passed
    assert not score(tool_called("lookup", arguments={"key": "cats"}), case, trace).passed
    assert score(tool_called("lookup", pattern='"limit": ?5'), case, trace).passed
    assert not score(tool_called("search"), case, trace).passed
    assert score(tool_not_called("search"), case, trace).passed
    assert not score(tool_not_called("lookup"), case, trace).passed
    assert score(max_steps(3), case, trace).passed
    assert not score(max_steps(2), case, trace).passed
    errors = score(no_tool_errors(), case, trace)
    assert (errors.value, errors.passed) == (0.5, False) and "lookup" in errors.explanation


def test_per_case_settings_override_and_add(tmp_path: Path) -> None:
    trace = trace_of(tmp_path, "about 10.4")
    case = Case(id="c", input="q", expected=10, scorers={"numeric": {"tolerance": 0.5}})
    assert score(numeric(), case, trace).passed  # the case's tolerance wins
    assert not score(numeric(), Case(id="c", input="q", expected=10), trace).passed
    extra = Case(id="c", input="q", scorers={"max_steps": {"n": 1}})
    [added] = scorers_for(extra, [])
    assert score(added, extra, trace).passed
    wrong = Case(id="c", input="q", scorers={"numeric": {"tolerence": 1}})
    assert "no setting 'tolerence'" in score(numeric(), wrong, trace).explanation
    with pytest.raises(ScorerError, match="neither one of this eval's scorers nor a built-in"):
        scorers_for(Case(id="c", input="q", scorers={"mine": {}}), [])


def test_specs_round_trip() -> None:
    [s] = parse_scorer("exact:ignore_case=true,strip=false")
    assert s.__name__ == "exact" and s.options == {"ignore_case": True, "strip": False}  # type: ignore[attr-defined]
    [r] = parse_scorer('regex:{"pattern": "a,b", "name": "commas"}')
    assert r.__name__ == "commas"
    [again] = parse_scorer(scorer_spec(r) or "")
    assert (again.__name__, again.options) == ("commas", {"pattern": "a,b"})  # type: ignore[attr-defined]
    [t] = parse_scorer("tool_called:tool=add,min_times=2")
    assert t.options == {"tool": "add", "min_times": 2}  # type: ignore[attr-defined]
    with pytest.raises(ScorerError, match="unknown scorer 'nope'"):
        parse_scorer("nope")
    with pytest.raises(ScorerError, match="needs the setting 'tool'"):
        parse_scorer("tool_called")
    with pytest.raises(ScorerError, match="expected key=value"):
        parse_scorer("exact:ignore_case")
    with pytest.raises(ScorerError, match="no setting 'bogus'"):
        parse_scorer("contains:bogus=1")


def test_custom_scorers_from_a_file(tmp_path: Path) -> None:
    file = tmp_path / "my_scorers.py"
    file.write_text(
        "from agentloop.evals import Score\n\n"
        "def short(case, trace):\n"
        "    return Score(value=1.0, passed=len(trace.output or '') < 5)\n\n"
        "async def polite(case, trace):\n"
        "    return Score(value=0.5, passed='please' in (trace.output or ''))\n\n"
        "def _helper():\n    pass\n"
    )
    both = parse_scorer(str(file))
    assert [s.__name__ for s in both] == ["short", "polite"]  # type: ignore[attr-defined]
    [one] = parse_scorer(f"{file}:polite")
    assert scorer_spec(one) == f"{file.resolve()}:polite"
    trace = trace_of(tmp_path, "yes please")
    result = score(one, Case(id="c", input="q"), trace)
    assert (result.value, result.passed, result.scorer) == (0.5, True, "polite")
    with pytest.raises(ScorerError, match="has no function 'missing'"):
        parse_scorer(f"{file}:missing")
    with pytest.raises(ScorerError, match="does not exist"):
        parse_scorer(str(tmp_path / "none.py"))
    (tmp_path / "broken.py").write_text("1/0\n")
    with pytest.raises(ScorerError, match="ZeroDivisionError"):
        parse_scorer(str(tmp_path / "broken.py"))


def test_scores_stay_in_range() -> None:
    with pytest.raises(ValueError, match="less than or equal to 1"):
        Score(value=1.5, passed=True)
