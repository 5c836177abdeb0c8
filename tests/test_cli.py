"""The ``agentloop`` command: run, traces list/show, tool loading, exit codes, escaping.

The model is a tiny OpenAI-compatible server on 127.0.0.1 that plays a script, reached through
``OPENAI_BASE_URL`` with the model string ``openai:fake``; runs go through ``main(argv)``
in-process, and through a subprocess where the exit code or a signal is the point.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from agentloop import __version__, read_trace
from agentloop.cli import main
from agentloop.cli.render import escape, one_line
from agentloop.loading import ToolLoadError, load_tools
from agentloop.trace import iter_trace_files
from agentloop.untrusted import UNTRUSTED_NOTICE

# -- the fake model server ---------------------------------------------------------------------

Reply = dict[str, Any] | int
"""An assistant message to answer with, or an HTTP error status."""


def answer(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def call(name: str, call_id: str = "call_1", **arguments: Any) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": function}],
    }


class FakeOpenAI:
    """Answers POST .../chat/completions with the next scripted reply, then ``repeat`` (if
    set) forever; past the script it answers HTTP 400 so a test notices."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.repeat: Reply | None = None
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    reply = server.script.pop(0) if server.script else server.repeat
                if reply is None:
                    self._send(400, {"error": {"message": "the fake's script is used up"}})
                elif isinstance(reply, int):
                    self._send(reply, {"error": {"message": f"scripted {reply}"}})
                else:
                    finish = "tool_calls" if reply.get("tool_calls") else "stop"
                    choice = {"index": 0, "message": reply, "finish_reason": finish}
                    usage = {"prompt_tokens": 11, "completion_tokens": 7}
                    self._send(200, {"model": "fake", "choices": [choice], "usage": usage})

            def _send(self, status: int, data: dict[str, Any]) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    yield server
    server.close()


@dataclass
class Outcome:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str) -> Outcome:
        code = main(list(argv))
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


TOOLS = '''
from agentloop import tool


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def shout(text: str) -> str:
    """Return the text as it is (the name is a joke)."""
    return text
'''


@pytest.fixture
def tools_file(tmp_path: Path) -> Path:
    path = tmp_path / "mytools.py"
    path.write_text(TOOLS)
    return path


def run_args(tools: Path, *extra: str, task: str = "What is 2 + 3?") -> list[str]:
    return ["run", task, "--model", "openai:fake", "--tools", str(tools), *extra]


def only_trace(folder: Path) -> Path:
    files = list(folder.glob("*.jsonl"))
    assert len(files) == 1, files
    return files[0]


# -- escaping ----------------------------------------------------------------------------------


def test_escape_shows_terminal_controls_and_keeps_text() -> None:
    text = "a\x1b[2Jb\rc\x08d\x07e\x7ff\x9b31mg\u202eh\x00i"
    assert escape(text) == "a\\x1b[2Jb\\x0dc\\x08d\\x07e\\x7ff\\x9b31mg\\u202eh\\x00i"
    kept = "line 1\n\tline 2: é, 中文, 🙂, ½"
    assert escape(kept) == kept


def test_one_line_escapes_newlines_and_cuts_long_text() -> None:
    assert one_line("a\nb\x1b", None) == "a\\nb\\x1b"
    assert one_line("x" * 30, 10) == "x" * 10 + " ... [20 more chars]"


# -- run ---------------------------------------------------------------------------------------


def test_run_prints_only_the_answer_on_stdout_and_progress_on_stderr(
    fake: FakeOpenAI, tools_file: Path, cli: Any, tmp_path: Path
) -> None:
    fake.script = [call("add", a=2, b=3), answer("2 + 3 = 5")]
    result = cli(*run_args(tools_file, "--trace-dir", str(tmp_path / "t")))
    assert result.code == 0, result.err
    assert result.out == "2 + 3 = 5\n"
    err = result.err.splitlines()
    assert "step 0" in err
    assert "step 1" in err
    assert '    call add {"a": 2, "b": 3}  [call_1]' in err
    assert any(line.startswith("    result add (") and line.endswith("ms): 5") for line in err)
    assert any(
        line.startswith("finished: 2 steps, 1 tool call, 22 in / 14 out tokens") for line in err
    )
    trace = only_trace(tmp_path / "t")
    assert f"trace: {trace}" in err
    assert read_trace(trace).output == "2 + 3 = 5"
    assert [t["function"]["name"] for t in fake.requests[0]["tools"]] == ["add", "shout"]


def test_run_json_prints_one_result_object(
    fake: FakeOpenAI, tools_file: Path, cli: Any, tmp_path: Path
) -> None:
    fake.script = [call("add", a=1, b=1), answer("2")]
    result = cli(*run_args(tools_file, "--json", "--trace-dir", str(tmp_path / "t")))
    assert result.code == 0, result.err
    data = json.loads(result.out)
    trace = read_trace(data["trace_path"])
    assert data["output"] == "2"
    assert data["stop_reason"] == "final_answer"
    assert data["steps"] == 2
    assert data["tool_calls"] == 1
    assert data["usage"] == {"input_tokens": 22, "output_tokens": 14, "total_tokens": 36}
    assert data["run_id"] == trace.run_id
    assert data["config_hash"] == trace.header.config_hash


def test_run_passes_instructions_and_max_steps(
    fake: FakeOpenAI, tools_file: Path, cli: Any
) -> None:
    fake.script = [answer("ok")]
    result = cli(*run_args(tools_file, "--instructions", "Be brief.", "--max-steps", "3"))
    assert result.code == 0, result.err
    system = fake.requests[0]["messages"][0]
    assert system == {"role": "system", "content": f"Be brief.\n\n{UNTRUSTED_NOTICE}"}
    header = read_trace(only_trace(Path("traces"))).header  # the default ./traces
    assert header.agent["limits"]["max_steps"] == 3


def test_failing_run_exits_1_and_names_the_trace(
    fake: FakeOpenAI, tools_file: Path, cli: Any, tmp_path: Path
) -> None:
    fake.repeat = call("add", a=1, b=2)
    result = cli(*run_args(tools_file, "--max-steps", "1", "--trace-dir", str(tmp_path / "t")))
    assert result.code == 1
    assert result.out == ""
    trace = only_trace(tmp_path / "t")
    assert "error: run failed (max_steps): no final answer after max_steps=1" in result.err
    assert f"trace: {trace}" in result.err
    end = read_trace(trace).terminal
    assert end is not None
    assert end.type == "run_failed"
    assert end.reason == "max_steps"


def test_failing_run_with_json_prints_the_partial_result_and_error(
    fake: FakeOpenAI, tools_file: Path, cli: Any
) -> None:
    fake.repeat = call("add", a=1, b=2)
    result = cli(*run_args(tools_file, "--max-steps", "1", "--json"))
    assert result.code == 1
    data = json.loads(result.out)
    assert data["output"] is None
    assert data["stop_reason"] == "max_steps"
    assert data["error"]["type"] == "MaxStepsExceeded"
    assert Path(data["trace_path"]).is_file()


def test_model_error_exits_1(fake: FakeOpenAI, tools_file: Path, cli: Any) -> None:
    fake.script = [404]
    result = cli(*run_args(tools_file))
    assert result.code == 1
    assert "error: run failed (model_error): HTTP 404" in result.err
    assert "'fake'" in result.err
    assert "trace: traces" in result.err


def test_retries_show_in_progress(fake: FakeOpenAI, tools_file: Path, cli: Any) -> None:
    fake.script = [503, answer("fine")]
    result = cli(*run_args(tools_file))
    assert result.code == 0, result.err
    assert result.out == "fine\n"
    retry = [line for line in result.err.splitlines() if line.startswith("    retry 1: ")]
    assert len(retry) == 1
    assert retry[0].startswith("    retry 1: HTTP 503: scripted 503 (model='fake'")
    assert retry[0].endswith(", waited 0.0 s")


def test_tool_output_is_escaped_on_the_terminal(
    fake: FakeOpenAI, tools_file: Path, cli: Any
) -> None:
    evil = "\x1b[2J\x1b]0;pwned\x07\rfake prompt$ "
    fake.script = [call("shout", text=evil), answer("done \x1b[31mred")]
    result = cli(*run_args(tools_file))
    assert result.code == 0, result.err
    assert "\x1b" not in result.err + result.out
    assert "\r" not in result.err + result.out
    assert "\\x1b[2J\\x1b]0;pwned\\x07\\x0dfake prompt$ " in result.err
    assert result.out == "done \\x1b[31mred\n"
    shown = cli("traces", "show", str(only_trace(Path("traces"))))
    assert shown.code == 0
    assert "\x1b" not in shown.out
    assert "\\x1b[2J" in shown.out


def test_secrets_stay_out_of_progress_and_output(
    fake: FakeOpenAI, tools_file: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-cli-test-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    fake.script = [call("shout", text=f"key={secret}"), answer(f"the key is {secret}")]
    result = cli(*run_args(tools_file))
    assert result.code == 0, result.err
    assert secret not in result.out + result.err
    assert "[REDACTED]" in result.out


def test_verbose_logs_debug_records_to_stderr(fake: FakeOpenAI, tools_file: Path, cli: Any) -> None:
    fake.script = [call("add", a=1, b=1), answer("2")]
    quiet = cli(*run_args(tools_file))
    fake.script = [call("add", a=1, b=1), answer("2")]
    loud = cli(*run_args(tools_file, "-v"))
    assert "run started" not in quiet.err
    assert "run started" in loud.err
    assert "tool=add" in loud.err
    assert loud.out == quiet.out == "2\n"


def test_main_leaves_the_agentloop_logger_as_it_found_it(cli: Any) -> None:
    logger = logging.getLogger("agentloop")
    before = (logger.level, logger.propagate, list(logger.handlers))
    assert cli("-v", "run", "t", "--model", "nope").code == 2
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


# -- tools -------------------------------------------------------------------------------------


def test_tools_from_a_folder_in_order_skipping_private_files(tmp_path: Path) -> None:
    folder = tmp_path / "tools"
    folder.mkdir()
    (folder / "b_tools.py").write_text(
        "from agentloop import tool\n\n"
        "@tool\ndef zeta() -> str:\n    return 'z'\n\n"
        "@tool\ndef alpha() -> str:\n    return 'a'\n"
    )
    (folder / "a_tools.py").write_text(
        "from agentloop import Tool\n\n"
        "beta = Tool.from_schema(name='beta', description='b', parameters={'type': 'object'},"
        " func=lambda: 'b')\nnot_a_tool = 42\n"
    )
    (folder / "_helpers.py").write_text("raise RuntimeError('must not be imported')\n")
    (folder / "notes.txt").write_text("not python")
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.py").write_text("raise RuntimeError('not recursive')\n")
    assert [t.name for t in load_tools([folder])] == ["beta", "zeta", "alpha"]


def test_tools_from_a_folder_reach_the_model(
    fake: FakeOpenAI, tools_file: Path, tmp_path: Path, cli: Any
) -> None:
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "mul.py").write_text(
        "from agentloop import tool\n\n@tool\ndef mul(a: int, b: int) -> int:\n    return a * b\n"
    )
    fake.script = [call("mul", a=6, b=7), answer("42")]
    result = cli(*run_args(tools_file, "--tools", str(folder)))
    assert result.code == 0, result.err
    assert [t["function"]["name"] for t in fake.requests[0]["tools"]] == ["add", "shout", "mul"]
    assert "): 42" in result.err


def test_the_same_file_twice_loads_once(tools_file: Path) -> None:
    assert [t.name for t in load_tools([tools_file, tools_file])] == ["add", "shout"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("x = 1\n\nraise ValueError('bad config')\n", "line 3): ValueError: bad config"),
        ("def broken(:\n", "line 1): SyntaxError"),
        ("import no_such_module_for_agentloop\n", "ModuleNotFoundError: No module named"),
        ("def plain() -> int:\n    return 1\n", "defines no tools: decorate functions with"),
    ],
)
def test_bad_tool_files_are_usage_errors(
    source: str, expected: str, tmp_path: Path, cli: Any
) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(source)
    with pytest.raises(ToolLoadError, match=r"bad\.py"):
        load_tools([bad])
    result = cli("run", "task", "--model", "openai:fake", "--tools", str(bad))
    assert result.code == 2
    assert f"error: cannot import tool file {bad}" in result.err or "defines no tools" in result.err
    assert expected in result.err
    assert "Traceback" not in result.err


def test_duplicate_tool_names_across_files_are_usage_errors(
    fake: FakeOpenAI, tools_file: Path, tmp_path: Path, cli: Any
) -> None:
    other = tmp_path / "other.py"
    other.write_text(TOOLS)
    result = cli(
        "run", "t", "--model", "openai:fake", "--tools", str(tools_file), "--tools", str(other)
    )
    assert result.code == 2
    assert "two tools are named 'add'" in result.err


def test_missing_tools_path_and_empty_folder(tmp_path: Path, cli: Any) -> None:
    missing = cli("run", "t", "--model", "openai:fake", "--tools", str(tmp_path / "nope.py"))
    assert missing.code == 2
    assert f"error: tools path {tmp_path / 'nope.py'} does not exist" in missing.err
    (tmp_path / "empty").mkdir()
    empty = cli("run", "t", "--model", "openai:fake", "--tools", str(tmp_path / "empty"))
    assert empty.code == 2
    assert "has no .py files" in empty.err


# -- usage errors ------------------------------------------------------------------------------


def test_unknown_model_string_is_a_usage_error(cli: Any) -> None:
    result = cli("run", "t", "--model", "gpt-4o")
    assert result.code == 2
    assert "unknown model string 'gpt-4o'" in result.err


def test_bad_arguments_are_usage_errors(cli: Any) -> None:
    assert cli("run", "t").code == 2  # no --model
    zero = cli("run", "t", "--model", "openai:fake", "--max-steps", "0")
    assert zero.code == 2
    assert "must be at least 1" in zero.err
    nothing = cli()
    assert nothing.code == 2
    assert "usage: agentloop" in nothing.err


def test_version_and_console_script(cli: Any) -> None:
    result = cli("--version")
    assert result.code == 0
    assert result.out == f"agentloop {__version__}\n"
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["agentloop"] == "agentloop.cli:main"


@pytest.mark.slow
def test_exit_codes_from_a_real_process(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "agentloop.cli"]
    env = {**os.environ, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    usage = subprocess.run(
        [*command, "run", "t", "--model", "nope:x"], capture_output=True, text=True, env=env
    )
    assert usage.returncode == 2
    assert "unknown model string" in usage.stderr
    assert "Traceback" not in usage.stderr
    missing = subprocess.run(
        [*command, "traces", "show", "no-such-run", "--trace-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert "no trace 'no-such-run'" in missing.stderr


# -- traces list and show ----------------------------------------------------------------------


@pytest.fixture
def three_traces(fake: FakeOpenAI, tools_file: Path, cli: Any, tmp_path: Path) -> list[Path]:
    """A finished, a failed and a torn trace in ./traces, oldest first by start time (and
    newest first by file time, which listings must not go by)."""
    fake.script = [call("add", a=2, b=3), answer("5")]
    assert cli(*run_args(tools_file, task="Add 2 and 3\nplease")).code == 0
    finished = only_trace(Path("traces"))
    fake.script = [call("add", a=1, b=1)]
    assert cli(*run_args(tools_file, "--max-steps", "1", task="Fail")).code == 1
    failed = next(p for p in Path("traces").glob("*.jsonl") if p != finished)
    lines = finished.read_text().splitlines(keepends=True)
    torn = Path("traces") / "20990101T000000Z-deadbeef.jsonl"
    header = json.loads(lines[0])
    header["run_id"] = "20990101T000000Z-deadbeef"
    header["created"] = "2099-01-01T00:00:00.000Z"
    torn.write_text(json.dumps(header) + "\n" + "".join(lines[1:4]) + lines[4][:25])
    for age, path in enumerate([torn, failed, finished]):  # file times say the opposite
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    return [finished, failed, torn]


def test_traces_list_newest_first(three_traces: list[Path], cli: Any) -> None:
    finished, failed, _torn = three_traces
    result = cli("traces", "list")
    assert result.code == 0, result.err
    heading, *rows = result.out.splitlines()
    assert heading.split()[:3] == ["RUN", "ID", "CREATED"]
    assert rows[0].startswith("20990101T000000Z-deadbeef")
    assert "incomplete" in rows[0]
    assert rows[1].startswith(failed.stem)
    assert " failed:max_steps " in rows[1]
    assert rows[2].startswith(finished.stem)
    trace = read_trace(finished)
    assert " finished " in rows[2]
    assert trace.header.config_hash in rows[2]
    assert rows[2].endswith("Add 2 and 3")  # first line of the task only
    assert " fake " in rows[2]


def test_traces_list_json(three_traces: list[Path], cli: Any, tmp_path: Path) -> None:
    (tmp_path / "traces" / "junk.jsonl").write_text("not json\n")
    os.utime(tmp_path / "traces" / "junk.jsonl", (1, 1))
    result = cli("traces", "list", "traces", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert [d["status"] for d in data] == ["incomplete", "failed", "finished"]
    assert data[1]["reason"] == "max_steps"
    assert data[2]["steps"] == 2
    assert data[2]["tool_calls"] == 1
    assert data[2]["model"] == "fake"
    assert data[2]["task"] == "Add 2 and 3\nplease"
    assert "skipped traces/junk.jsonl: " in result.err


def test_traces_list_of_a_missing_folder(cli: Any, tmp_path: Path) -> None:
    result = cli("traces", "list", str(tmp_path / "none"))
    assert result.code == 2
    assert "trace folder" in result.err
    (tmp_path / "empty").mkdir()
    empty = cli("traces", "list", str(tmp_path / "empty"))
    assert empty.code == 0
    assert empty.out == ""
    assert "no traces in" in empty.err


def test_traces_show_a_finished_run(three_traces: list[Path], cli: Any) -> None:
    finished = three_traces[0]
    trace = read_trace(finished)
    result = cli("traces", "show", trace.run_id)  # a run id, looked up in ./traces
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[:2] == [f"run      {trace.run_id}", "status   finished"]
    assert f"config   {trace.header.config_hash}" in lines
    assert "tools    add, shout" in lines
    assert "task: Add 2 and 3" in lines
    assert "step 0" in lines
    assert '    call add {"a": 2, "b": 3}  [call_1]' in lines
    assert any(line.startswith("    result add (") and line.endswith(": 5") for line in lines)
    assert lines[-2].startswith("finished: 2 steps, 1 tool call")
    assert lines[-1] == "    output: 5"


def test_traces_show_a_failed_run_by_path_and_by_prefix(
    three_traces: list[Path], cli: Any, tmp_path: Path
) -> None:
    failed = three_traces[1]
    by_path = cli("traces", "show", str(failed))
    assert by_path.code == 0
    assert "failed (max_steps): 1 step" in by_path.out
    assert "    MaxStepsExceeded: no final answer after max_steps=1" in by_path.out
    by_prefix = cli("traces", "show", failed.stem[:-3], "--trace-dir", str(tmp_path / "traces"))
    assert by_prefix.out == by_path.out


def test_traces_show_a_torn_trace_as_incomplete(three_traces: list[Path], cli: Any) -> None:
    result = cli("traces", "show", "20990101T000000Z")
    assert result.code == 0, result.err
    assert "status   incomplete" in result.out
    assert "incomplete: the trace has no terminal event" in result.out
    assert "its last line was cut off" in result.out
    assert "finished:" not in result.out


def test_traces_show_shows_scores_critiques_and_feedback(
    three_traces: list[Path], cli: Any
) -> None:
    from agentloop.events import CritiqueRecorded, ScoreRecorded
    from agentloop.feedback import add_feedback
    from agentloop.trace import annotate

    finished = three_traces[0]
    annotate(finished, ScoreRecorded, scorer="contains", value=1.0, passed=True, eval_run="e1")
    annotate(
        finished,
        CritiqueRecorded,
        judge={"name": "judge-model"},
        rubric={"name": "default"},
        prompt_hash="h",
        critique={
            "verdict": "acceptable",
            "summary": "Right answer.",
            "scores": [{"principle": "grounded", "score": 4, "rationale": "-"}],
            "problems": [{"step": 0, "problem": "slow", "fix": "answer at once"}],
        },
    )
    add_feedback(finished, rating="down", comment="say \x1b[31mwhy", correction="5.", step=1)
    result = cli("traces", "show", str(finished))
    assert result.code == 0, result.err
    annotations = result.out.split("\nannotations\n")[1].splitlines()
    assert annotations == [
        "    score contains: 1 passed (eval e1)",
        "    critique by judge-model: acceptable",
        "        summary: Right answer.",
        "        grounded: 4",
        "        step 0: slow (fix: answer at once)",
        "    feedback on step 1 (api): down",
        "        comment: say \\x1b[31mwhy",
        "        correction: 5.",
    ]


def test_traces_show_cuts_long_text_unless_full(
    fake: FakeOpenAI, tools_file: Path, cli: Any
) -> None:
    fake.script = [call("shout", text="y" * 5000), answer("ok")]
    assert cli(*run_args(tools_file)).code == 0
    path = str(only_trace(Path("traces")))
    short = cli("traces", "show", path)
    assert "y" * 2000 + " ... [3000 more chars]" in short.out
    full = cli("traces", "show", path, "--full")
    assert "y" * 5000 in full.out
    assert "more chars" not in full.out


def test_traces_show_errors(cli: Any, tmp_path: Path) -> None:
    missing = cli("traces", "show", str(tmp_path / "x.jsonl"))
    assert missing.code == 2
    assert "trace file" in missing.err
    notatrace = tmp_path / "notes.jsonl"
    notatrace.write_text('{"hello": 1}\n')
    bad = cli("traces", "show", str(notatrace))
    assert bad.code == 2
    assert "not an agentloop trace" in bad.err
    folder = tmp_path / "tr"
    folder.mkdir()
    for name in ("20240101T000000Z-aaaa", "20240101T000000Z-bbbb"):
        (folder / f"{name}.jsonl").write_text("")
    ambiguous = cli("traces", "show", "20240101", "--trace-dir", str(folder))
    assert ambiguous.code == 2
    assert "is ambiguous" in ambiguous.err


# -- Ctrl-C ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_cancels_the_run_records_it_and_exits_130(fake: FakeOpenAI, tmp_path: Path) -> None:
    slow = tmp_path / "slow.py"
    slow.write_text(
        "import time\nfrom agentloop import tool\n\n"
        "@tool\ndef nap(seconds: float) -> str:\n    time.sleep(seconds)\n    return 'rested'\n"
    )
    fake.script = [call("nap", call_id="call_nap", seconds=30)]
    traces = tmp_path / "ctrlc"
    command = ["run", "Rest.", "--model", "openai:fake", "--tools", str(slow)]
    process = subprocess.Popen(
        [sys.executable, "-m", "agentloop.cli", *command, "--trace-dir", str(traces)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    seen = []
    for line in process.stderr:  # wait until the tool is running
        seen.append(line)
        if line.startswith("    call nap"):
            break
    time.sleep(0.2)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, rest = process.communicate(timeout=20)
    err = "".join(seen) + rest
    assert process.returncode == 130, err
    assert time.monotonic() - started < 10  # did not wait for the 30 s nap
    assert out == ""
    assert "Traceback" not in err
    assert "cancelled" in err
    path = only_trace(traces)
    assert f"trace: {path}" in err
    end = read_trace(path).events[-1]
    assert end.type == "run_cancelled"
    assert end.interrupted_calls == ["call_nap"]
    assert list(iter_trace_files(traces)) == [path]
