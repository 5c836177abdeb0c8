"""Embedding agents in apps: conversations, typed output, dependencies, budgets, hooks,
tool choice and fallback models, against scripted models (the loopback server and the
embedded model are in test_embedding_wire.py)."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest
from typing_extensions import TypedDict

from agentloop import Agent, ModelResponse, ToolRetry, UserError, read_trace, replay_sync, tool
from agentloop.context import RunContext
from agentloop.conversation import Conversation
from agentloop.errors import (
    CostLimitExceeded,
    GuardrailTripped,
    HookFailed,
    ModelRateLimited,
    RetryBudgetExhausted,
    TokenLimitExceeded,
)
from agentloop.feedback import sft_export
from agentloop.hooks import Deny, Hooks, RequestEdit, Rewrite
from agentloop.messages import SystemMessage, Usage
from agentloop.models.protocol import action_schema
from agentloop.settings import ModelSettings, Price, RunLimits
from agentloop.testing import ScriptedModel
from agentloop.tools import Toolset
from agentloop.untrusted import UNTRUSTED_NOTICE


def events_of(trace: Any, kind: str) -> list[Any]:
    return [e for e in trace.events if e.type == kind]


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def used(tokens_in: int, tokens_out: int, text: str | None = None) -> ModelResponse:
    response = (
        ModelResponse.answer(text) if text else ModelResponse.tool_call("add", {"a": 1, "b": 2})
    )
    return response.model_copy(
        update={"usage": Usage(input_tokens=tokens_in, output_tokens=tokens_out)}
    )


# -- conversations ------------------------------------------------------------------------


def test_history_from_a_result_never_repeats_the_system_prompt(tmp_path: Path) -> None:
    model = ScriptedModel(
        [ModelResponse.tool_call("add", {"a": 1, "b": 2}), "3", "still 3", "yes, 3"]
    )
    agent = Agent(model, tools=[add], instructions="Be terse.", trace_dir=tmp_path)
    first = agent.run_sync("1+2?")
    second = agent.run_sync("and again?", history=first)
    sent = model.calls[-1].messages
    systems = [m for m in sent if isinstance(m, SystemMessage)]
    assert len(systems) == 1 and systems[0].content.count(UNTRUSTED_NOTICE) == 1
    assert second.new_messages()[0].content == "and again?"
    assert second.all_messages()[: len(first.all_messages())] == first.all_messages()
    third = agent.run_sync("once more?", history=second.all_messages())  # a list works too
    assert third.all_messages()[: len(second.all_messages())] == second.all_messages()
    assert sum(isinstance(m, SystemMessage) for m in model.calls[-1].messages) == 1


def test_a_conversation_links_its_turns_and_replays_and_exports_as_one(tmp_path: Path) -> None:
    model = ScriptedModel(["hello", ModelResponse.tool_call("add", {"a": 2, "b": 2}), "4", "bye"])
    chat = Conversation(Agent(model, tools=[add], trace_dir=tmp_path), "c-1")
    results = [chat.run_sync(t) for t in ("hi", "2+2?", "thanks")]
    headers = [read_trace(r.trace_path).header for r in results]  # type: ignore[arg-type]
    assert [h.conversation for h in headers] == [
        {"id": "c-1", "turn": 0, "previous_run_id": None},
        {"id": "c-1", "turn": 1, "previous_run_id": results[0].run_id},
        {"id": "c-1", "turn": 2, "previous_run_id": results[1].run_id},
    ]
    for result in results:  # each turn replays offline, alone
        replayed = replay_sync(result.trace_path, trace_dir=tmp_path / "replays")
        assert replayed.diverged is False and replayed.output == result.output
    traces = [read_trace(r.trace_path) for r in results]  # type: ignore[arg-type]
    export = sft_export(traces)
    assert len(export.examples) == 1  # the last turn holds the whole conversation
    said = [m.get("content") for m in export.examples[0]["messages"]]
    assert said[-1] == "bye" and "hi" in said and "2+2?" in said and "thanks" in said
    assert chat.usage == sum((r.usage for r in results), Usage())


def test_conversation_budgets_count_every_turn(tmp_path: Path) -> None:
    model = ScriptedModel([used(40, 10, "a"), used(40, 10, "b"), used(40, 10, "c")])
    chat = Conversation(Agent(model, trace_dir=tmp_path), limits=RunLimits(max_total_tokens=120))
    chat.run_sync("one")
    chat.run_sync("two")
    with pytest.raises(TokenLimitExceeded, match="conversation used 150 tokens") as caught:
        chat.run_sync("three")
    assert caught.value.partial is not None and caught.value.trace_path is not None
    assert read_trace(caught.value.trace_path).terminal.type == "run_failed"  # type: ignore[union-attr]


# -- typed output -------------------------------------------------------------------------


class City(pydantic.BaseModel):
    name: str
    population: int


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Movie(TypedDict):
    title: str
    year: int


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@pytest.mark.parametrize(
    ("output_type", "answer", "expected"),
    [
        (City, '{"name": "Lyon", "population": 522250}', City(name="Lyon", population=522250)),
        (Point, '{"x": 1, "y": 2}', Point(1, 2)),
        (Movie, '{"title": "Up", "year": 2009}', {"title": "Up", "year": 2009}),
        (list[int], '{"result": [1, 2, 3]}', [1, 2, 3]),
        (int, '{"result": 391}', 391),
        (int, "391", 391),
        (float, '```json\n{"result": 2.5}\n```', 2.5),
        (Literal["yes", "no"], '{"result": "no"}', "no"),
        (Color, '{"result": "blue"}', Color.BLUE),
    ],
)
def test_typed_output_of_every_kind(
    tmp_path: Path, output_type: Any, answer: str, expected: Any
) -> None:
    model = ScriptedModel([answer])
    agent = Agent(model, output_type=output_type, trace_dir=tmp_path)
    result = agent.run_sync("answer")
    assert result.output == expected and type(result.output) is type(expected)
    schema = model.calls[0].settings.json_schema
    assert schema is not None and schema["type"] == "object"
    assert "JSON Schema" in model.calls[0].messages[0].content
    trace = read_trace(result.trace_path)  # type: ignore[arg-type]
    assert trace.output == answer and trace.header.agent["output"]["schema"] == schema


def test_an_invalid_output_goes_back_to_the_model_within_the_retry_budget(tmp_path: Path) -> None:
    model = ScriptedModel(['{"name": "Lyon"}', "not json", '{"name": "Lyon", "population": 1}'])
    result = Agent(model, output_type=City, trace_dir=tmp_path).run_sync("city?")
    assert result.output == City(name="Lyon", population=1)
    told = [m.content for m in model.calls[1].messages][-1]
    assert "population" in told and "not accepted" in told
    warnings = events_of(read_trace(result.trace_path), "warning")  # type: ignore[arg-type]
    assert [w.kind for w in warnings] == ["output_invalid", "output_invalid"]
    with pytest.raises(RetryBudgetExhausted):
        Agent(ScriptedModel(["x", "y"]), output_type=int, retry_budget=1, trace_dir=None).run_sync(
            "?"
        )


def test_output_validators_run_after_parsing_and_may_ask_again(tmp_path: Path) -> None:
    def positive(value: int) -> int:
        if value <= 0:
            raise ToolRetry("the count must be positive")
        return value * 10

    model = ScriptedModel(["-1", "4"])
    agent = Agent(model, output_type=int, output_validators=[positive], trace_dir=tmp_path)
    assert agent.run_sync("count").output == 40
    assert "must be positive" in model.calls[1].messages[-1].content


def test_the_output_type_is_part_of_the_version(tmp_path: Path) -> None:
    plain = Agent(ScriptedModel([]), trace_dir=None)
    typed = Agent(ScriptedModel([]), output_type=int, trace_dir=None)
    assert plain.config_hash != typed.config_hash


def test_the_json_protocol_carries_the_output_schema_in_its_answer_branch() -> None:
    schema = {
        "type": "object",
        "properties": {"result": {"type": "integer"}},
        "required": ["result"],
    }
    actions = action_schema(Toolset([add]), answer_schema=schema)
    answer = [b for b in actions["anyOf"] if "answer" in b["properties"]]
    assert answer[0]["properties"]["answer"] == schema


# -- dependencies ---------------------------------------------------------------------------


class Database:
    def __init__(self) -> None:
        self.rows = {"lyon": 522250}


@tool
def population(ctx: RunContext[Database], city: str) -> int:
    """Look a city's population up."""
    assert ctx.run_id and ctx.step == 0
    return ctx.deps.rows[city.lower()]


@tool
async def population_async(ctx: RunContext[Database], city: str) -> int:
    """Look a city's population up."""
    return ctx.deps.rows[city.lower()] + 1


@pytest.mark.parametrize("the_tool", [population, population_async])
def test_tools_receive_the_runs_deps_which_never_reach_the_trace(
    tmp_path: Path, the_tool: Any
) -> None:
    assert list(the_tool.parameters["properties"]) == ["city"]
    model = ScriptedModel([ModelResponse.tool_call(the_tool.name, {"city": "Lyon"}), "done"])
    db = Database()
    db.rows["secret-city"] = 7
    result = Agent(model, tools=[the_tool], trace_dir=tmp_path).run_sync("pop?", deps=db)
    text = result.trace_path.read_text()  # type: ignore[union-attr]
    assert "secret-city" not in text
    trace = read_trace(result.trace_path)  # type: ignore[arg-type]
    assert trace.header.deps_type == "Database"
    assert events_of(trace, "tool_result")[0].content.startswith("52225")


def test_a_run_context_parameter_must_come_first() -> None:
    from agentloop.errors import ToolDefinitionError

    def late(city: str, ctx: RunContext[Any]) -> str:
        """x"""
        return city

    with pytest.raises(ToolDefinitionError, match="must be the first"):
        tool(late)


# -- budgets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "match"),
    [
        (RunLimits(max_input_tokens=150), "beyond max_input_tokens=150"),
        (RunLimits(max_output_tokens=15), "beyond max_output_tokens=15"),
        (RunLimits(max_total_tokens=200), "beyond max_total_tokens=200"),
    ],
)
def test_token_limits_end_the_run_with_the_partial_result(
    tmp_path: Path, limits: RunLimits, match: str
) -> None:
    model = ScriptedModel([used(100, 10), used(100, 10), used(100, 10, "done")])
    agent = Agent(model, tools=[add], limits=limits, trace_dir=tmp_path)
    with pytest.raises(TokenLimitExceeded, match=match) as caught:
        agent.run_sync("add")
    assert caught.value.partial is not None and caught.value.partial.stop_reason == "token_limit"
    assert read_trace(caught.value.trace_path).terminal.reason == "token_limit"  # type: ignore[arg-type, union-attr]


def test_a_cost_limit_prices_the_run_by_the_table(tmp_path: Path) -> None:
    prices = {"scripted": Price(input=2.0, output=8.0)}  # per million tokens
    model = ScriptedModel([used(1_000_000, 0), used(1_000_000, 0, "x")])
    agent = Agent(model, tools=[add], prices=prices, max_steps=5, trace_dir=tmp_path)
    agent = agent.replace(limits=agent.limits.merged(max_cost=3.0))
    with pytest.raises(CostLimitExceeded, match="cost 4, beyond max_cost=3"):
        agent.run_sync("add")
    ok = Agent(ScriptedModel([used(500_000, 250_000, "x")]), prices=prices, trace_dir=None)
    assert ok.run_sync("?").cost == pytest.approx(1.0 + 2.0)
    with pytest.raises(UserError, match="needs prices"):
        Agent(ScriptedModel([]), limits=RunLimits(max_cost=1.0))


# -- hooks and guardrails -------------------------------------------------------------------


def test_hooks_rewrite_deny_and_edit_and_every_change_is_recorded(tmp_path: Path) -> None:
    def double_a(ctx: RunContext[Any], call: Any) -> Rewrite | Deny | None:
        if call.arguments["a"] == 13:
            return Deny("13 is unlucky")
        return Rewrite({"a": call.arguments["a"] * 2, "b": call.arguments["b"]})

    async def strip_digits(ctx: RunContext[Any], call: Any, content: str) -> str:
        return "".join("#" if c.isdigit() else c for c in content)

    def cooler(ctx: RunContext[Any], messages: list[Any], settings: ModelSettings) -> RequestEdit:
        return RequestEdit(settings=settings.model_copy(update={"temperature": 0.0}))

    model = ScriptedModel(
        [ModelResponse.tool_calls_of([("add", {"a": 1, "b": 2}), ("add", {"a": 13, "b": 1})]), "ok"]
    )
    hooks = Hooks(
        before_request=[cooler], before_tool_call=[double_a], after_tool_call=[strip_digits]
    )
    result = Agent(model, tools=[add], hooks=hooks, trace_dir=tmp_path).run_sync("add")
    assert all(c.settings.temperature == 0.0 for c in model.calls)
    seen = [m.content for m in model.calls[1].messages if m.role == "tool"]
    assert "#" in seen[0] and "4" not in seen[0] and "13 is unlucky" in seen[1]
    trace = read_trace(result.trace_path)  # type: ignore[arg-type]
    results = sorted(r.content for r in events_of(trace, "tool_result"))
    assert results[0] == "4"  # the trace keeps what the tool said
    assert "13 is unlucky" in results[1]
    actions = [(e.point, e.action) for e in events_of(trace, "hook")]
    assert ("before_tool_call", "rewrite") in actions and ("before_tool_call", "deny") in actions
    assert ("after_tool_call", "edit") in actions and ("before_request", "edit") in actions
    assert trace.header.agent["hooks"]["before_tool_call"] == [double_a.__qualname__]


def test_guardrails_stop_or_retry(tmp_path: Path) -> None:
    def no_secrets(ctx: RunContext[Any], task: str) -> str | None:
        return "the task asks for a password" if "password" in task else None

    def short(ctx: RunContext[Any], output: str) -> None:
        if len(output) > 5:
            raise ToolRetry("answer in five characters at most")

    hooks = Hooks(input_guardrails=[no_secrets], output_guardrails=[short])
    with pytest.raises(GuardrailTripped, match="password") as caught:
        Agent(ScriptedModel([]), hooks=hooks, trace_dir=tmp_path).run_sync("the password?")
    assert read_trace(caught.value.trace_path).terminal.reason == "guardrail"  # type: ignore[arg-type, union-attr]
    model = ScriptedModel(["far too long", "short"])
    assert Agent(model, hooks=hooks, trace_dir=None).run_sync("hi").output == "short"


def test_a_hook_or_listener_that_raises_is_a_typed_error_and_the_trace_ends(tmp_path: Path) -> None:
    def broken(ctx: RunContext[Any], call: Any) -> None:
        raise RuntimeError("boom")

    model = ScriptedModel([ModelResponse.tool_call("add", {"a": 1, "b": 2})])
    agent = Agent(model, tools=[add], hooks=Hooks(before_tool_call=[broken]), trace_dir=tmp_path)
    with pytest.raises(HookFailed, match=r"before_tool_call hook .*broken raised RuntimeError"):
        agent.run_sync("add")
    [path] = tmp_path.glob("*.jsonl")
    assert read_trace(path).terminal.reason == "hook_error"  # type: ignore[union-attr]

    def listener(event: Any) -> None:
        if event.type == "tool_call":
            raise ValueError("listener bug")

    model = ScriptedModel([ModelResponse.tool_call("add", {"a": 1, "b": 2})])
    with pytest.raises(HookFailed, match="listener bug"):
        Agent(model, tools=[add], trace_dir=tmp_path / "l").run_sync("x", listener=listener)

    def on_end(event: Any) -> None:
        if event.type == "run_finished":
            raise ValueError("too late to matter")

    finished = Agent(ScriptedModel(["fine"]), trace_dir=tmp_path / "e").run_sync(
        "x", listener=on_end
    )
    assert (
        finished.output == "fine"
        and read_trace(finished.trace_path).terminal.type == "run_finished"
    )  # type: ignore[arg-type, union-attr]


@pytest.mark.parametrize(
    "point",
    ["before_request", "input_guardrails", "before_tool_call", "after_tool_call", "listener"],
)
def test_a_run_stopped_by_a_raising_hook_replays_to_the_same_stop(
    point: str, tmp_path: Path
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("boom")

    def listener(event: Any) -> None:
        if event.type == "tool_result":
            raise RuntimeError("boom")

    model = ScriptedModel([ModelResponse.tool_call("add", {"a": 1, "b": 2}), "3"])
    hooks = Hooks() if point == "listener" else Hooks(**{point: [broken]})
    agent = Agent(model, tools=[add], hooks=hooks, trace_dir=tmp_path)
    with pytest.raises(HookFailed, match="boom") as caught:
        agent.run_sync("1+2?", listener=listener if point == "listener" else None)
    recorded = read_trace(caught.value.trace_path)  # type: ignore[arg-type]
    replayed = replay_sync(recorded, trace_dir=tmp_path / "replays")
    assert replayed.diverged is False and replayed.stop_reason == "hook_error"
    assert replayed.error == recorded.terminal.message  # type: ignore[union-attr]
    again = read_trace(replayed.trace_path)  # type: ignore[arg-type]
    assert [e.type for e in again.events] == [e.type for e in recorded.events]


# -- model choice -------------------------------------------------------------------------


def test_tool_choice_narrows_the_json_protocols_actions() -> None:
    tools = Toolset([add])
    required = action_schema(tools, tool_choice="required")
    assert all("tool" in b["properties"] for b in required["anyOf"])
    none = action_schema(tools, tool_choice="none")
    assert all("answer" in b["properties"] for b in none["anyOf"])
    named = action_schema(tools, tool_choice="add")
    assert [b["properties"]["tool"]["const"] for b in named["anyOf"]] == ["add"]


def test_fallback_models_take_a_rate_limited_request(tmp_path: Path) -> None:
    limited = ScriptedModel([ModelRateLimited("slow down", status=429)], name="primary")
    backup = ScriptedModel(["from the backup"], name="backup")
    agent = Agent(limited, fallback_models=[backup], trace_dir=tmp_path)
    result = agent.run_sync("hi")
    assert result.output == "from the backup"
    [warning] = events_of(read_trace(result.trace_path), "warning")  # type: ignore[arg-type]
    assert warning.kind == "model_fallback" and "backup" in warning.message
    assert agent.config()["fallback_models"][0]["name"] == "backup"


def test_other_model_errors_do_not_fall_back() -> None:
    from agentloop.errors import ModelAuthError

    agent = Agent(
        ScriptedModel([ModelAuthError("bad key", status=401)]),
        fallback_models=[ScriptedModel(["never"])],
        trace_dir=None,
    )
    with pytest.raises(ModelAuthError):
        agent.run_sync("hi")


def test_agentloop_chat_holds_a_conversation_in_the_terminal(
    tmp_path: Path, openai_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import io

    from agentloop.cli import main
    from fakes.openai_server import answer

    openai_server.script(answer("Hello!"), answer("Lyon."))
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setattr("sys.stdin", io.StringIO("hi\nwhich city?\n/exit\n"))
    code = main(
        ["chat", "--model", "openai:m", "--trace-dir", str(tmp_path), "--conversation-id", "t1"]
    )
    assert code == 0
    assert capsys.readouterr().out.splitlines() == ["Hello!", "Lyon."]
    second = openai_server.bodies[1]["messages"]
    assert [m["content"] for m in second if m["role"] == "user"] == ["hi", "which city?"]
    turns = sorted(read_trace(p).header.conversation["turn"] for p in tmp_path.glob("*.jsonl"))  # type: ignore[index]
    assert turns == [0, 1]


def test_hooked_and_typed_runs_replay_offline_without_divergence(tmp_path: Path) -> None:
    def halve(ctx: RunContext[Any], call: Any) -> Deny | Rewrite:
        if call.arguments["a"] == 13:
            return Deny("13 is unlucky")
        return Rewrite({"a": call.arguments["a"] // 2, "b": call.arguments["b"]})

    def hide(ctx: RunContext[Any], call: Any, content: str) -> str:
        return "[hidden]"

    def at_most_99(ctx: RunContext[Any], output: int) -> None:
        if output > 99:
            raise ToolRetry("keep it under 100")

    calls = ModelResponse.tool_calls_of([("add", {"a": 8, "b": 1}), ("add", {"a": 13, "b": 1})])
    model = ScriptedModel([calls, '{"result": 500}', '{"result": 5}'])
    hooks = Hooks(before_tool_call=[halve], after_tool_call=[hide], output_guardrails=[at_most_99])
    agent = Agent(model, tools=[add], hooks=hooks, output_type=int, trace_dir=tmp_path)
    result = agent.run_sync("add")
    assert result.output == 5
    replayed = replay_sync(result.trace_path, trace_dir=tmp_path / "replays")
    assert replayed.diverged is False, replayed.report()
    assert replayed.output == '{"result": 5}'


def test_a_run_with_a_cost_budget_replays_offline(tmp_path: Path) -> None:
    prices = {"scripted": Price(input=2.0, output=8.0)}
    agent = Agent(
        ScriptedModel(["fine"]), prices=prices, limits=RunLimits(max_cost=5.0), trace_dir=tmp_path
    )
    result = agent.run_sync("?")
    assert read_trace(result.trace_path).header.agent["prices"]["scripted"]["input"] == 2.0  # type: ignore[arg-type]
    replayed = replay_sync(result.trace_path, trace_dir=tmp_path / "replays")
    assert replayed.diverged is False and replayed.output == "fine"
