"""Traces as a journal: the format, reading back, torn lines, versions, redaction."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agentloop import Agent, ModelResponse, read_trace, tool
from agentloop.errors import TraceError, TraceFormatError
from agentloop.testing import ScriptedModel
from agentloop.trace import FORMAT


@tool
def shout(text: str) -> str:
    """Shout."""
    return text.upper()


def run_once(tmp_path: Path, **agent_kwargs: object) -> Path:
    model = ScriptedModel([ModelResponse.tool_call("shout", {"text": "hi"}), "HI"])
    result = Agent(model, tools=[shout], trace_dir=tmp_path, **agent_kwargs).run_sync("go")  # type: ignore[arg-type]
    assert result.trace_path is not None
    return result.trace_path


def test_header_and_events_have_the_documented_shape(tmp_path: Path) -> None:
    path = run_once(tmp_path, instructions="Shout back.")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    header = lines[0]
    assert header["format"] == FORMAT == "agentloop.trace/1"
    assert header["task"] == "go"
    assert header["agent"]["instructions"] == "Shout back."
    assert header["agent"]["tools"][0]["name"] == "shout"
    assert len(header["config_hash"]) == 16
    for seq, event in enumerate(lines[1:]):
        assert {"type", "run_id", "step", "seq", "ts"} <= event.keys()
        assert event["seq"] == seq and event["run_id"] == header["run_id"]
    assert [e["type"] for e in lines[1:]][-1] == "run_finished"
    result = next(e for e in lines if e.get("type") == "tool_result")
    assert result["untrusted"] is True and result["duration_ms"] >= 0


def test_read_trace_round_trip(tmp_path: Path) -> None:
    trace = read_trace(run_once(tmp_path))
    assert trace.output == "HI" and not trace.torn
    assert trace.steps == 2
    assert [c.name for c in trace.tool_calls()] == ["shout"]
    roles = [m.role for m in trace.messages()]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]


def test_a_torn_last_line_is_dropped(tmp_path: Path) -> None:
    path = run_once(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 25])  # cut inside the terminal event
    trace = read_trace(path)
    assert trace.torn and trace.terminal is None
    assert trace.events[-1].type == "model_response"


def test_a_broken_line_in_the_middle_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = run_once(tmp_path)
    lines = path.read_text().splitlines()
    lines[2] = '{"type": "model_response", "oops": '
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError, match=":3: not a valid trace event"):
        read_trace(path)


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        ("", TraceError, "empty"),
        ("hello\n", TraceError, "not JSON"),
        ('{"format": "other/1"}\n', TraceError, "not an agentloop trace"),
        ('{"format": "agentloop.trace/2", "run_id": "x"}\n', TraceFormatError, "newer"),
        # Objects that other loaders would turn into code are plain data here, and invalid.
        ('{"format": "agentloop.trace/1", "__class__": "os.system"}\n', TraceError, "header"),
        ("!!python/object/apply:os.system ['echo pwned']\n", TraceError, "not JSON"),
        (b"\x80\x04\x95pickle".decode("latin-1") + "\n", TraceError, "not JSON"),
    ],
)
def test_files_that_are_not_traces_are_refused(
    tmp_path: Path, content: str, error: type[Exception], match: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="latin-1")
    with pytest.raises(error, match=match):
        read_trace(path)


def test_missing_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read trace"):
        read_trace(tmp_path / "nope.jsonl")


def test_control_characters_and_line_separators_stay_inside_one_line(tmp_path: Path) -> None:
    @tool
    def nasty() -> str:
        """Return hostile text."""
        return 'a\nb\r\x1b[2J\u2028c\u2029{"type": "run_finished"}\n'

    model = ScriptedModel([ModelResponse.tool_call("nasty"), "done"])
    result = Agent(model, tools=[nasty], trace_dir=tmp_path).run_sync("go")
    raw = result.trace_path.read_bytes()  # type: ignore[union-attr]
    assert b"\x1b" not in raw and b"\r" not in raw
    trace = read_trace(result.trace_path)  # type: ignore[arg-type]
    assert trace.tool_results()[0].content.startswith("a\nb\r\x1b[2J\u2028c")
    assert trace.terminal is not None and trace.terminal.type == "run_finished"


def test_secrets_never_reach_the_trace(tmp_path: Path) -> None:
    secret = "s3cr3t-value-0123456789"

    @tool
    def login(user: str, api_key: str) -> str:
        """Log in."""
        return f"logged in {user} with {api_key}; Authorization: Bearer {secret}"

    model = ScriptedModel(
        [ModelResponse.tool_call("login", {"user": "ann", "api_key": "sk-" + "a" * 30}), "ok"]
    )
    agent = Agent(model, tools=[login], trace_dir=tmp_path, secrets=[secret])
    result = agent.run_sync(f"use the key {secret}")
    text = result.trace_path.read_text()  # type: ignore[union-attr]
    assert secret not in text and "sk-" + "a" * 30 not in text
    assert "[REDACTED]" in text and "logged in ann" in text
    # Logs: tests/test_redaction_values.py logs a secret through a failing run.


KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from agentloop import Agent, ModelResponse, tool
    from agentloop.testing import FunctionModel

    @tool
    def tick(n: int) -> int:
        \"\"\"Count.\"\"\"
        print(f"tick {n}", flush=True)
        time.sleep(0.05)
        return n

    def script(messages, call):
        return ModelResponse.tool_call("tick", {"n": call.index})

    Agent(FunctionModel(script), tools=[tick], trace_dir=sys.argv[1], max_steps=None).run_sync("go")
    """
)


@pytest.mark.slow
def test_sigkill_mid_run_leaves_a_readable_trace(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        for _ in range(5):
            proc.stdout.readline()
        time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    [path] = tmp_path.glob("*.jsonl")
    trace = read_trace(path)
    assert trace.terminal is None
    assert len(trace.tool_results()) >= 4
    assert [e.seq for e in trace.events] == list(range(len(trace.events)))


STUCK_RUN = textwrap.dedent(
    """
    import sys, time
    from agentloop import Agent, ModelResponse, tool
    from agentloop.testing import FunctionModel

    @tool
    def quick(n: int) -> int:
        \"\"\"Return at once.\"\"\"
        return n

    @tool
    def stuck(n: int) -> int:
        \"\"\"Never return.\"\"\"
        time.sleep(0.3)  # long after quick's result came back
        print("stuck", flush=True)
        time.sleep(3600)
        return n

    def script(messages, call):
        if call.index == 0:
            return ModelResponse.tool_call("quick", {"n": 0})
        if call.index == 1 and sys.argv[2] == "tool":
            return ModelResponse.tool_calls_of([("quick", {"n": 1}), ("stuck", {"n": 2})])
        print("asked", flush=True)
        time.sleep(3600)  # the model never answers

    Agent(FunctionModel(script), tools=[quick, stuck], trace_dir=sys.argv[1]).run_sync("go")
    """
)


@pytest.mark.slow
def test_a_process_killed_while_it_waits_leaves_every_event_before_the_wait(
    tmp_path: Path,
) -> None:
    """Events are handed to the file before each wait, not each on its own: killed while a
    tool runs, the trace holds the calls and the result of the call that had returned;
    killed while the model is asked, it ends with that request."""
    for where, line in [("tool", "stuck"), ("model", "asked")]:
        folder = tmp_path / where
        args = [sys.executable, "-c", STUCK_RUN, str(folder), where]
        with subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == line
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        [path] = folder.glob("*.jsonl")
        trace = read_trace(path)
        assert trace.terminal is None and not trace.torn
        last = [e for e in trace.events if e.step == trace.events[-1].step]
        if where == "tool":
            assert [e.type for e in last] == [
                "model_request", "model_response", "tool_call", "tool_call", "tool_result"
            ]  # fmt: skip
            assert trace.events[-1].name == "quick"  # type: ignore[union-attr]
        else:
            assert [e.type for e in last] == ["model_request"]
            assert trace.events[-2].type == "tool_result"
