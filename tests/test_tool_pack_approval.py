"""Approval of tool calls: the trace records every approval and denial, a raising approver
denies, invalid arguments never reach an approver, and the terminal approver shows everything
escaped and denies by default."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from agentloop import Agent, ModelResponse, Tool, read_trace
from agentloop.actions import ToolCall
from agentloop.approval import describe_call, escape_controls, terminal_approver
from agentloop.events import ToolResultRecorded
from agentloop.testing import ScriptedModel
from toolpack import load

files = load("files")


def file_tools(root: Path) -> list[Tool]:
    return files.make_file_tools(root)  # type: ignore[no-any-return]


async def run_write(
    root: Path, trace_dir: Path, approver: Any, arguments: Any = None
) -> list[ToolResultRecorded]:
    args = arguments if arguments is not None else {"path": "out.txt", "content": "hi"}
    model = ScriptedModel([ModelResponse.tool_call("write_file", args), "done"])
    agent = Agent(model, tools=file_tools(root), trace_dir=trace_dir, approver=approver)
    result = await agent.run("write it")
    assert result.trace_path is not None
    return read_trace(result.trace_path).tool_results()


async def test_without_an_approver_the_write_is_denied_and_recorded(tmp_path: Path) -> None:
    [result] = await run_write(tmp_path, tmp_path / "traces", approver=None)
    assert (result.error, result.approval) == ("denied", "denied")
    assert "needs approval and was denied" in result.content
    assert not (tmp_path / "out.txt").exists()


async def test_an_approved_write_runs_and_is_recorded(tmp_path: Path) -> None:
    seen: list[ToolCall] = []

    def approve(call: ToolCall) -> bool:
        seen.append(call)
        return True

    [result] = await run_write(tmp_path, tmp_path / "traces", approver=approve)
    assert (result.error, result.approval) == (None, "approved")
    assert (tmp_path / "out.txt").read_text() == "hi"
    [call] = seen
    assert (call.tool.name, call.arguments) == ("write_file", {"path": "out.txt", "content": "hi"})


async def test_an_async_approver_that_says_no_denies(tmp_path: Path) -> None:
    async def refuse(call: ToolCall) -> bool:
        await asyncio.sleep(0)
        return False

    [result] = await run_write(tmp_path, tmp_path / "traces", approver=refuse)
    assert result.approval == "denied"
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("verdict", ["yes", 1, None, "true"])
async def test_only_a_true_verdict_approves(tmp_path: Path, verdict: object) -> None:
    [result] = await run_write(tmp_path, tmp_path / "traces", approver=lambda call: verdict)
    assert result.approval == "denied"
    assert not (tmp_path / "out.txt").exists()


async def test_an_approver_that_raises_denies(tmp_path: Path) -> None:
    def broken(call: ToolCall) -> bool:
        raise RuntimeError("approval service down")

    [result] = await run_write(tmp_path, tmp_path / "traces", approver=broken)
    assert (result.error, result.approval) == ("denied", "denied")
    assert not (tmp_path / "out.txt").exists()


async def test_tools_without_approval_record_none(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha")
    model = ScriptedModel([ModelResponse.tool_call("read_file", {"path": "a.txt"}), "done"])
    agent = Agent(model, tools=file_tools(tmp_path), trace_dir=tmp_path, approver=lambda c: 1 / 0)
    result = await agent.run("read it")
    assert result.trace_path is not None
    [tool_result] = read_trace(result.trace_path).tool_results()
    assert (tool_result.content, tool_result.approval) == ("alpha", None)


@pytest.mark.parametrize(
    "arguments",
    [
        "null",
        "[]",
        '"out.txt"',
        '{"path": "out.txt", "content": NaN}',
        '{"path": "out.txt", "content": "a", "content": "b"}',
        '{"path": "out.txt", "content": "hi"',
        {"path": "out.txt"},
        {"path": "out.txt", "content": "hi", "mode": "append"},
        {"path": ["out.txt"], "content": "hi"},
    ],
)
async def test_invalid_arguments_never_reach_the_approver(tmp_path: Path, arguments: Any) -> None:
    asked: list[ToolCall] = []

    def approve(call: ToolCall) -> bool:
        asked.append(call)
        return True

    [result] = await run_write(tmp_path, tmp_path / "traces", approve, arguments)
    assert asked == []
    assert result.error in ("invalid_json", "invalid_arguments")
    assert result.approval is None
    assert list(tmp_path.glob("out*")) == []


class Terminal(io.StringIO):
    """Typed answers on a stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def write_call(tool: Tool, **arguments: Any) -> ToolCall:
    from agentloop.messages import ToolCallPart

    part = ToolCallPart(call_id="c1", name=tool.name, arguments=json.dumps(arguments))
    return ToolCall(part=part, tool=tool, arguments=arguments, raw_arguments=arguments)


@pytest.mark.parametrize(
    ("typed", "approved"),
    [("y\n", True), ("YES\n", True), (" yes \n", True), ("n\n", False), ("\n", False),
     ("sure\n", False), ("", False)],
)  # fmt: skip
async def test_terminal_approver_needs_an_explicit_yes(
    tmp_path: Path, typed: str, approved: bool
) -> None:
    out = io.StringIO()
    approve = terminal_approver(Terminal(typed), out)
    write = file_tools(tmp_path)[2]
    assert await approve(write_call(write, path="a.txt", content="hello")) is approved
    assert "Allow? [y/N]" in out.getvalue()
    if typed == "":
        assert "Denied: end of input." in out.getvalue()


async def test_terminal_approver_denies_without_asking_when_input_is_not_a_terminal(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    stdin = io.StringIO("y\n")  # a pipe saying yes must not approve anything
    approve = terminal_approver(stdin, out)
    write = file_tools(tmp_path)[2]
    assert await approve(write_call(write, path="a.txt", content="x")) is False
    assert stdin.tell() == 0
    assert "Denied: input is not an interactive terminal." in out.getvalue()
    assert "Allow?" not in out.getvalue()


async def test_terminal_approver_shows_the_full_arguments_escaped(tmp_path: Path) -> None:
    out = io.StringIO()
    write = file_tools(tmp_path)[2]
    content = "line1\nline2\r\x1b[2J\x1b]0;owned\x07\x7f\x9b31m\u202egnp.exe" + "z" * 5000
    await terminal_approver(Terminal("n\n"), out)(write_call(write, path="a.txt", content=content))
    shown = out.getvalue()
    assert "write_file" in shown and '"path": "a.txt"' in shown
    assert "z" * 5000 in shown  # nothing is cut
    for raw in ("\r", "\x1b", "\x07", "\x7f", "\x9b", "\u202e"):
        assert raw not in shown
    assert "\\u001b[2J" in shown and "\\x9b" in shown and "\\u202e" in shown
    assert "line1\\nline2\\r" in shown


def test_escape_controls() -> None:
    assert (
        escape_controls("a\x1b[31mb\tc\u200bd\U000e0041") == "a\\x1b[31mb\\x09c\\u200bd\\U000e0041"
    )
    assert escape_controls("a\nb", keep_newlines=True) == "a\nb"
    assert escape_controls("a\nb") == "a\\x0ab"
    assert escape_controls("héllo — ✓") == "héllo — ✓"


def test_describe_call_names_the_tool_and_every_argument(tmp_path: Path) -> None:
    write = file_tools(tmp_path)[2]
    text = describe_call(write_call(write, path="p.txt", content="c"))
    assert text.splitlines()[0] == "The agent wants to call write_file with arguments:"
    assert json.loads(text.split("\n", 1)[1]) == {"path": "p.txt", "content": "c"}


async def test_terminal_approver_in_a_run(tmp_path: Path) -> None:
    out = io.StringIO()
    [result] = await run_write(
        tmp_path, tmp_path / "traces", approver=terminal_approver(Terminal("y\n"), out)
    )
    assert result.approval == "approved"
    assert (tmp_path / "out.txt").read_text() == "hi"
