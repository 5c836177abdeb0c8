"""Agent files: TOML to Agent, versions (config_hash), errors naming the field, and
`agentloop run --agent FILE`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agentloop import UserError, read_trace
from agentloop.agentfile import AgentFileError, load_agent, read_agent_file
from agentloop.cli import main
from agentloop.models.local import LocalModel
from agentloop.models.openai import OpenAIModel
from agentloop.untrusted import UNTRUSTED_NOTICE
from fakes import FakeOpenAIServer, answer, text_completion
from fakes.openai_server import COMPLETIONS_PATH

REPO = Path(__file__).resolve().parents[1]
TOOLS = '''\
from agentloop import tool


@tool
def shout(text: str) -> str:
    """Shout.

    Args:
        text: What to shout.
    """
    return text.upper()
'''


@pytest.fixture(autouse=True)
def _loopback_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Models named by the files point at loopback (no key needed); tests that talk to a
    server set their own URL."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")


def write_agent(folder: Path, instructions: str = "Be brief.", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tools").mkdir(exist_ok=True)
    (folder / "tools" / "shout.py").write_text(TOOLS)
    file = folder / "agent.toml"
    file.write_text(
        "# comment\n"
        'model = "openai:fake"\n'
        f'instructions = """{instructions}"""\n'
        'tools = ["tools"]\n'
        + extra
        + "[settings]\ntemperature = 0.0\nseed = 3\n[limits]\nmax_steps = 4\n"
    )
    return file


def test_a_file_builds_its_agent(tmp_path: Path) -> None:
    agent = load_agent(write_agent(tmp_path), trace_dir=None)
    assert agent.model.name == "fake"
    assert agent.instructions == "Be brief."
    assert list(agent.tools) == ["shout"]
    assert (agent.settings.temperature, agent.settings.seed) == (0.0, 3)
    assert agent.limits.max_steps == 4
    assert agent.trace_dir is None


def test_module_references_name_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "mytools_pkg_x"
    package.mkdir()
    (package / "__init__.py").write_text(
        TOOLS + "\n\ndef whisper(text: str) -> str:\n    return text.lower()\n\n"
        "BOTH = [shout, whisper]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    file = tmp_path / "a.toml"
    refs = '["mytools_pkg_x:shout", "mytools_pkg_x:whisper"]'
    file.write_text(f'model = "openai:m"\ntools = {refs}\n')
    assert list(load_agent(file).tools) == ["shout", "whisper"]
    file.write_text('model = "openai:m"\ntools = ["mytools_pkg_x:BOTH"]\n')
    assert list(load_agent(file).tools) == ["shout", "whisper"]
    file.write_text('model = "openai:m"\ntools = ["mytools_pkg_x:nothing_here"]\n')
    with pytest.raises(AgentFileError, match="no tool, function or list of tools named"):
        load_agent(file)
    file.write_text('model = "openai:m"\ntools = ["no_such_module_x:f"]\n')
    with pytest.raises(AgentFileError, match="cannot import no_such_module_x"):
        load_agent(file)


def test_versions_follow_what_the_agent_does_not_where_the_file_is(tmp_path: Path) -> None:
    first = write_agent(tmp_path / "a")
    assert load_agent(first).config_hash == load_agent(first).config_hash  # same file twice
    moved = tmp_path / "elsewhere" / "renamed.toml"
    shutil.copytree(tmp_path / "a", moved.parent)
    (moved.parent / "agent.toml").rename(moved)
    moved.write_text("# a different comment\n\n" + moved.read_text())
    assert load_agent(moved).config_hash == load_agent(first).config_hash
    other = write_agent(tmp_path / "b", instructions="Be thorough.")
    assert other.read_text().replace("thorough", "brief") == first.read_text()
    assert load_agent(other).config_hash != load_agent(first).config_hash
    tool_file = tmp_path / "a" / "tools" / "shout.py"
    before = load_agent(first).config_hash
    tool_file.write_text(TOOLS.replace("text.upper()", "text.upper() + '!'"))
    assert load_agent(first).config_hash != before  # tool source is part of the version


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('model = "openai:m"\ntemprature = 1\n', "temprature: Extra inputs are not permitted"),
        ('instructions = "x"\n', "model: Field required"),
        ('model = "openai:m"\n[settings]\ntemprature = 1\n', "settings.temprature"),
        ('model = "openai:m"\n[limits]\nmax_steps = 0\n', "limits.max_steps"),
        ('model = "openai:m\n', "not valid TOML"),
        ('model = "openai:m"\ntools = ["missing.py"]\n', "missing.py does not exist"),
    ],
)
def test_errors_name_the_file_and_field(tmp_path: Path, content: str, message: str) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(content)
    with pytest.raises(UserError) as caught:
        load_agent(file)
    assert message in str(caught.value)
    if "does not exist" not in message:
        assert str(file) in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("temprature = 1", "takes no option 'temprature' (options: base_url, api_key"),
        ('api_key = "sk-live"', "set OPENAI_API_KEY instead"),
        ('prompt_form = "completion"', "pass native_tools=False too"),
    ],
)
def test_model_option_errors_name_the_file(tmp_path: Path, options: str, message: str) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(f'model = "openai:m"\n[model_options]\n{options}\n')
    with pytest.raises(AgentFileError) as caught:
        load_agent(file)
    assert message in str(caught.value)
    assert f"agent file {file}: model_options:" in str(caught.value)


def test_model_options_configure_the_backend_and_its_version(tmp_path: Path) -> None:
    plain = write_agent(tmp_path / "plain")
    options = "[model_options]\nbase_url = 'http://127.0.0.1:8/v1'\nnative_tools = false\n"
    chat = write_agent(tmp_path / "chat", extra=options)
    completion = write_agent(
        tmp_path / "completion", extra=options + "prompt_form = 'completion'\n"
    )
    model = load_agent(completion).model
    assert isinstance(model, OpenAIModel)
    assert (model.endpoint, model.native_tools, model.prompt_form) == (
        "http://127.0.0.1:8/v1",
        False,
        "completion",
    )
    versions = {load_agent(f).config_hash for f in (plain, chat, completion)}
    assert len(versions) == 3  # how the model is asked is part of what the agent does
    local = tmp_path / "local.toml"
    local.write_text('model = "local"\n[model_options]\nthreads = 1\ncontext_size = 2048\n')
    local_model = load_agent(local).model
    assert isinstance(local_model, LocalModel)
    assert (local_model.threads, local_model.context_size) == (1, 2048)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AgentFileError, match="cannot read agent file"):
        read_agent_file(tmp_path / "nope.toml")


def test_example_agent_files_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # built, never called
    needs_an_endpoint = {"research.toml"}  # web research is beyond the embedded model
    for file in sorted((REPO / "agents").glob("*.toml")):
        spec = read_agent_file(file)
        expected = "openai:gpt-4o-mini" if file.name in needs_an_endpoint else "local"
        assert spec.model == expected, file
        assert load_agent(file, model="openai:x").config_hash


def test_cli_run_with_an_agent_file(
    tmp_path: Path,
    openai_server: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    file = write_agent(tmp_path / "a")
    openai_server.script(answer("hi there"), answer("again"))
    traces = tmp_path / "traces"
    assert main(["run", "hello", "--agent", str(file), "--trace-dir", str(traces)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "hi there"
    version = load_agent(file).config_hash
    assert f"version {version}" in captured.err
    [trace] = traces.glob("*.jsonl")
    assert read_trace(trace).header.config_hash == version
    sent = openai_server.bodies[0]
    assert sent["messages"][0] == {"role": "system", "content": f"Be brief.\n\n{UNTRUSTED_NOTICE}"}
    assert [t["function"]["name"] for t in sent["tools"]] == ["shout"]
    # --model replaces the file's model; --max-steps overrides its limit (a new version)
    args = ["run", "x", "--agent", str(file), "--model", "openai:other", "--max-steps", "2"]
    assert main([*args, "--trace-dir", str(tmp_path / "t2")]) == 0
    assert openai_server.bodies[1]["model"] == "other"
    [second] = (tmp_path / "t2").glob("*.jsonl")
    assert read_trace(second).header.config_hash != version
    assert main(["run", "x", "--agent", str(file), "--instructions", "no"]) == 2
    assert "put tools and instructions in the agent file" in capsys.readouterr().err


def test_cli_run_with_a_base_model_behind_an_endpoint(
    tmp_path: Path, openai_server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The agent file alone says how to reach a base model: its server, and the completion
    form of the JSON action protocol."""
    options = (
        f"[model_options]\nbase_url = '{openai_server.url}'\nnative_tools = false\n"
        "prompt_form = 'completion'\n"
    )
    file = write_agent(tmp_path, extra=options)
    openai_server.script(
        text_completion(' {"tool": "shout", "arguments": {"text": "hi"}}'),
        text_completion(' {"answer": "HI"}'),
    )
    assert main(["run", "shout hi", "--agent", str(file), "--trace-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "HI"
    assert [r.path for r in openai_server.requests] == [COMPLETIONS_PATH] * 2
    assert "Observation: HI" in openai_server.bodies[1]["prompt"]
