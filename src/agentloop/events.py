"""Trace events: one pydantic model per kind, discriminated by ``type``.

Every event carries ``run_id``, ``step`` (the index of the model request it belongs to),
``seq`` (its position in the trace) and ``ts`` (Unix time, seconds). A run's trace ends with
exactly one terminal event: ``run_finished``, ``run_failed`` or ``run_cancelled``. After it,
annotations may be appended: ``critique``, ``feedback`` and ``score`` events.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic_core import (
    PydanticSerializationError,
    PydanticUndefined,
    to_json,
    to_jsonable_python,
)

from agentloop.messages import Message, ModelResponse, RequestAttempt, Usage
from agentloop.observations import ErrorKind


class BaseEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str
    step: int
    seq: int
    ts: float

    @classmethod
    def trusted(cls, **fields: Any) -> Self:
        """The event from fields typed code made, unvalidated: what ``model_construct`` gives
        (the same fields, defaults and field order), from a plan made once per event type.
        A run builds four events a step; ``model_construct`` looks up every field's aliases
        and default each time. ``read_trace`` validates every event it reads back."""
        return cls.from_values(cls.values(fields), set(fields))

    @classmethod
    def values(cls, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Every field's value in the event's field order: ``fields``, else the default.

        What an event of this type holds, before (or instead of) building it: a run that only
        writes a trace serializes these with ``json_line`` and builds no event at all."""
        template = _templates.get(cls)
        if template is not None and template.names >= fields.keys() >= template.required:
            return {**template.values, **fields}  # every field given or defaulted
        plan = _plans.get(cls) or _plan(cls)
        values: dict[str, Any] = {}
        for name, default, factory in plan:
            if name in fields:
                values[name] = fields[name]
            elif factory is not None:
                values[name] = factory()
            elif default is not PydanticUndefined:
                values[name] = default
        return values

    @classmethod
    def from_values(cls, values: dict[str, Any], given: set[str]) -> Self:
        """The event holding ``values`` (from ``values``; they become its own), unvalidated;
        ``given`` names the fields set explicitly, as ``model_fields_set`` reports them."""
        event = cls.__new__(cls)
        _set(event, "__dict__", values)
        _set(event, "__pydantic_fields_set__", given)
        _set(event, "__pydantic_extra__", None)
        _set(event, "__pydantic_private__", None)
        return event


def json_line(values: Mapping[str, Any] | BaseModel) -> str:
    """The JSON line ``model_dump_json`` gives of a model, or of the event holding ``values``
    (from ``BaseEvent.values``) at half its cost: events have no serializer of their own and
    their fields hold plain data and agentloop's own models, which pydantic serializes the
    same way from a dict (a test checks every event type and every trace the suite writes).

    Text that is not valid Unicode (a lone surrogate: a server's JSON escape ``\\ud800`` with
    no pair, a file read with ``errors="surrogateescape"``) cannot be written as UTF-8; such
    characters become U+FFFD in the line rather than failing the run that wrote it."""
    try:
        if isinstance(values, BaseModel):
            return values.model_dump_json()
        return to_json(values, inf_nan_mode="null").decode()
    except PydanticSerializationError:  # repaired below; anything else fails there again
        pass
    data = _valid_unicode(to_jsonable_python(values, inf_nan_mode="null"))
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _valid_unicode(data: Any) -> Any:
    """``data`` (JSON-ready values) with lone surrogates replaced by U+FFFD; a pair split in
    two characters is joined back into the one it encodes."""
    if isinstance(data, str):
        return data.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(data, dict):
        return {_valid_unicode(key): _valid_unicode(item) for key, item in data.items()}
    if isinstance(data, list):
        return [_valid_unicode(item) for item in data]
    return data


_set = object.__setattr__
_Plan: TypeAlias = tuple[tuple[str, Any, Callable[..., Any] | None], ...]
_plans: dict[type[BaseEvent], _Plan] = {}


@dataclass(frozen=True, slots=True)
class _Template:
    """The values of an event type with no default factory, in field order: its defaults,
    with a placeholder for each required field (``required``); ``names`` are all its fields.
    Fields given over it keep their place, so one merge builds an event's values."""

    values: dict[str, Any]
    required: frozenset[str]
    names: frozenset[str]


_templates: dict[type[BaseEvent], _Template] = {}


def _plan(cls: type[BaseEvent]) -> _Plan:
    """Each field of ``cls`` in order, with its default or default factory. Events have no
    aliases, private attributes or post-init hook (a test checks), so nothing else is needed."""
    plan = tuple(
        (name, field.default, field.default_factory) for name, field in cls.model_fields.items()
    )
    _plans[cls] = plan
    if all(factory is None for _, _, factory in plan):
        _templates[cls] = _Template(
            values={name: default for name, default, _ in plan},
            required=frozenset(n for n, default, _ in plan if default is PydanticUndefined),
            names=frozenset(name for name, _, _ in plan),
        )
    return plan


class ModelRequested(BaseEvent):
    """The model was asked to answer. ``messages`` holds only what was added to the
    conversation since the previous request; ``message_count`` is the full length, so what the
    model saw is the concatenation of all requests' ``messages`` so far."""

    type: Literal["model_request"] = "model_request"
    messages: list[Message]
    message_count: int


class ModelResponded(BaseEvent):
    """The model answered (raw text, raw tool-call parts, usage, latency, retries)."""

    type: Literal["model_response"] = "model_response"
    response: ModelResponse


class ToolCallRequested(BaseEvent):
    """The model asked for a tool call; ``valid`` says whether it passed validation."""

    type: Literal["tool_call"] = "tool_call"
    call_id: str
    name: str
    raw_arguments: str
    arguments: dict[str, Any] | None = None
    valid: bool
    rejection: str | None = None


class ToolResultRecorded(BaseEvent):
    """The observation a tool call produced, as the model will see it."""

    type: Literal["tool_result"] = "tool_result"
    call_id: str
    name: str
    content: str
    error: ErrorKind | None = None
    duration_ms: float = 0.0
    truncated_from: int | None = None
    exception: str | None = None
    """For an unexpected tool exception: its type, message and traceback (redacted). The model
    never sees this."""
    untrusted: bool = True
    """Tool output is data from outside the agent, never instructions."""
    approval: Literal["approved", "denied"] | None = None
    """For a tool that requires approval: whether the call was approved (and ran) or denied
    (and did not run). ``None`` for tools that need no approval."""


class StreamInterrupted(BaseEvent):
    """A streamed model response ended before it was whole: the run was cancelled, or the
    stream broke (``error_type``). What had arrived is kept; no ``model_response`` follows."""

    type: Literal["stream_interrupted"] = "stream_interrupted"
    partial_text: str
    partial_tool_calls: list[tuple[str, str]] = Field(default_factory=list)
    """(name, raw argument text so far) of each tool call begun."""
    error_type: str
    """``CancelledError``, or the error that broke the stream (``ModelStreamError``...)."""
    first_token_ms: float | None = None


class RunWarned(BaseEvent):
    """Something worth a look that did not stop the run."""

    type: Literal["warning"] = "warning"
    kind: str
    message: str


class ToolsChanged(BaseEvent):
    """A tool source (an MCP server) changed its tool list, and the run took the new one
    before the model request of ``step``: from that step on, ``tools`` (the same shape as the
    header's ``agent.tools`` entries) are the source's tools; the other tools are unchanged.
    The header (and its ``config_hash``) keep the tools the run started with; an offline
    replay switches to ``tools`` at the same step."""

    type: Literal["tools_changed"] = "tools_changed"
    source: str
    """The source's name (the MCP server's ``name``)."""
    tools: list[dict[str, Any]]
    added: list[str] = Field(default_factory=list)
    """Names offered now that were not before."""
    removed: list[str] = Field(default_factory=list)
    """Names no longer offered."""
    left_out: list[str] = Field(default_factory=list)
    """New tools not offered because another tool already has their name."""
    source_config: dict[str, Any] | None = None
    """The source's identity with every schema it serves now, as the server said it (like
    the header's ``agent.tool_sources`` entry)."""


class RunFinished(BaseEvent):
    type: Literal["run_finished"] = "run_finished"
    output: str
    usage: Usage
    steps: int
    tool_calls: int
    duration_s: float


class RunFailed(BaseEvent):
    type: Literal["run_failed"] = "run_failed"
    reason: str
    """The stop reason: max_steps, retry_budget, model_error, tool_error, ..."""
    error_type: str
    message: str
    attempts: list[RequestAttempt] = Field(default_factory=list)
    partial_output: str | None = None
    """For ``output_truncated``: what the model wrote before the token limit cut it off."""
    usage: Usage
    steps: int
    tool_calls: int
    duration_s: float


class RunCancelled(BaseEvent):
    type: Literal["run_cancelled"] = "run_cancelled"
    reason: str
    interrupted_calls: list[str] = Field(default_factory=list)
    """Tool calls that had started and have no result."""
    usage: Usage
    steps: int
    tool_calls: int
    duration_s: float


class CritiqueRecorded(BaseEvent):
    """A judge model's critique of the run, appended after it ended (``agentloop.feedback``)."""

    type: Literal["critique"] = "critique"
    judge: dict[str, Any]
    """The judge model's configuration."""
    rubric: dict[str, Any]
    prompt_hash: str
    """Hash of the judge prompt (rubric and rendering), to tell critiques made alike."""
    critique: dict[str, Any]
    """The typed critique (``agentloop.critique.Critique``) as JSON."""
    compared_with: dict[str, Any] | None = None
    """For a revision: the original run, its overall score, and which one the judge prefers."""


class FeedbackRecorded(BaseEvent):
    """A person's feedback on the run: a rating, a comment, a corrected answer, or an implicit
    signal (an edit, a regeneration, a copy, an abandoned conversation)."""

    type: Literal["feedback"] = "feedback"
    rating: Literal["up", "down"] | None = None
    comment: str | None = None
    correction: str | None = None
    """What the final answer should have been."""
    about_step: int | None = None
    """The step the feedback is about, if not the run as a whole."""
    user_id: str | None = None
    source: str = "api"
    """Who recorded it: ``api`` (an application), ``cli``, ..."""
    signal: Literal["edit", "regenerate", "copy", "abandon"] | None = None
    """Implicit feedback from an application: the user edited the answer (``correction``
    holds the edit), regenerated it, copied it, or abandoned the conversation."""


class ScoreRecorded(BaseEvent):
    """A scorer's verdict on the run (an evaluation)."""

    type: Literal["score"] = "score"
    scorer: str
    value: float
    passed: bool
    explanation: str = ""
    eval_run: str | None = None


class HookApplied(BaseEvent):
    """A hook or guardrail changed the run: ``point`` is where (``before_request``,
    ``before_tool_call``, ``after_tool_call``, ``input_guardrails``, ``output_guardrails``),
    ``action`` what it did (``edit``, ``deny``, ``rewrite``, ``retry``, ``stop``), ``detail``
    the new value or the reason (redacted like everything else)."""

    type: Literal["hook"] = "hook"
    hook: str
    point: str
    action: str
    call_id: str | None = None
    detail: Any = None


Event: TypeAlias = Annotated[
    ModelRequested
    | ModelResponded
    | ToolCallRequested
    | ToolResultRecorded
    | StreamInterrupted
    | RunWarned
    | ToolsChanged
    | HookApplied
    | RunFinished
    | RunFailed
    | RunCancelled
    | CritiqueRecorded
    | FeedbackRecorded
    | ScoreRecorded,
    Field(discriminator="type"),
]
EventAdapter: TypeAdapter[Event] = TypeAdapter(Event)
TERMINAL_TYPES = frozenset({"run_finished", "run_failed", "run_cancelled"})
ANNOTATION_TYPES = frozenset({"critique", "feedback", "score"})
"""Events appended to a trace after its run ended, about the run."""

EventListener: TypeAlias = Callable[[BaseEvent], None]
capture_listeners: ContextVar[tuple[EventListener, ...]] = ContextVar(
    "agentloop_capture_listeners", default=()
)
"""Listeners that every run started in this context also feeds (``testing.capture_events``)."""
