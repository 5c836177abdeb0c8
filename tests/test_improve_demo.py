"""`make improve-demo`'s driver end to end, on a scripted model standing in for the embedded
one (the real model takes minutes on a shared machine; `make improve-demo` runs it): every
stage leaves its artifact, the exports load with ``datasets``, and nothing in the training data
overlaps the test split."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from agentloop import ModelResponse
from agentloop.evals import Dataset, EvalRun
from agentloop.messages import Message, SystemMessage, ToolMessage, UserMessage
from agentloop.testing import FunctionModel, ModelCall

ROOT = Path(__file__).resolve().parents[1]


def load_driver() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "improve_demo", ROOT / "examples" / "improve_demo.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stand_in(messages: list[Message], call: ModelCall) -> ModelResponse | str:
    """Calls the calculator on the task's expression, then states the result; a judge gets a
    low critique when the run was told nothing, a high one when it was."""
    system = next((m.content for m in messages if isinstance(m, SystemMessage)), "") or ""
    if system.startswith("You review the work"):
        revised = "reviewer" in str(messages[-1].content)
        score = 5 if revised else 1
        return json.dumps(
            {
                "scores": [
                    {"principle": p, "score": score, "rationale": "-"}
                    for p in ("correct", "used_tools")
                ],
                "problems": []
                if revised
                else [{"step": 1, "problem": "sloppy", "fix": "state it"}],
                "verdict": "poor",
                "summary": "-",
                "revised_answer": None,
            }
        )
    task = next(m.content for m in messages if isinstance(m, UserMessage)) or ""
    if isinstance(messages[-1], ToolMessage):
        result = re.findall(r"-?\d+", messages[-1].content)[-1]
        terse = "reviewer" in system or "number only" in system
        return f"{result}" if terse else f"it is {result}, I think"
    expression = task.removeprefix("What is ").rstrip("?")
    return ModelResponse.tool_call("calculator", {"expression": expression})


@pytest.mark.slow
def test_the_improve_demo_leaves_every_artifact(tmp_path: Path) -> None:
    driver = load_driver()
    said: list[str] = []
    artifacts = driver.run_demo(tmp_path / "demo", FunctionModel(stand_in), say=said.append)
    for name, path in artifacts.items():
        assert Path(path).exists(), name
    cases = Dataset.from_jsonl(artifacts["eval cases"])
    assert {c.input: c.expected for c in cases} == {
        "What is 17 * 23?": "it is 391, I think",  # rated up: its own answer
        "What is 12 + 30?": "12 + 30 = 42",  # the correction
        "What is 9 * 8?": "9 * 8 = 72",  # the edit
    }
    import datasets

    datasets.disable_progress_bars()
    for key in ("sft (openai)", "sft (trl)", "dpo (trl)"):
        loaded = datasets.load_dataset(
            "json", data_files=str(artifacts[key]), split="train", cache_dir=str(tmp_path / "c")
        )
        assert len(loaded) >= 1, key
    pairs = [json.loads(x) for x in Path(artifacts["dpo (trl)"]).read_text().splitlines()]
    assert any(p["chosen"][0].get("tool_calls") for p in pairs) or all(
        p["prompt"][-1]["role"] == "tool" for p in pairs
    )
    assert "overlap with the test split: 0 line(s)" in "\n".join(said)
    run_a, run_b = (
        EvalRun.load(artifacts["eval improve-v1"]),
        EvalRun.load(artifacts["eval improve-v2"]),
    )
    assert len(run_a.records) == len(run_b.records) == 3
    assert all(r.passed for r in run_a.records + run_b.records)  # numeric reads "= 42" too
    assert any(line.startswith("compare them again: agentloop eval compare") for line in said)


@pytest.mark.slow
def test_the_demo_goes_on_when_the_judge_cannot_critique(tmp_path: Path) -> None:
    def no_judge(messages: list[Message], call: ModelCall) -> ModelResponse | str:
        system = next((m.content for m in messages if isinstance(m, SystemMessage)), "") or ""
        return (
            "I liked it." if system.startswith("You review the work") else stand_in(messages, call)
        )

    said: list[str] = []
    artifacts = load_driver().run_demo(tmp_path / "demo", FunctionModel(no_judge), say=said.append)
    assert "revised run" not in artifacts
    assert any("the judge gave no usable critique" in line for line in said)
    assert Path(artifacts["dpo (trl)"]).read_text().count("\n") >= 1  # the correction's pair
