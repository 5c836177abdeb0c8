"""Resume and live continuations: which model they rebuild, where its requests go, and how a
recorded failure or limit is got past.

A trace header never decides where credentials go: without ``--model``/``--agent`` a live
continuation rebuilds the recorded OpenAI-compatible model only when its endpoint is the one
configured here, with every option that changes behaviour (the JSON protocol, the prompt
form) restored, so the resumed agent has the recorded ``config_hash``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentloop import Agent, ModelResponse, Tool, ToolRetry, UserError, read_trace, tool
from agentloop.cli import main
from agentloop.errors import (
    AgentLoopError,
    MaxStepsExceeded,
    ModelHTTPError,
    RetryBudgetExhausted,
    ToolExecutionError,
)
from agentloop.loading import load_tools
from agentloop.models.openai import OpenAIModel
from agentloop.replay.runner import agent_from_trace, recorded_model, resume_sync
from agentloop.testing import ScriptedModel
from agentloop.tool_schemas import source_hash
from fakes import FakeOpenAIServer, answer, error, text_completion
from fakes.openai_server import CHAT_PATH, COMPLETIONS_PATH
from fakes.runs import API_KEY

pytestmark = pytest.mark.usefixtures("_close_openai_models")

TOOLS = '''
from agentloop import tool

@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b
'''
CALL = '{"tool": "add", "arguments": {"a": 2, "b": 3}}'


def tools_file(folder: Path) -> Path:
    path = folder / "calc.py"
    path.write_text(TOOLS)
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def unfinished(server: FakeOpenAIServer, tools: Path, folder: Path, **options: Any) -> Path:
    """A run against ``server`` that called ``add`` and then failed on a 400 (to resume)."""
    model = OpenAIModel("fake-model", base_url=server.url, api_key=API_KEY, **options)
    agent = Agent(model, tools=load_tools([str(tools)]), trace_dir=folder, max_steps=5)
    with pytest.raises(ModelHTTPError) as caught:
        agent.run_sync("What is 2 + 3?")
    assert caught.value.trace_path is not None
    return caught.value.trace_path


@pytest.fixture
def user_server(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The endpoint this user configured (OPENAI_BASE_URL), with their key in the env."""
    with FakeOpenAIServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
        yield server


def test_resume_never_sends_the_key_to_an_endpoint_named_only_by_the_trace(
    user_server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = tools_file(tmp_path)
    with FakeOpenAIServer() as other:
        other.script(answer(CALL), error(400, "stop here"))
        source = unfinished(other, tools, tmp_path / "t", native_tools=False)
        seen = len(other.requests)
        for command in (["resume"], ["replay", "--live-model"], ["replay", "--fork-at", "1"]):
            code, out, err = cli(
                capsys, *command, str(source), "--tools", str(tools), "--trace-dir", str(tmp_path)
            )
            assert code == 2, err
            assert err.count("\n") == 1  # one line
            assert other.url in err and "--model openai:fake-model" in err
            assert "--trust-trace" in err
        assert len(other.requests) == seen  # not one request, so no key
        assert user_server.requests == []

        # Asked explicitly, the recorded endpoint is used (and gets the key).
        other.script(answer('{"answer": "5"}'))
        code, out, err = cli(
            capsys, "resume", str(source), "--tools", str(tools), "--trust-trace",
            "--trace-dir", str(tmp_path),
        )  # fmt: skip
        assert (code, out.strip()) == (0, "5"), err
        assert other.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"
    assert user_server.requests == []


def test_resume_on_the_configured_endpoint_keeps_the_recorded_protocol_and_version(
    user_server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = tools_file(tmp_path)
    user_server.script(text_completion(" " + CALL), error(400, "stop here"))
    source = unfinished(
        user_server, tools, tmp_path / "t", native_tools=False, prompt_form="completion"
    )
    recorded = read_trace(source)
    user_server.script(text_completion(' {"answer": "2 + 3 = 5"}'))
    code, out, err = cli(
        capsys, "resume", str(source), "--tools", str(tools), "--trace-dir", str(tmp_path / "r")
    )
    assert (code, out.strip()) == (0, "2 + 3 = 5"), err
    last = user_server.requests[-1]
    assert last.path == COMPLETIONS_PATH  # the completion form, as recorded
    body = last.json()
    assert "tools" not in body and "messages" not in body
    assert body["prompt"].endswith(f"Action: {CALL}\nObservation: 5\nAction:")
    [resumed] = (tmp_path / "r").glob("*.jsonl")
    header = read_trace(resumed).header
    assert header.config_hash == recorded.header.config_hash
    assert header.agent["model"] == recorded.header.agent["model"]

    # --model naming the recorded model keeps its options; another starts from defaults.
    rebuilt = agent_from_trace(recorded, model=recorded_model(recorded), tools=[])
    assert rebuilt.model.config() == recorded.header.agent["model"]
    user_server.script(text_completion(' {"answer": "5"}'))
    code, _, err = cli(
        capsys, "resume", str(source), "--tools", str(tools), "--model", "openai:fake-model",
        "--trace-dir", str(tmp_path / "r2"),
    )  # fmt: skip
    assert code == 0, err
    assert user_server.requests[-1].path == COMPLETIONS_PATH
    user_server.script(answer("5"))
    code, _, err = cli(
        capsys, "resume", str(source), "--tools", str(tools), "--model", "openai:other",
        "--trace-dir", str(tmp_path / "r3"),
    )  # fmt: skip
    assert code == 0, err
    assert user_server.requests[-1].path == CHAT_PATH
    assert "tools" in user_server.requests[-1].json()  # native tools: the backend's default
    user_server.script(text_completion(' {"answer": "5"}'))
    code, _, err = cli(
        capsys, "resume", str(source), "--tools", str(tools), "--model", "openai:other",
        "--model-option", "native_tools=false", "--model-option", "prompt_form=completion",
        "--trace-dir", str(tmp_path / "r4"),
    )  # fmt: skip
    assert code == 0, err
    assert user_server.requests[-1].path == COMPLETIONS_PATH


def test_a_header_cannot_choose_settings_extra_or_lift_limits_unless_trusted(
    user_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    tools = tools_file(tmp_path)
    user_server.script(answer(CALL), error(400, "stop"))
    source = unfinished(user_server, tools, tmp_path / "t", native_tools=False)
    path = Path(source)
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header["agent"]["settings"]["extra"] = {"logit_bias": {"1": 100}}
    header["agent"]["limits"].update(max_steps=None, tool_timeout=None, retry_budget=10**6)
    path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    trace = read_trace(path)
    live = agent_from_trace(trace, model=recorded_model(trace), tools=[])
    assert live.settings.extra == {}
    assert live.limits.max_steps == 20 and live.limits.tool_timeout is not None
    assert live.limits.retry_budget <= 3
    trusted = agent_from_trace(trace, model=recorded_model(trace), tools=[], trust=True)
    assert trusted.settings.extra == {"logit_bias": {"1": 100}}
    assert trusted.limits.max_steps is None


def test_a_missing_local_model_file_names_what_to_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = Agent(ScriptedModel([ModelResponse.tool_call("add", {"a": 1, "b": 2})]), tools=[])
    with pytest.raises(AgentLoopError) as caught:
        agent.run_sync("x", trace_dir=tmp_path)
    source = caught.value.trace_path
    assert source is not None
    lines = Path(source).read_text().splitlines()
    header = json.loads(lines[0])
    header["agent"]["model"] = {
        "kind": "LocalModel",
        "name": "mine",
        "file": str(tmp_path / "gone" / "mine.gguf"),
        "prompt_form": "completion",
    }
    Path(source).write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    code, _, err = cli(capsys, "resume", str(source), "--trace-dir", str(tmp_path))
    assert code == 2 and "--trust-trace" in err and "local:" in err
    code, _, err = cli(capsys, "resume", str(source), "--trace-dir", str(tmp_path), "--trust-trace")
    assert code == 2
    assert "not on this machine" in err and "--model local:" in err


# -- past a recorded failure --------------------------------------------------------------


def flaky_tool(fails: list[bool], *, idempotent: bool) -> Any:
    @tool(name="fetch", idempotent=idempotent)
    def fetch(key: str) -> str:
        """Fetch a value."""
        if fails and fails.pop(0):
            raise ConnectionError("the backend is down")
        return f"value of {key}"

    return fetch


def failed_on_a_tool(tmp_path: Path) -> Path:
    script: list[ModelResponse | str] = [ModelResponse.tool_call("fetch", {"key": "k"})]
    agent = Agent(
        ScriptedModel(script),
        tools=[flaky_tool([True], idempotent=False)],
        tool_errors="raise",
        trace_dir=tmp_path / "t",
    )
    with pytest.raises(ToolExecutionError) as caught:
        agent.run_sync("get k")
    assert caught.value.trace_path is not None
    return caught.value.trace_path


def test_resume_reruns_a_failed_idempotent_call_and_finishes(tmp_path: Path) -> None:
    source = failed_on_a_tool(tmp_path)
    model = ScriptedModel(["k is: value of k"])
    fixed = flaky_tool([], idempotent=True)
    agent = Agent(model, tools=[fixed], tool_errors="raise", trace_dir=tmp_path / "r")
    result = resume_sync(source, agent)
    assert result.output == "k is: value of k"
    [call] = model.calls
    assert "\nvalue of k\n" in call.messages[-1].content  # type: ignore[union-attr]


def test_resume_shows_a_failed_call_that_cannot_be_rerun_as_its_recorded_error(
    tmp_path: Path,
) -> None:
    source = failed_on_a_tool(tmp_path)
    model = ScriptedModel(["the backend was down"])
    still = flaky_tool([], idempotent=False)
    agent = Agent(model, tools=[still], tool_errors="raise", trace_dir=tmp_path / "r")
    result = resume_sync(source, agent)
    assert result.output == "the backend was down"
    [call] = model.calls
    assert "failed with ConnectionError" in call.messages[-1].content  # type: ignore[union-attr]
    assert result.trace_path is not None
    replayed = read_trace(result.trace_path)
    [served] = [e for e in replayed.events if e.type == "tool_result"]
    assert served.error == "tool_error" and served.exception is None


def test_resume_after_max_steps_needs_a_higher_limit_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    @tool
    def retry_me() -> str:
        """Always asks to be called again."""
        raise ToolRetry("not yet")

    script: list[ModelResponse | str] = [ModelResponse.tool_call("retry_me")]
    agent = Agent(ScriptedModel(script), tools=[retry_me], max_steps=1, trace_dir=tmp_path / "t")
    with pytest.raises(MaxStepsExceeded) as caught:
        agent.run_sync("go")
    source = caught.value.trace_path
    assert source is not None
    again = Agent(ScriptedModel(["done"]), tools=[retry_me], max_steps=1, trace_dir=tmp_path)
    with pytest.raises(UserError, match=r"max_steps is 1: raise it .*--max-steps N"):
        resume_sync(source, again)
    assert resume_sync(source, again, max_steps=3).output == "done"


def test_config_hash_covers_the_tool_modules_helpers(tmp_path: Path) -> None:
    module = tmp_path / "helpers_tool.py"
    body = '''
from agentloop import tool

LIMIT = {limit}

def bounded(x: int) -> int:
    return min(x, LIMIT)

@tool
def clamp(x: int) -> int:
    """Clamp x."""
    return bounded(x)
'''
    module.write_text(body.format(limit=10))
    [before] = load_tools([str(module)])
    module.write_text(body.format(limit=20))
    [after] = load_tools([str(module)])
    assert isinstance(before, Tool) and isinstance(after, Tool)
    assert before.source_hash != after.source_hash  # only a helper's constant changed
    assert source_hash(after.function) == after.source_hash
    model = ScriptedModel([])
    assert Agent(model, tools=[before]).config_hash != Agent(model, tools=[after]).config_hash


def test_run_takes_model_options_on_the_command_line(
    user_server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user_server.script(text_completion(" " + CALL), text_completion(' {"answer": "5"}'))
    code, out, err = cli(
        capsys, "run", "What is 2 + 3?", "--model", "openai:base",
        "--model-option", "native_tools=false", "--model-option", "prompt_form=completion",
        "--tools", str(tools_file(tmp_path)), "--trace-dir", str(tmp_path),
    )  # fmt: skip
    assert (code, out.strip()) == (0, "5"), err
    assert [r.path for r in user_server.requests] == [COMPLETIONS_PATH] * 2
    code, _, err = cli(capsys, "run", "x", "--model", "openai:m", "--model-option", "oops")
    assert code == 2 and "KEY=VALUE" in err
    code, _, err = cli(capsys, "run", "x", "--model", "openai:m", "--model-option", "nope=1")
    assert code == 2 and "takes no option 'nope'" in err


def test_resume_after_the_retry_budget_needs_a_higher_budget_and_says_so(tmp_path: Path) -> None:
    @tool
    def picky() -> str:
        """Refuses."""
        raise ToolRetry("try something else")

    script: list[ModelResponse | str] = [ModelResponse.tool_call("picky")] * 2
    agent = Agent(ScriptedModel(script), tools=[picky], retry_budget=1, trace_dir=tmp_path / "t")
    with pytest.raises(RetryBudgetExhausted) as caught:
        agent.run_sync("go")
    source = caught.value.trace_path
    assert source is not None
    same = Agent(ScriptedModel(["gave up"]), tools=[picky], retry_budget=1, trace_dir=tmp_path)
    with pytest.raises(UserError, match=r"2 recoverable mistakes and retry_budget is 1"):
        resume_sync(source, same)
    more = Agent(ScriptedModel(["gave up"]), tools=[picky], retry_budget=3, trace_dir=tmp_path)
    assert resume_sync(source, more).output == "gave up"
