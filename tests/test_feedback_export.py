"""Human feedback, and SFT / preference (DPO) export from traces."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from agentloop import Agent, ModelResponse, read_trace, tool
from agentloop.errors import UserError
from agentloop.feedback.critique import DEFAULT_RUBRIC, critique_sync, revise_sync
from agentloop.feedback.export import (
    Export,
    Filters,
    dpo_export,
    read_traces,
    sft_export,
    write_jsonl,
)
from agentloop.feedback.human import add_feedback
from agentloop.testing import ScriptedModel
from agentloop.untrusted import UNTRUSTED_NOTICE, delimit_untrusted

SECRET = "sk-live-PLANTED0123456789abcdef"


@tool
def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"{city}: 18 C, cloudy"


def run(tmp_path: Path, answer: str, task: str = "Weather in Oslo?") -> Path:
    model = ScriptedModel([ModelResponse.tool_call("weather", {"city": "Oslo"}), answer])
    agent = Agent(model, tools=[weather], instructions="Be brief.", trace_dir=tmp_path)
    path = agent.run_sync(task).trace_path
    assert path is not None
    return path


def lines(export: Export, kind: str) -> list[dict[str, object]]:
    out = io.StringIO()
    write_jsonl(export, out, kind)  # type: ignore[arg-type]
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_feedback_events_are_appended(tmp_path: Path) -> None:
    path = run(tmp_path, "18 C")
    add_feedback(path, rating="down", comment="say cloudy too", user_id="u1")
    add_feedback(path, correction="18 C and cloudy.", step=1, source="cli")
    first, second = read_trace(path).feedback()
    assert (first.rating, first.comment, first.user_id, first.source) == (
        "down",
        "say cloudy too",
        "u1",
        "api",
    )
    assert (second.correction, second.about_step, second.source) == ("18 C and cloudy.", 1, "cli")
    assert second.seq == first.seq + 1
    with pytest.raises(UserError, match="needs a rating"):
        add_feedback(path)
    with pytest.raises(UserError, match="step 9 is not a step"):
        add_feedback(path, rating="up", step=9)


def test_sft_lines_follow_the_chat_format_with_tools(tmp_path: Path) -> None:
    path = run(tmp_path, "18 C and cloudy.")
    [line] = lines(sft_export(read_traces([path])), "sft")
    messages = line["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]  # type: ignore[index]
    call = messages[2]["tool_calls"][0]  # type: ignore[index]
    assert call == {
        "id": "call_0",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
    }
    assert messages[3] == {
        "role": "tool",
        "tool_call_id": "call_0",
        "content": delimit_untrusted("weather", "Oslo: 18 C, cloudy"),
    }  # type: ignore[index]
    assert messages[4] == {"role": "assistant", "content": "18 C and cloudy."}  # type: ignore[index]
    recorded = read_trace(path).header.agent["tools"][0]
    assert line["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Today's weather in a city.",
                "parameters": recorded["parameters"],
            },
        }
    ]


def test_a_correction_replaces_the_final_answer_and_makes_a_pair(tmp_path: Path) -> None:
    path = run(tmp_path, "18")
    add_feedback(path, rating="down", correction="18 C and cloudy in Oslo.")
    [sft] = lines(sft_export(read_traces([path])), "sft")
    assert sft["messages"][-1] == {"role": "assistant", "content": "18 C and cloudy in Oslo."}  # type: ignore[index]
    [pair] = lines(dpo_export(read_traces([path])), "dpo")
    assert pair["preferred_output"] == [
        {"role": "assistant", "content": "18 C and cloudy in Oslo."}
    ]
    assert pair["non_preferred_output"] == [{"role": "assistant", "content": "18"}]
    assert [m["role"] for m in pair["input"]["messages"]] == ["system", "user", "assistant", "tool"]  # type: ignore[index]


def test_a_correction_of_one_step_is_not_a_corrected_final_answer(tmp_path: Path) -> None:
    path = run(tmp_path, "18")
    add_feedback(path, correction="call the weather tool with 'Oslo'", step=0)
    [sft] = lines(sft_export(read_traces([path])), "sft")
    assert sft["messages"][-1] == {"role": "assistant", "content": "18"}  # type: ignore[index]
    assert lines(dpo_export(read_traces([path])), "dpo") == []


def test_filters(tmp_path: Path) -> None:
    good, bad, unrated = run(tmp_path, "a"), run(tmp_path, "b"), run(tmp_path, "c")
    add_feedback(good, rating="up")
    add_feedback(bad, rating="down")
    export = sft_export(read_traces([tmp_path]), Filters(rating="up"))
    assert len(export.examples) == 1 and export.skipped == {"not rated up": 2}
    assert sft_export(read_traces([unrated]), Filters(version="nope")).skipped == {
        "other agent version": 1
    }
    high = {p.name: 5 for p in DEFAULT_RUBRIC.principles}
    judge = ScriptedModel(
        [
            json.dumps(
                {
                    "scores": [
                        {"principle": p, "score": s, "rationale": "-"} for p, s in high.items()
                    ],
                    "verdict": "good",
                    "summary": "ok",
                }
            )
        ]
    )
    critique_sync(good, judge)
    kept = sft_export(read_traces([tmp_path]), Filters(min_critique=0.9))
    assert len(kept.examples) == 1 and kept.skipped == {"critique score too low or missing": 2}


def test_differently_rated_runs_of_a_task_make_a_pair(tmp_path: Path) -> None:
    liked, disliked = run(tmp_path, "18 C, cloudy."), run(tmp_path, "No idea.")
    add_feedback(liked, rating="up")
    add_feedback(disliked, rating="down")
    [pair] = lines(dpo_export(read_traces([tmp_path])), "dpo")
    messages = pair["input"]["messages"]  # type: ignore[index]
    assert messages[:2] == [
        {"role": "system", "content": f"Be brief.\n\n{UNTRUSTED_NOTICE}"},
        {"role": "user", "content": "Weather in Oslo?"},
    ]
    # both runs called the tool alike: the shared prefix keeps that call and its result
    assert [m["role"] for m in messages[2:]] == ["assistant", "tool"]
    assert pair["input"]["tools"][0]["function"]["name"] == "weather"  # type: ignore[index]
    assert pair["preferred_output"][0]["content"] == "18 C, cloudy."  # type: ignore[index]
    assert pair["non_preferred_output"][0]["content"] == "No idea."  # type: ignore[index]


def test_a_preferred_revision_makes_a_pair(tmp_path: Path) -> None:
    original = run(tmp_path, "Sunny and 30 C.")
    low = {p.name: 1 for p in DEFAULT_RUBRIC.principles}
    high = {p.name: 5 for p in DEFAULT_RUBRIC.principles}

    def verdict(scores: dict[str, int]) -> str:
        return json.dumps(
            {
                "scores": [
                    {"principle": p, "score": s, "rationale": "-"} for p, s in scores.items()
                ],
                "problems": [{"step": 1, "problem": "invented", "fix": "use the tool"}],
                "verdict": "poor",
                "summary": "-",
            }
        )

    agent = Agent(
        ScriptedModel(["18 C, cloudy."]),
        tools=[weather],
        instructions="Be brief.",
        trace_dir=tmp_path / "rev",
    )
    revision = revise_sync(original, agent, ScriptedModel([verdict(low), verdict(high)]))
    pairs = lines(dpo_export(read_traces([tmp_path, tmp_path / "rev"])), "dpo")
    assert revision.preferred == "revised"
    assert [
        (p["preferred_output"][0]["content"], p["non_preferred_output"][0]["content"])
        for p in pairs
    ] == [  # type: ignore[index]
        ("18 C, cloudy.", "Sunny and 30 C.")
    ]


def test_planted_secrets_never_reach_exported_lines(tmp_path: Path) -> None:
    @tool
    def leak() -> str:
        """Returns a secret."""
        return f"the key is {SECRET} and api_key='hunter2hunter2'"

    model = ScriptedModel([ModelResponse.tool_call("leak"), f"Your key: {SECRET}"])
    path = Agent(model, tools=[leak], trace_dir=tmp_path).run_sync("find the key").trace_path
    add_feedback(path, rating="down", correction=f"Never print {SECRET}.")  # type: ignore[arg-type]
    for kind, export in (
        ("sft", sft_export(read_traces([tmp_path]))),
        ("dpo", dpo_export(read_traces([tmp_path]))),
    ):
        out = io.StringIO()
        assert write_jsonl(export, out, kind) == 1  # type: ignore[arg-type]
        assert SECRET not in out.getvalue() and "hunter2hunter2" not in out.getvalue()
        assert "[REDACTED]" in out.getvalue()


def test_invalid_examples_are_skipped_with_a_reason(tmp_path: Path) -> None:
    export = Export(
        examples=[
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "tool", "tool_call_id": "x", "content": "?"},
                    {"role": "assistant", "content": "ok"},
                ]
            }
        ]
    )
    out = io.StringIO()
    assert write_jsonl(export, out, "sft") == 0
    assert out.getvalue() == ""
    [(reason, count)] = export.skipped.items()
    assert count == 1 and "tool message for unknown call 'x'" in reason


def test_unfinished_runs_are_not_exported(tmp_path: Path) -> None:
    path = run(tmp_path, "x")
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    assert sft_export(read_traces([path])).skipped == {"the run did not finish": 1}
