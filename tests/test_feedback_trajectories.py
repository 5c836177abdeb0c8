"""Preference pairs keep the trajectory (shared prefix, both continuations with their tool calls
and results), in OpenAI's and TRL's formats; every export loads with ``datasets``; replays,
forks and resumes stay out by default; implicit feedback (edit, regenerate, copy, abandon)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from agentloop import Agent, ModelResponse, read_trace, tool
from agentloop.cli import main
from agentloop.errors import UserError
from agentloop.feedback.critique import DEFAULT_RUBRIC, revise_sync
from agentloop.feedback.export import (
    Export,
    Filters,
    dpo_export,
    read_traces,
    sft_export,
    write_jsonl,
)
from agentloop.feedback.human import add_feedback
from agentloop.replay import replay_sync
from agentloop.testing import ScriptedModel


@tool
def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"{city}: 18 C, cloudy"


@tool
def forecast(city: str, days: int = 1) -> str:
    """The forecast for a city."""
    return f"{city}: rain for {days} day(s)"


TASK = "Will it rain in Oslo tomorrow?"


def agent(model: ScriptedModel, folder: Path) -> Agent:
    return Agent(model, tools=[weather, forecast], instructions="Be brief.", trace_dir=folder)


def original_run(folder: Path) -> Path:
    """Step 0 checks Oslo's weather; step 1 wrongly checks Paris; step 2 answers."""
    model = ScriptedModel(
        [
            ModelResponse.tool_call("weather", {"city": "Oslo"}),
            ModelResponse.tool_call("weather", {"city": "Paris"}),
            "Paris is cloudy, so no rain.",
        ]
    )
    path = agent(model, folder).run_sync(TASK).trace_path
    assert path is not None
    return path


def verdict(score: int, step: int = 1) -> str:
    return json.dumps(
        {
            "scores": [
                {"principle": p.name, "score": score, "rationale": "-"}
                for p in DEFAULT_RUBRIC.principles
            ],
            "problems": [{"step": step, "problem": "wrong city", "fix": "use the forecast"}],
            "verdict": "poor" if score < 3 else "good",
            "summary": "-",
            "revised_answer": None,
        }
    )


def revised_pair(folder: Path) -> tuple[Path, Path]:
    original = original_run(folder)
    live = ScriptedModel(
        [ModelResponse.tool_call("forecast", {"city": "Oslo"}), "Rain tomorrow in Oslo."]
    )
    revision = revise_sync(
        original, agent(live, folder), ScriptedModel([verdict(1), verdict(5, step=1)])
    )
    assert revision.preferred == "revised"
    return original, revision.trace_path


def write(export: Export, kind: str, fmt: str, path: Path) -> int:
    with path.open("w", encoding="utf-8") as file:
        return write_jsonl(export, file, kind, fmt=fmt)  # type: ignore[arg-type]


def load(path: Path, cache: Path) -> list[dict[str, Any]]:
    """The file as Hugging Face ``datasets`` loads it (what a TRL trainer would get)."""
    import datasets

    datasets.disable_progress_bars()
    loaded = datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(cache)
    )
    return [dict(row) for row in loaded]


def roles(messages: list[dict[str, Any]]) -> list[str]:
    return [m["role"] for m in messages]


def test_a_revision_pair_keeps_the_prefix_and_both_continuations(tmp_path: Path) -> None:
    revised_pair(tmp_path)
    export = dpo_export(read_traces([tmp_path]))
    out = tmp_path / "trl.jsonl"
    assert write(export, "dpo", "trl", out) == 1
    [line] = [json.loads(x) for x in out.read_text().splitlines()]
    # the shared prefix: instructions, task, and step 0 (the Oslo weather call and its result)
    assert roles(line["prompt"]) == ["system", "user", "assistant", "tool"]
    assert line["prompt"][0]["content"].startswith("Be brief.")
    assert "reviewer" not in line["prompt"][0]["content"]  # the critique guidance is not kept
    assert line["prompt"][2]["tool_calls"][0]["function"] == {
        "name": "weather",
        "arguments": {"city": "Oslo"},
    }
    assert line["prompt"][3]["name"] == "weather"
    assert "Oslo: 18 C" in line["prompt"][3]["content"]
    # each side from the fork step on: its call, the result, its final answer
    chosen, rejected = line["chosen"], line["rejected"]
    assert roles(chosen) == roles(rejected) == ["assistant", "tool", "assistant"]
    assert chosen[0]["tool_calls"][0]["function"]["name"] == "forecast"
    assert chosen[1]["tool_call_id"] == chosen[0]["tool_calls"][0]["id"]
    assert "rain for 1 day" in chosen[1]["content"]
    assert chosen[2] == {"role": "assistant", "content": "Rain tomorrow in Oslo."}
    assert rejected[0]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert "Paris: 18 C" in rejected[1]["content"]
    assert rejected[2]["content"] == "Paris is cloudy, so no rain."
    assert {t["function"]["name"] for t in line["tools"]} == {"weather", "forecast"}

    # OpenAI's preference format holds one final message per side: not this pair
    openai = tmp_path / "openai.jsonl"
    assert write(export, "dpo", "openai", openai) == 0
    [reason] = export.skipped
    assert "not expressible in OpenAI's preference format" in reason

    # datasets loads it, tool calls and all
    [row] = load(out, tmp_path / "cache")
    assert roles(row["chosen"]) == ["assistant", "tool", "assistant"]
    assert row["chosen"][0]["tool_calls"][0]["function"]["name"] == "forecast"
    assert row["rejected"][1]["content"] == rejected[1]["content"]


def test_a_final_answer_pair_fits_both_formats_and_every_export_loads(tmp_path: Path) -> None:
    traces = tmp_path / "traces"
    corrected = original_run(traces)
    add_feedback(corrected, signal="edit", correction="Yes: rain tomorrow in Oslo.")
    other = agent(ScriptedModel(["No idea."]), traces).run_sync("What is 2 + 2?").trace_path
    assert other is not None
    add_feedback(other, rating="up")
    written = {}
    for kind, fmt in [("sft", "openai"), ("sft", "trl"), ("dpo", "openai"), ("dpo", "trl")]:
        export = (sft_export if kind == "sft" else dpo_export)(read_traces([traces]))
        path = tmp_path / f"{kind}-{fmt}.jsonl"
        written[kind, fmt] = write(export, kind, fmt, path)
        rows = load(path, tmp_path / "cache")
        assert len(rows) == written[kind, fmt] > 0
    assert written == {
        ("sft", "openai"): 2,
        ("sft", "trl"): 2,
        ("dpo", "openai"): 1,
        ("dpo", "trl"): 1,
    }
    [pair] = [json.loads(x) for x in (tmp_path / "dpo-openai.jsonl").read_text().splitlines()]
    # the edit is a correction: the prefix is the whole run up to its final answer
    assert roles(pair["input"]["messages"]) == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
    ]
    assert pair["preferred_output"] == [
        {"role": "assistant", "content": "Yes: rain tomorrow in Oslo."}
    ]
    sft = [json.loads(x) for x in (tmp_path / "sft-trl.jsonl").read_text().splitlines()]
    edited = next(x for x in sft if x["messages"][1]["content"] == TASK)
    assert edited["messages"][-1]["content"] == "Yes: rain tomorrow in Oslo."
    assert edited["messages"][2]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}


def test_a_regenerated_run_is_the_rejected_side(tmp_path: Path) -> None:
    first = agent(ScriptedModel(["Maybe."]), tmp_path).run_sync(TASK).trace_path
    second = agent(ScriptedModel(["Rain tomorrow."]), tmp_path).run_sync(TASK).trace_path
    assert first is not None and second is not None
    add_feedback(first, signal="regenerate")
    [pair] = dpo_export(read_traces([tmp_path])).examples
    assert pair["chosen"] == [{"role": "assistant", "content": "Rain tomorrow."}]
    assert pair["rejected"] == [{"role": "assistant", "content": "Maybe."}]
    assert roles(pair["prompt"]) == ["system", "user"]


def test_signals_are_checked_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = original_run(tmp_path)
    with pytest.raises(UserError, match="edited answer"):
        add_feedback(path, signal="edit")
    with pytest.raises(UserError, match="signal must be one of"):
        add_feedback(path, signal="like")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="takes no correction"):
        add_feedback(path, signal="copy", correction="x")
    add_feedback(path, signal="copy")
    assert main(["feedback", str(path), "--signal", "abandon"]) == 0
    assert [f.signal for f in read_trace(path).feedback()] == ["copy", "abandon"]
    capsys.readouterr()
    assert main(["traces", "show", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "feedback abandon 1, copy 1" in shown
    assert "feedback (cli): abandon" in shown and shown.count("feedback (") == 2


def test_replays_forks_and_resumes_are_left_out_unless_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = original_run(tmp_path)
    replayed = replay_sync(source, trace_dir=tmp_path)
    assert replayed.trace_path is not None and replayed.trace_path.parent == tmp_path
    assert read_trace(replayed.trace_path).header.parent["kind"] == "replay"  # type: ignore[index]
    export = sft_export(read_traces([tmp_path]))
    assert len(export.examples) == 1
    assert export.skipped == {"a replay of another run (--include-replays keeps it)": 1}
    assert len(sft_export(read_traces([tmp_path]), Filters(include_replays=True)).examples) == 2

    out = tmp_path / "sft.jsonl"
    assert main(["export", "sft", str(tmp_path), "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 1
    assert "skipped 1: a replay of another run" in capsys.readouterr().err
    assert main(["export", "sft", str(tmp_path), "-o", str(out), "--include-replays"]) == 0
    assert len(out.read_text().splitlines()) == 2


def test_a_revised_branch_counts_only_through_its_pair(tmp_path: Path) -> None:
    revised_pair(tmp_path)
    sft = sft_export(read_traces([tmp_path]))
    assert len(sft.examples) == 1  # the original; the fork is left out
    assert sft.skipped == {"a fork of another run (--include-replays keeps it)": 1}
    assert len(dpo_export(read_traces([tmp_path])).examples) == 1


def test_export_can_leave_out_an_eval_sets_tasks(tmp_path: Path) -> None:
    path = original_run(tmp_path / "traces")
    add_feedback(path, rating="up")
    cases = tmp_path / "test.jsonl"
    cases.write_text(json.dumps({"id": "c1", "input": "  will it rain in OSLO tomorrow? "}) + "\n")
    out = tmp_path / "sft.jsonl"
    args = ["export", "sft", str(tmp_path / "traces"), "-o", str(out)]
    assert main([*args, "--exclude-cases", str(cases)]) == 0
    assert out.read_text() == ""
    assert main(args) == 0
    assert main(["dataset", "overlap", str(out), str(cases)]) == 1
    out.write_text("")
    assert main(["dataset", "overlap", str(out), str(cases)]) == 0


def test_a_malformed_tool_call_cannot_be_written_as_trl(tmp_path: Path) -> None:
    model = ScriptedModel([ModelResponse.tool_call("weather", "{not json"), "Cloudy."])
    path = agent(model, tmp_path).run_sync(TASK).trace_path
    assert path is not None
    export = sft_export(read_traces([path]))
    assert write_jsonl(export, io.StringIO(), "sft", fmt="openai") == 1
    assert write_jsonl(export, io.StringIO(), "sft", fmt="trl") == 0
    assert any("not a JSON object" in reason for reason in export.skipped)


def test_the_command_writes_trl_preference_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    revised_pair(tmp_path / "traces")
    out = tmp_path / "prefs.jsonl"
    args = ["export", "preference", str(tmp_path / "traces"), "-o", str(out)]
    assert main([*args, "--format", "trl"]) == 0
    [line] = [json.loads(x) for x in out.read_text().splitlines()]
    assert set(line) == {"prompt", "chosen", "rejected", "tools"}
    assert "wrote 1 dpo example(s)" in capsys.readouterr().err
    assert main(args) == 0  # OpenAI's format cannot hold this pair: said, not written
    assert out.read_text() == ""
    assert "not expressible in OpenAI's preference format" in capsys.readouterr().err
