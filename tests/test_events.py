"""``BaseEvent.trusted``: the run's own way of building events gives what pydantic's
``model_construct`` gives, for every event type."""

from __future__ import annotations

import pytest

from agentloop.events import BaseEvent, json_line


def _event_types() -> list[type[BaseEvent]]:
    found, todo = [], list(BaseEvent.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


def test_every_event_type_is_covered() -> None:
    assert len(_event_types()) >= 14


@pytest.mark.parametrize("cls", _event_types(), ids=lambda c: c.__name__)
def test_trusted_builds_what_model_construct_builds(cls: type[BaseEvent]) -> None:
    # What trusted's plan relies on: no aliases, no private attributes, no post-init hook.
    assert not cls.__private_attributes__
    assert not cls.__pydantic_post_init__
    for field in cls.model_fields.values():
        assert field.alias is None and field.validation_alias is None
    common = {"run_id": "r", "step": 2, "seq": 7, "ts": 1.5}
    given = [{}, {name: None for name in cls.model_fields if name not in common and name != "type"}]
    for extra in given:
        fields = {**common, **extra}
        ours, theirs = cls.trusted(**fields), cls.model_construct(**fields)
        assert ours.__dict__ == theirs.__dict__
        assert list(ours.__dict__) == list(theirs.__dict__)  # the same order on disk
        assert ours.model_fields_set == theirs.model_fields_set
        assert ours == theirs
        if extra:  # every field given: the line a trace gets is the same
            assert ours.model_dump_json() == theirs.model_dump_json()


def test_a_default_factory_gives_each_event_its_own_value() -> None:
    from agentloop.events import RunFailed

    first = RunFailed.trusted(run_id="r", step=0, seq=0, ts=0.0, reason="error")
    second = RunFailed.trusted(run_id="r", step=0, seq=1, ts=0.0, reason="error")
    mutable = [n for n, f in RunFailed.model_fields.items() if f.default_factory is not None]
    assert mutable
    for name in mutable:
        assert getattr(first, name) is not getattr(second, name)


@pytest.mark.parametrize("cls", _event_types(), ids=lambda c: c.__name__)
def test_the_line_of_an_events_values_is_the_line_of_the_event(cls: type[BaseEvent]) -> None:
    """``json_line`` of an event's values is ``model_dump_json`` of the event: what a run
    writes without building the event is what it wrote when it built it. Floats that JSON
    cannot hold (NaN, infinity) become null both ways."""
    common = {"run_id": 'r\u00e9\n"x"', "step": 2, "seq": 7, "ts": float("nan")}
    given = [{}, {name: None for name in cls.model_fields if name not in common and name != "type"}]
    for extra in given:
        fields = {**common, **extra}
        assert json_line(cls.values(fields)) == cls.trusted(**fields).model_dump_json()


def test_the_line_of_values_holding_models_and_odd_floats() -> None:
    from agentloop.events import ModelRequested, ModelResponded, ToolCallRequested
    from agentloop.messages import (
        AssistantMessage,
        ModelResponse,
        ToolCallPart,
        ToolMessage,
        Usage,
    )

    call = ToolCallPart(call_id="c1", name="add", arguments='{"a": 1e400, "b": "\\u00e9"}')
    events = [
        ModelRequested.trusted(
            run_id="r",
            step=0,
            seq=0,
            ts=float("inf"),
            messages=[
                AssistantMessage(content=None, tool_calls=[call]),
                ToolMessage(call_id="c1", name="add", content="<tool_output>\u2028</tool_output>"),
            ],
            message_count=3,
        ),
        ModelResponded.trusted(
            run_id="r",
            step=0,
            seq=1,
            ts=-0.0,
            response=ModelResponse(
                text="\U0001f600", tool_calls=[call], usage=Usage(input_tokens=1, output_tokens=2)
            ),
        ),
        ToolCallRequested.trusted(
            run_id="r",
            step=0,
            seq=2,
            ts=1e-300,
            call_id="c1",
            name="add",
            raw_arguments=call.arguments,
            arguments={"a": float("-inf"), "nested": [{"k": (1, 2)}], "big": 2**80},
            valid=True,
        ),
    ]
    for event in events:
        assert json_line(type(event).values(event.__dict__)) == event.model_dump_json()
