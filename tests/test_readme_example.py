"""The README's example runs as printed, against the fake server in place of a real endpoint.

The code block under "## Your own tool, your own endpoint" is taken from README.md as it is;
only its base_url literal is pointed at the loopback server. So a change to the API that breaks
the README breaks this test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentloop import read_trace
from agentloop.events import RunFinished
from agentloop.untrusted import UNTRUSTED_NOTICE, delimit_untrusted
from fakes import FakeOpenAIServer, answer, tool_call, tool_calls

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Your own tool, your own endpoint"
BASE_URL = "http://localhost:8000/v1"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, f"no ```python block under {SECTION!r}"
    code = match.group(1)
    assert code.count(BASE_URL) == 1, f"the example should use base_url={BASE_URL!r} once"
    return code


def test_the_readme_example_runs_and_prints_the_answer_and_trace_path(
    openai_server: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = readme_example().replace(BASE_URL, openai_server.url)
    openai_server.script(
        tool_calls(tool_call("word_count", {"text": "the quick brown fox"}, id="wc1")),
        answer("There are 4 words."),
    )
    monkeypatch.chdir(tmp_path)  # the example writes traces to ./traces
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})

    printed = capsys.readouterr().out.strip()
    assert printed.startswith("There are 4 words. ")
    path = Path(printed.removeprefix("There are 4 words. "))
    assert path.parent == Path("traces") and path.suffix == ".jsonl"
    trace = read_trace(tmp_path / path)
    assert isinstance(trace.terminal, RunFinished)
    assert trace.terminal.output == "There are 4 words."

    first, second = openai_server.bodies
    assert first["model"] == "gpt-4o-mini"
    assert [t["function"]["name"] for t in first["tools"]] == ["word_count"]
    system = first["messages"][0]
    assert system == {
        "role": "system",
        "content": f"Use tools to answer exactly.\n\n{UNTRUSTED_NOTICE}",
    }
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "wc1",
        "content": delimit_untrusted("word_count", "4"),
    }
