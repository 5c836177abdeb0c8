"""``agentloop dataset from-traces``: eval cases from rated and corrected runs, one per task,
source run in metadata, seeded train/test split, replays left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentloop import Agent
from agentloop.cli import main
from agentloop.evals import Dataset
from agentloop.evals.from_traces import cases_from_traces
from agentloop.feedback.export import read_traces
from agentloop.feedback.human import add_feedback
from agentloop.replay import replay_sync
from agentloop.testing import ScriptedModel


def run(folder: Path, task: str, answer: str) -> Path:
    path = Agent(ScriptedModel([answer]), trace_dir=folder).run_sync(task).trace_path
    assert path is not None
    return path


def test_cases_come_from_corrections_and_well_rated_answers(tmp_path: Path) -> None:
    corrected = run(tmp_path, "Capital of France?", "Lyon")
    add_feedback(corrected, rating="down", correction="Paris")
    liked = run(tmp_path, "2 + 2?", "4")
    add_feedback(liked, rating="up")
    copied = run(tmp_path, "Colour of the sky?", "Blue")
    add_feedback(copied, signal="copy")
    add_feedback(run(tmp_path, "Largest planet?", "Mars"), rating="down")
    run(tmp_path, "Unrated?", "whatever")
    # the same task again, well rated: the correction still wins
    add_feedback(run(tmp_path, "  capital of FRANCE? ", "Marseille"), rating="up")
    replay_sync(corrected, trace_dir=tmp_path)

    harvest = cases_from_traces(read_traces([tmp_path]))
    got = {
        c.input.strip().casefold(): (c.expected, c.metadata["expected_from"]) for c in harvest.cases
    }
    assert got == {
        "capital of france?": ("Paris", "correction"),
        "2 + 2?": ("4", "rating"),
        "colour of the sky?": ("Blue", "copy"),
    }
    assert harvest.skipped == {
        "rated down and not corrected": 1,
        "no correction and not well rated": 1,
        "another run of the same task": 1,
        "a replay of another run (--include-replays keeps it)": 1,
    }
    france = next(c for c in harvest.cases if c.expected == "Paris")
    assert france.metadata["source_trace"] == str(corrected)
    assert france.id.startswith("t-")


def test_the_command_writes_a_seeded_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traces = tmp_path / "traces"
    for n in range(10):
        add_feedback(run(traces, f"What is {n} + 1?", str(n + 1)), rating="up")
    out = tmp_path / "cases.jsonl"
    args = ["dataset", "from-traces", str(traces), "-o", str(out), "--test-fraction", "0.3"]
    assert main([*args, "--seed", "7"]) == 0
    train, test = Dataset.from_jsonl(out), Dataset.from_jsonl(tmp_path / "cases.test.jsonl")
    assert (len(train), len(test)) == (7, 3)
    assert {c.metadata["split"] for c in train} == {"train"}
    assert not {c.input for c in train} & {c.input for c in test}
    first = (tmp_path / "cases.test.jsonl").read_text()
    assert main([*args, "--seed", "7"]) == 0
    assert (tmp_path / "cases.test.jsonl").read_text() == first  # same seed, same split
    assert "wrote 3 test case(s)" in capsys.readouterr().err
    # an export that leaves out the test split does not overlap it
    sft = tmp_path / "sft.jsonl"
    export = ["export", "sft", str(traces), "-o", str(sft)]
    assert main([*export, "--exclude-cases", str(tmp_path / "cases.test.jsonl")]) == 0
    assert len(sft.read_text().splitlines()) == 7
    assert main(["dataset", "overlap", str(sft), str(tmp_path / "cases.test.jsonl")]) == 0
    assert main(["dataset", "overlap", str(sft), str(out)]) == 1
    shared = capsys.readouterr().out.splitlines()
    assert len(shared) == 7 and json.dumps(shared)
    assert main([*args, "--test-fraction", "2"]) == 2
