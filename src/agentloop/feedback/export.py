"""Fine-tuning data from traces: supervised examples (SFT) and preference pairs (DPO).

Both are written in OpenAI's fine-tuning JSONL formats. An SFT example is a finished run's
conversation (tool calls and tool results included) with the agent's tools, a person's
correction standing in for the final answer where one exists. A preference pair holds an input
conversation, a preferred and a non-preferred assistant answer; pairs come from corrections
(corrected over original), critique revisions the judge preferred, and runs of the same task
rated or scored differently. Every line is redacted, then validated against the format, before
it is written; what is skipped is counted with its reason.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentloop.errors import TraceError, first_problem
from agentloop.feedback.critique import Critique, Rubric
from agentloop.messages import AssistantMessage, Message
from agentloop.models.openai_wire import wire_message
from agentloop.redaction import Redactor, default_redactor
from agentloop.trace import Trace, read_trace

# -- the formats -------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WireFunction(_Strict):
    name: str = Field(min_length=1)
    arguments: str


class WireToolCall(_Strict):
    id: str = Field(min_length=1)
    type: Literal["function"]
    function: WireFunction


class WireMessage(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[WireToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> WireMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        if self.role != "assistant" and self.tool_calls:
            raise ValueError(f"a {self.role} message cannot have tool_calls")
        if self.role != "assistant" and self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        if self.role == "assistant" and self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs content or tool_calls")
        return self


class WireTool(_Strict):
    type: Literal["function"]
    function: dict[str, Any]


def _check_conversation(messages: list[WireMessage]) -> None:
    """Every tool message answers an earlier call, and every call is answered."""
    open_calls: set[str] = set()
    for message in messages:
        if message.role == "assistant":
            if open_calls:
                raise ValueError(f"tool calls without results: {sorted(open_calls)}")
            open_calls = {c.id for c in message.tool_calls or ()}
        elif message.role == "tool":
            if message.tool_call_id not in open_calls:
                raise ValueError(f"tool message for unknown call {message.tool_call_id!r}")
            open_calls.discard(message.tool_call_id)
    if open_calls:
        raise ValueError(f"tool calls without results: {sorted(open_calls)}")


class SFTExample(_Strict):
    """One line of OpenAI's chat fine-tuning format (with tools)."""

    messages: list[WireMessage] = Field(min_length=2)
    tools: list[WireTool] | None = None

    @model_validator(mode="after")
    def _conversation(self) -> SFTExample:
        _check_conversation(self.messages)
        last = self.messages[-1]
        if last.role != "assistant" or not last.content:
            raise ValueError("the last message must be the assistant's final answer")
        return self


class PreferenceInput(_Strict):
    messages: list[WireMessage] = Field(min_length=1)
    tools: list[WireTool] | None = None


class DPOExample(_Strict):
    """One line of OpenAI's preference (DPO) fine-tuning format."""

    input: PreferenceInput
    preferred_output: list[WireMessage] = Field(min_length=1, max_length=1)
    non_preferred_output: list[WireMessage] = Field(min_length=1, max_length=1)

    @model_validator(mode="after")
    def _outputs(self) -> DPOExample:
        _check_conversation(self.input.messages)
        for output in (self.preferred_output[0], self.non_preferred_output[0]):
            if output.role != "assistant" or not output.content or output.tool_calls:
                raise ValueError("each output must be one assistant message with text")
        if self.preferred_output[0].content == self.non_preferred_output[0].content:
            raise ValueError("the preferred and non-preferred outputs are the same")
        return self


# -- choosing and building examples ------------------------------------------------------------


@dataclass
class Export:
    """Examples ready to write, and why other traces gave none."""

    examples: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Filters:
    """Which runs SFT export keeps; ``None`` keeps all."""

    rating: Literal["up", "down"] | None = None
    min_critique: float | None = None
    """Lowest overall critique score (the latest critique), in [0, 1]."""
    min_score: float | None = None
    """Lowest mean eval score (``score`` events), in [0, 1]."""
    version: str | None = None
    """Only runs of this agent version (``config_hash``, or its start)."""

    def reason_to_skip(self, trace: Trace) -> str | None:
        if self.version and not trace.header.config_hash.startswith(self.version):
            return "other agent version"
        if self.rating is not None and latest_rating(trace) != self.rating:
            return f"not rated {self.rating}"
        if self.min_critique is not None:
            overall = critique_score(trace)
            if overall is None or overall < self.min_critique:
                return "critique score too low or missing"
        if self.min_score is not None:
            score = eval_score(trace)
            if score is None or score < self.min_score:
                return "eval score too low or missing"
        return None


def sft_export(traces: Iterable[Trace], filters: Filters = Filters()) -> Export:
    """SFT examples from finished runs that pass ``filters``. A conversation is one
    multi-turn example: its last turn among ``traces`` (which holds every earlier turn)."""
    export = Export()
    traces = list(traces)
    last_turns = _last_turns(traces)
    for trace in traces:
        reason = "the run did not finish" if trace.output is None else filters.reason_to_skip(trace)
        conversation = trace.header.conversation
        if not reason and conversation and last_turns.get(conversation.get("id")) != trace.run_id:
            reason = "an earlier turn of a conversation (its last turn holds it)"
        if reason:
            export.skipped[reason] += 1
            continue
        messages = [wire_message(m) for m in _final_conversation(trace)]
        example: dict[str, Any] = {"messages": messages}
        tools = _tools(trace)
        if tools:
            example["tools"] = tools
        export.examples.append(example)
    return export


def _last_turns(traces: list[Trace]) -> dict[Any, str]:
    """Per conversation id: the run id of its latest finished turn among ``traces``."""
    latest: dict[Any, tuple[int, str]] = {}
    for trace in traces:
        conversation = trace.header.conversation
        if conversation and trace.output is not None:
            turn = int(conversation.get("turn", 0))
            key = conversation.get("id")
            if key not in latest or turn > latest[key][0]:
                latest[key] = (turn, trace.run_id)
    return {key: run_id for key, (_, run_id) in latest.items()}


def dpo_export(traces: Iterable[Trace]) -> Export:
    """Preference pairs from corrections, preferred critique revisions, and runs of the same
    task that were rated or scored differently."""
    export = Export()
    runs = [t for t in traces if t.output is not None]
    by_id = {t.run_id: t for t in runs}
    for trace in runs:
        correction = latest_correction(trace)
        if correction is not None and correction.strip() != (trace.output or "").strip():
            conversation = trace.messages()[:-1]
            export.examples.append(
                _pair(
                    [wire_message(m) for m in conversation], _tools(trace), correction, trace.output
                )
            )
        revision = _preferred_revision(trace, by_id)
        if revision is not None:
            original, revised = revision
            export.examples.append(
                _pair(_task_messages(original), None, revised.output, original.output)
            )
    for group in _same_task(runs).values():
        pair = _ranked_pair(group)
        if pair is not None:
            better, worse = pair
            export.examples.append(_pair(_task_messages(better), None, better.output, worse.output))
    if not export.examples:
        export.skipped["no corrections, preferred revisions or differently rated runs"] += len(runs)
    return export


def write_jsonl(
    export: Export,
    out: IO[str],
    kind: Literal["sft", "dpo"],
    redact: Redactor | None = None,
    *,
    ensure_ascii: bool = False,
) -> int:
    """Redact, validate and write each example as one line; count the invalid ones in
    ``export.skipped``. Returns how many lines were written. ``ensure_ascii`` writes every
    non-ASCII character as a JSON escape (what a terminal should get)."""
    redact = redact or default_redactor()
    schema = SFTExample if kind == "sft" else DPOExample
    written = 0
    for example in export.examples:
        line = json.dumps(redact.value(example), ensure_ascii=ensure_ascii)
        try:
            schema.model_validate_json(line)
        except ValidationError as exc:
            export.skipped[f"invalid {kind} line: {first_problem(exc).message}"] += 1
            continue
        out.write(line + "\n")
        written += 1
    return written


def read_traces(paths: Iterable[str | Path], skipped: list[str] | None = None) -> Iterator[Trace]:
    """Traces from files and folders. A named file must be a trace; in a folder, every
    ``*.jsonl`` that is not one is passed over and noted in ``skipped``."""
    for path in map(Path, paths):
        if not path.is_dir():
            yield read_trace(path)
            continue
        for file in sorted(path.glob("*.jsonl")):
            try:
                yield read_trace(file)
            except TraceError as exc:
                if skipped is not None:
                    skipped.append(f"{file}: {exc}")


# -- what a trace says about itself ------------------------------------------------------------


def latest_rating(trace: Trace) -> str | None:
    ratings = [f.rating for f in trace.feedback() if f.rating]
    return ratings[-1] if ratings else None


def latest_correction(trace: Trace) -> str | None:
    corrections = [f.correction for f in trace.feedback() if f.correction is not None]
    return corrections[-1] if corrections else None


def critique_score(trace: Trace) -> float | None:
    """The overall score of the latest critique, in [0, 1]."""
    critiques = trace.critiques()
    if not critiques:
        return None
    latest = critiques[-1]
    rubric = Rubric.model_validate(latest.rubric)
    return Critique.model_validate(latest.critique).overall(rubric)


def eval_score(trace: Trace) -> float | None:
    scores = [s.value for s in trace.scores()]
    return sum(scores) / len(scores) if scores else None


def _final_conversation(trace: Trace) -> list[Message]:
    messages = trace.messages()
    correction = latest_correction(trace)
    if correction is not None:
        messages[-1] = AssistantMessage(content=correction)
    return messages


def _tools(trace: Trace) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {k: t[k] for k in ("name", "description", "parameters") if k in t},
        }
        for t in trace.header.agent.get("tools", [])
    ]


def _task_messages(trace: Trace) -> list[dict[str, Any]]:
    """The conversation as the run began: instructions, history and the task."""
    first = next((e for e in trace.events if e.type == "model_request"), None)
    messages = first.messages if first is not None else []
    return [wire_message(m) for m in messages]


def _pair(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    preferred: str | None,
    non_preferred: str | None,
) -> dict[str, Any]:
    preference_input: dict[str, Any] = {"messages": messages}
    if tools:
        preference_input["tools"] = tools
    return {
        "input": preference_input,
        "preferred_output": [{"role": "assistant", "content": preferred}],
        "non_preferred_output": [{"role": "assistant", "content": non_preferred}],
    }


def _preferred_revision(trace: Trace, by_id: dict[str, Trace]) -> tuple[Trace, Trace] | None:
    for event in reversed(trace.critiques()):
        compared = event.compared_with or {}
        if compared.get("preferred") != "revised":
            continue
        original = by_id.get(str(compared.get("run_id")))
        if original is None and compared.get("trace") and Path(compared["trace"]).is_file():
            original = read_trace(compared["trace"])
        if original is not None and original.output is not None:
            return original, trace
    return None


def _same_task(runs: list[Trace]) -> dict[str, list[Trace]]:
    groups: dict[str, list[Trace]] = defaultdict(list)
    for trace in runs:
        if trace.header.parent and trace.header.parent.get("kind") == "fork":
            continue  # forks are paired through their critique, not by task
        key = json.dumps(_task_messages(trace), sort_keys=True)
        groups[key].append(trace)
    return {k: v for k, v in groups.items() if len(v) > 1}


def _ranked_pair(group: list[Trace]) -> tuple[Trace, Trace] | None:
    """The best and worst run of a task by rating, else critique score, else eval score."""
    for signal in (
        lambda t: {"up": 1.0, "down": 0.0}.get(latest_rating(t) or ""),
        critique_score,
        eval_score,
    ):
        ranked = [(value, t) for t in group if (value := signal(t)) is not None]
        if len(ranked) < 2:
            continue
        ranked.sort(key=lambda pair: pair[0])
        (low, worse), (high, better) = ranked[0], ranked[-1]
        if high > low and better.output != worse.output:
            return better, worse
    return None
