"""``agentloop run`` streams the model's text to stdout as it arrives (redacted, escaped),
tool steps to stderr; ``--no-stream`` and ``--json`` ask unstreamed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from agentloop.cli import main
from agentloop.cli.streamed import TextPrinter
from agentloop.redaction import Redactor
from fakes import FakeOpenAIServer, answer, tool_call, tool_calls

TOOLS = '''
from agentloop import tool


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b
'''


@pytest.fixture
def setup(
    openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> list[str]:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tools.py").write_text(TOOLS)
    return ["run", "What is 2 + 3?", "--model", "openai:fake", "--tools", "tools.py"]


@pytest.mark.parametrize("flag", [None, "--no-stream", "--json"])
def test_run_streams_unless_told_not_to(
    setup: list[str],
    openai_server: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
    flag: str | None,
) -> None:
    openai_server.script(tool_calls(tool_call("add", {"a": 2, "b": 3})), answer("2 + 3 = 5"))
    code = main([*setup, *([flag] if flag else [])])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    streamed = [body.get("stream") is True for body in openai_server.bodies]
    assert streamed == [flag is None] * 2
    if flag != "--json":
        assert captured.out == "2 + 3 = 5\n"
    assert '    call add {"a": 2, "b": 3}' in captured.err.replace("  [call", "\n").splitlines()[1:]


def test_the_printer_shows_words_as_they_settle_and_masks_split_secrets() -> None:
    secret = "hunter2-very-secret"
    sink = io.StringIO()
    printer = TextPrinter(Redactor([secret]), sink)
    printer.text("The co")
    assert sink.getvalue() == "The "  # "co" may go on
    printer.text("de is hun")
    assert sink.getvalue() == "The code is "  # "hun" may be the secret's start
    printer.text("ter2-very-sec")
    printer.text("ret, ok \x1b[2J")
    printer.step_finished()
    assert sink.getvalue() == "The code is [REDACTED], ok \\x1b[2J\n"
    assert secret not in sink.getvalue()


def test_a_line_naming_a_secret_key_waits_for_its_end() -> None:
    sink = io.StringIO()
    printer = TextPrinter(Redactor(), sink)
    printer.text("ok then\napi_key = ")
    assert sink.getvalue() == "ok then\n"
    printer.text("sk-abcdefghijklmnopqrstuvwxyz123456\n")
    assert "sk-abcdefghijklmnop" not in sink.getvalue()


@pytest.mark.parametrize("flag", ["--stream", "--pace"])
def test_replay_streams_the_recorded_text_to_stderr(
    setup: list[str],
    openai_server: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
    flag: str,
) -> None:
    openai_server.script(tool_calls(tool_call("add", {"a": 2, "b": 3})), answer("2 + 3 = 5"))
    assert main(setup) == 0
    [trace] = Path("traces").glob("*.jsonl")
    capsys.readouterr()
    code = main(["replay", str(trace), flag])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "2 + 3 = 5\n" in captured.err
    assert "no divergence" in captured.out


@pytest.mark.parametrize("flag", [None, "--no-stream"])
def test_chat_streams_each_answer_unless_told_not_to(
    setup: list[str],
    openai_server: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flag: str | None,
) -> None:
    openai_server.script(answer("Hello there!"), answer("Lyon, in France."))
    monkeypatch.setattr("sys.stdin", io.StringIO("hi\nwhich city?\n/exit\n"))
    code = main(["chat", "--model", "openai:m", *([flag] if flag else [])])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.splitlines() == ["Hello there!", "Lyon, in France."]
    assert [b.get("stream") is True for b in openai_server.bodies] == [flag is None] * 2
