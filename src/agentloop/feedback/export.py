"""Fine-tuning data from traces: supervised examples (SFT) and preference pairs that keep the
trajectory.

An SFT example is a finished run's conversation (tool calls and tool results included) with
the agent's tools, a person's correction (or edit) standing in for the final answer where one
exists. A preference pair is the shared prefix of two runs up to the step where they part,
then each side's full continuation (tool calls, tool results, final answer). Pairs come from:

- corrections and edits: the run's conversation up to its final answer, the correction over
  the original answer;
- critique revisions the judge preferred: the original run up to the fork step, then the
  revised branch over the original's own continuation;
- runs of the same task that were rated (or regenerated, copied), critiqued or scored
  differently: their common conversation, then the better run's continuation over the worse.

Replays, forks and resumes are copies of other runs: they are left out unless
``include_replays`` (a revised branch still counts, through its pair). ``exclude_tasks`` leaves
out runs whose task is in an eval set, so training data and eval cases never overlap. Every
line is redacted, converted to the chosen format (``formats``), then validated before it is
written; what is skipped is counted with its reason.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import ValidationError

from agentloop.errors import TraceError, first_problem
from agentloop.events import ModelRequested
from agentloop.feedback.formats import SCHEMAS, Format, NotExpressible, pair_line, sft_line
from agentloop.feedback.signals import (
    critique_score,
    derived_from,
    eval_score,
    latest_correction,
    latest_rating,
    normalize_task,
    preference,
)
from agentloop.models.openai_wire import wire_message
from agentloop.redaction import Redactor, default_redactor
from agentloop.trace import Trace, read_trace

Kind = Literal["sft", "dpo"]


@dataclass
class Export:
    """Examples ready to write, and why other traces gave none. An SFT example holds
    ``messages`` (and ``tools``); a pair holds ``prompt``, ``chosen``, ``rejected`` (wire
    message lists) and ``tools``."""

    examples: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Filters:
    """Which runs export keeps; ``None`` keeps all. Every filter but ``include_replays`` and
    ``exclude_tasks`` applies to SFT only."""

    rating: Literal["up", "down"] | None = None
    min_critique: float | None = None
    """Lowest overall critique score (the latest critique), in [0, 1]."""
    min_score: float | None = None
    """Lowest mean eval score (``score`` events), in [0, 1]."""
    version: str | None = None
    """Only runs of this agent version (``config_hash``, or its start)."""
    include_replays: bool = False
    """Keep replays, forks and resumes (left out by default: they copy other runs)."""
    exclude_tasks: Collection[str] = ()
    """Tasks (as ``normalize_task`` gives them) to leave out: an eval set's test split."""

    def source_reason(self, trace: Trace) -> str | None:
        """Why the run is not a source of training data at all, if it is not."""
        kind = derived_from(trace)
        if kind and not self.include_replays:
            return f"a {kind} of another run (--include-replays keeps it)"
        if self.exclude_tasks and normalize_task(trace.header.task) in self.exclude_tasks:
            return "its task is in the excluded eval cases"
        return None

    def reason_to_skip(self, trace: Trace) -> str | None:
        if (reason := self.source_reason(trace)) is not None:
            return reason
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
        messages = wire_conversation(trace)
        correction = latest_correction(trace)
        if correction is not None:
            messages[-1] = {"role": "assistant", "content": correction}
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


def dpo_export(traces: Iterable[Trace], filters: Filters = Filters()) -> Export:
    """Preference pairs, each with its whole trajectory, from corrections, preferred critique
    revisions, and runs of the same task that were rated or scored differently."""
    export = Export()
    finished = [t for t in traces if t.output is not None]
    by_id = {t.run_id: t for t in finished}
    sources: list[Trace] = []
    for trace in finished:
        revision = _preferred_revision(trace, by_id)
        if revision is not None:
            original, revised = revision
            reason = Filters(exclude_tasks=filters.exclude_tasks).source_reason(original)
            try:
                if reason is None:
                    export.examples.append(_fork_pair(original, revised))
            except ValueError as exc:  # the fork step is not a step of the original
                reason = f"a revision that does not match its original: {exc}"
            if reason:
                export.skipped[reason] += 1
            continue
        reason = filters.source_reason(trace)
        if reason:
            export.skipped[reason] += 1
            continue
        sources.append(trace)
        correction = latest_correction(trace)
        if correction is not None and correction.strip() != (trace.output or "").strip():
            messages = wire_conversation(trace)
            export.examples.append(
                _pair_dict(
                    messages[:-1],
                    [{"role": "assistant", "content": correction}],
                    messages[-1:],
                    _tools(trace),
                )
            )
    for group in _same_task(sources).values():
        pair = _ranked_pair(group)
        if pair is not None:
            better, worse = pair
            export.examples.append(_diverging_pair(better, worse))
    if not export.examples and sources:
        export.skipped["no corrections, preferred revisions or differently rated runs"] += len(
            sources
        )
    return export


def write_jsonl(
    export: Export,
    out: IO[str],
    kind: Kind,
    redact: Redactor | None = None,
    *,
    fmt: Format = "openai",
    ensure_ascii: bool = False,
) -> int:
    """Convert each example to ``fmt``, redact it, validate it and write it as one line; count
    the ones that cannot be written in ``export.skipped``. Returns how many were written.
    ``ensure_ascii`` writes every non-ASCII character as a JSON escape (what a terminal
    should get)."""
    redact = redact or default_redactor()
    schema = SCHEMAS[(fmt, kind)]
    written = 0
    for example in export.examples:
        try:
            line = sft_line(example, fmt) if kind == "sft" else pair_line(example, fmt)
        except NotExpressible as exc:
            export.skipped[str(exc)] += 1
            continue
        text = json.dumps(redact.value(line), ensure_ascii=ensure_ascii)
        try:
            schema.model_validate_json(text)
        except ValidationError as exc:
            export.skipped[f"invalid {fmt} {kind} line: {first_problem(exc).message}"] += 1
            continue
        out.write(text + "\n")
        written += 1
    return written


def read_traces(paths: Iterable[str | Path], skipped: list[str] | None = None) -> Iterator[Trace]:
    """Traces from files and folders (searched recursively, so an eval run directory works).
    A named file must be a trace; in a folder, every ``*.jsonl`` that is not one is passed
    over and noted in ``skipped``. A file named twice (a folder and its subfolder) is read
    once."""
    seen: set[Path] = set()
    for path in map(Path, paths):
        files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
        for file in files:
            if file.resolve() in seen:
                continue
            seen.add(file.resolve())
            if not path.is_dir():
                yield read_trace(file)
                continue
            try:
                yield read_trace(file)
            except TraceError as exc:
                if skipped is not None:
                    skipped.append(f"{file}: {exc}")


def example_task(line: dict[str, Any]) -> str | None:
    """The task of a written example (its first user message), in any format."""
    messages = line.get("messages") or line.get("prompt") or line.get("input", {}).get("messages")
    for message in messages or ():
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else None
    return None


# -- building pairs ----------------------------------------------------------------------------


def wire_conversation(trace: Trace) -> list[dict[str, Any]]:
    """The run's whole conversation as OpenAI wire messages."""
    return [wire_message(m) for m in trace.messages()]


def _tools(trace: Trace) -> list[dict[str, Any]]:
    """Every tool the run offered (those an MCP server added mid-run included), as OpenAI
    ``tools`` entries."""
    return [
        {
            "type": "function",
            "function": {k: t[k] for k in ("name", "description", "parameters") if k in t},
        }
        for t in trace.tools()
    ]


def _pair_dict(
    prompt: list[dict[str, Any]],
    chosen: list[dict[str, Any]],
    rejected: list[dict[str, Any]],
    tools: list[dict[str, Any]],
) -> dict[str, Any]:
    pair: dict[str, Any] = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    if tools:
        pair["tools"] = tools
    return pair


def _messages_before(trace: Trace, step: int) -> int:
    """How many messages the conversation held when the model was asked at ``step``."""
    for event in trace.events:
        if isinstance(event, ModelRequested) and event.step == step:
            return event.message_count
    raise ValueError(f"run {trace.run_id} has no step {step}")


def _fork_pair(original: Trace, revised: Trace) -> dict[str, Any]:
    """The original up to the fork step, then the revised branch over the original's own
    continuation (the revised branch's instructions carry the critique, so the shared prefix
    is taken from the original, as the agent will see it)."""
    step = int((revised.header.parent or {}).get("step") or 0)
    before, after = wire_conversation(original), wire_conversation(revised)
    cut_original = _messages_before(original, step)
    cut_revised = _messages_before(revised, step)
    return _pair_dict(
        before[:cut_original], after[cut_revised:], before[cut_original:], _tools(original)
    )


def _diverging_pair(better: Trace, worse: Trace) -> dict[str, Any]:
    """The two runs' common conversation (up to the first assistant turn where they differ),
    then each one's continuation."""
    a, b = wire_conversation(better), wire_conversation(worse)
    cut = 0
    while cut < min(len(a), len(b)) and _same(a[cut], b[cut]):
        cut += 1
    while cut > 0 and not (a[cut]["role"] == "assistant" and b[cut]["role"] == "assistant"):
        cut -= 1
    return _pair_dict(a[:cut], a[cut:], b[cut:], _tools(better))


def _same(x: dict[str, Any], y: dict[str, Any]) -> bool:
    """Two wire messages say the same, whatever ids a server minted for their tool calls."""

    def key(m: dict[str, Any]) -> Any:
        calls = [
            (c["function"]["name"], c["function"]["arguments"]) for c in m.get("tool_calls") or ()
        ]
        return (m["role"], m.get("content"), calls)

    return bool(key(x) == key(y))


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
        first = next((e for e in trace.events if isinstance(e, ModelRequested)), None)
        task = [wire_message(m) for m in first.messages] if first is not None else []
        groups[json.dumps(task, sort_keys=True)].append(trace)
    return {k: v for k, v in groups.items() if len(v) > 1}


def _ranked_pair(group: list[Trace]) -> tuple[Trace, Trace] | None:
    """The best and worst run of a task by what people said (a rating, else a regeneration,
    abandonment or copy), else critique score, else eval score. A run rated down or
    regenerated ranks below the unrated runs of its task (one of them is the regeneration)."""
    disliked = any(preference(t) == 0.0 for t in group)

    def liked(trace: Trace) -> float | None:
        value = preference(trace)
        return 0.5 if value is None and disliked else value

    for signal in (liked, critique_score, eval_score):
        ranked = [(value, t) for t in group if (value := signal(t)) is not None]
        if len(ranked) < 2:
            continue
        ranked.sort(key=lambda pair: pair[0])
        (low, worse), (high, better) = ranked[0], ranked[-1]
        if high > low and better.output != worse.output:
            return better, worse
    return None
