"""Every CLI command over a corpus of hostile traces: control sequences in every string, deep
nesting, huge and torn lines, bytes that are not UTF-8. Each command ends with an exit code and
a clean message (no traceback), folder commands skip the bad files with a note, and nothing any
command prints holds a control character."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from agentloop import Agent, ModelResponse, read_trace, tool
from agentloop import trace as trace_module
from agentloop.cli import main
from agentloop.errors import TraceError
from agentloop.terminal import escape
from agentloop.testing import ScriptedModel
from fakes import FakeOpenAIServer, RecordedRequest, Reply, answer
from test_cli_improve import verdict

EVIL = "\x1b[31mred\x1b[0m\r\x1b]0;title\x07\u202eevil\u2028\x9b2J\x00"
FORMAT_VALUES = {
    "format",
    "type",
    "role",
    "error",
    "approval",
    "rating",
    "finish_reason",
    "protocol",
}


@tool
def lookup(city: str) -> str:
    """Population of a city."""
    return f"2.1 million {EVIL}"


@tool
def explode(city: str) -> str:
    """Fails."""
    raise RuntimeError(f"boom {EVIL}")


def poisoned(value: Any, key: str = "") -> Any:
    """Every string the format allows to be anything gets control sequences."""
    if isinstance(value, str):
        return value if key in FORMAT_VALUES else value + EVIL
    if isinstance(value, dict):
        return {k: poisoned(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [poisoned(v, key) for v in value]
    return value


def corpus(folder: Path) -> tuple[list[Path], list[Path]]:
    """(valid hostile traces, broken ones) in ``folder``."""
    made = folder / "made"
    finished = Agent(
        ScriptedModel([ModelResponse.tool_call("lookup", {"city": EVIL}), f"9 {EVIL}"]),
        tools=[lookup],
        trace_dir=made,
    ).run_sync(f"People in {EVIL}?")
    with pytest.raises(Exception):  # noqa: B017,PT011
        Agent(
            ScriptedModel([ModelResponse.tool_call("explode", {"city": "x"}), "-"]),
            tools=[explode],
            trace_dir=made,
        ).run_sync("fail")
    failed = next(p for p in made.glob("*.jsonl") if p != finished.trace_path)
    valid = []
    for n, source in enumerate([finished.trace_path, failed]):
        assert source is not None
        lines = [json.dumps(poisoned(json.loads(x))) for x in source.read_text().split("\n") if x]
        target = folder / f"valid-{n}.jsonl"
        target.write_text("\n".join(lines) + "\n")
        read_trace(target)  # still a valid trace
        valid.append(target)
    header = json.loads(valid[0].read_text().split("\n")[0])
    head = json.dumps(header)
    broken = {
        "deep-event": head + "\n" + "[" * 100_000 + "\n",
        "deep-header": '{"format": "agentloop.trace/1", "agent": ' + '{"a":' * 5000 + "}\n",
        "deep-list": "[" * 100_000,
        "huge-line": head + "\n" + json.dumps({"type": "warning", "message": "x" * 5000}) + "\n",
        "not-json": f"{EVIL}\n",
        "bad-event": head + "\n" + json.dumps({"type": EVIL}) + "\n",
        "newer": json.dumps({**header, "format": "agentloop.trace/99"}) + "\n",
        "empty": "",
    }
    bad = []
    for name, text in broken.items():
        target = folder / f"bad-{name}.jsonl"
        target.write_text(text)
        bad.append(target)
    (folder / "bad-binary.jsonl").write_bytes(b"\xff\xfe\x1b[2J\x00" * 100)
    bad.append(folder / "bad-binary.jsonl")
    os.mkfifo(folder / "bad-fifo.jsonl")  # reading it would wait for a writer forever
    bad.append(folder / "bad-fifo.jsonl")
    (folder / "bad-dir.jsonl").mkdir()
    bad.append(folder / "bad-dir.jsonl")
    return valid, bad


def commands(path: Path, folder: Path) -> list[list[str]]:
    p, d = str(path), str(folder)
    return [
        ["traces", "list", d],
        ["traces", "list", d, "--json"],
        ["traces", "show", p],
        ["traces", "show", p, "--full"],
        ["traces", "diff", p, p],
        ["traces", "diff", p, p, "--json"],
        ["replay", p],
        ["replay", p, "--json"],
        ["resume", p, "--model", "openai:agent"],
        ["critique", p, "--judge", "openai:judge"],
        ["critique", p, "--judge", "openai:judge", "--json"],
        ["feedback", p, "--rating", "up", "--comment", "ok"],
        ["export", "sft", d],
        ["export", "dpo", d],
        ["export", "sft", p],
    ]


def reply(request: RecordedRequest) -> Reply:
    if "response_format" in request.json():
        return answer(verdict(2) + " ")
    return answer(f"done {EVIL}")


@pytest.mark.slow
def test_every_command_over_hostile_traces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trace_module, "MAX_LINE_BYTES", 4096)  # the huge line, without 64 MiB of it
    folder = tmp_path / "traces"
    folder.mkdir()
    valid, bad = corpus(folder)
    monkeypatch.chdir(tmp_path)
    with FakeOpenAIServer() as server:
        server.fallback = reply
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-hostile-0000000000")
        for path in [*valid, *bad]:
            for argv in commands(path, folder):
                code = main(argv)
                out, err = capsys.readouterr()
                where = f"agentloop {' '.join(argv)}"
                assert code in (0, 1, 2), where
                assert escape(out) == out, f"{where} printed a control character: {out!r}"
                assert escape(err) == err, f"{where} printed a control character: {err!r}"
                assert "Traceback" not in err, where
                folder_ok = argv[0] == "export" and path.is_dir()  # export reads folders
                if path in bad and argv[-1] == str(path) and not folder_ok:
                    assert code == 2 and err.startswith("error: "), (where, err)
                if path in bad and argv[:2] == ["traces", "list"]:
                    assert f"skipped {path}" in err, where  # the folder went on without it


def test_reading_hostile_files_raises_only_trace_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trace_module, "MAX_LINE_BYTES", 4096)
    _, bad = corpus(tmp_path)
    for path in bad:
        with pytest.raises(TraceError):
            read_trace(path)
