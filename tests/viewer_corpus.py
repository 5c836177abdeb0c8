"""Traces for the viewer's tests: real runs of real agents (scripted models), a hostile corpus,
and synthetic traces at scale written with the same event models the runtime writes.

The synthetic ones are written line by line without ``TraceWriter``, so they stay out of the
replay corpus (tests/test_zz_replay_corpus.py): they record tools that do not exist.
"""

from __future__ import annotations

import json
from pathlib import Path

from agentloop import Agent, ModelResponse, replay_sync, tool
from agentloop.errors import RunError
from agentloop.evals import evaluate_sync
from agentloop.evals.specs import parse_scorer
from agentloop.events import (
    ModelRequested,
    ModelResponded,
    RunFinished,
    ToolCallRequested,
    ToolResultRecorded,
)
from agentloop.messages import Message, ToolMessage, Usage, UserMessage
from agentloop.testing import FunctionModel, ScriptedModel
from agentloop.trace import TraceHeader

LONG_RESULT = "Oslo weather report. " * 60 + "END-OF-REPORT"
HOSTILE = {
    "script": "<script>window.__pwned = 'script'; fetch('http://127.0.0.1:9/s')</script>",
    "img": '<img src="http://127.0.0.1:9/i.png" onerror="window.__pwned = \'img\'">',
    "link": '<a id="evil" href="javascript:window.__pwned=\'link\'">click me</a>',
    "css": "<style>body { background: url(http://127.0.0.1:9/c.png) } * { display: none }"
    '</style><div style="position:fixed;inset:0;background:red">x</div>',
    "break": '</pre></details>"><svg onload="window.__pwned=\'svg\'"></svg>{{ 7*7 }}',
}
HOSTILE_TEXT = " ".join(HOSTILE.values())


@tool
def weather(city: str) -> str:
    """Today's weather report for a city."""
    return f"{city}: 18 C, cloudy. " + LONG_RESULT


@tool
def lookup(term: str) -> str:
    """Look a term up (returns hostile text, as a fetched page may)."""
    return f"{term}: " + HOSTILE_TEXT


def weather_run(
    folder: Path, answer: str = "18 C and cloudy.", task: str = "Weather in Oslo?"
) -> Path:
    """A finished run: one weather call with a long result, then the answer."""
    model = ScriptedModel([ModelResponse.tool_call("weather", {"city": "Oslo"}), answer])
    agent = Agent(model, tools=[weather], instructions="Be brief.", trace_dir=folder)
    path = agent.run_sync(task).trace_path
    assert path is not None
    return path


def failed_run(folder: Path) -> Path:
    """A run stopped by its step limit while calling tools."""
    calls = [ModelResponse.tool_call("weather", {"city": f"City{i}"}) for i in range(2)]
    agent = Agent(ScriptedModel(calls), tools=[weather], max_steps=2, trace_dir=folder)
    try:
        agent.run_sync("Weather everywhere?")
    except RunError as exc:
        if exc.trace_path is None:
            raise AssertionError("a failed run must leave its trace") from exc
        return Path(exc.trace_path)
    raise AssertionError("the run should have hit its step limit")


def hostile_run(folder: Path) -> Path:
    """A run whose task, tool output and answer all carry HTML/JS/CSS injection attempts."""
    model = ScriptedModel(
        [ModelResponse.tool_call("lookup", {"term": HOSTILE["link"]}), HOSTILE_TEXT]
    )
    agent = Agent(model, tools=[lookup], trace_dir=folder)
    path = agent.run_sync("Summarize " + HOSTILE["script"]).trace_path
    assert path is not None
    return path


def fork_of(trace: Path, folder: Path) -> Path:
    """A replay of ``trace`` (its header names the parent)."""
    result = replay_sync(trace, trace_dir=folder)
    assert result.trace_path is not None
    return result.trace_path


def eval_run(run_dir: Path, right: set[str]) -> Path:
    """An eval of an agent (named after ``run_dir``) that says ``wordN`` when asked to and it
    is in ``right``, on six cases scored with ``contains``; its dataset lies beside it."""
    dataset = run_dir.parent / "cases.jsonl"
    dataset.parent.mkdir(parents=True, exist_ok=True)
    dataset.write_text(
        "".join(
            json.dumps({"id": f"c{i}", "input": f"Say word{i}", "expected": f"word{i}"}) + "\n"
            for i in range(6)
        )
    )

    def answer(messages: list[Message], call: object) -> str:
        word = str(messages[-1].content).split()[-1]
        return word if word in right else "no idea"

    agent = Agent(FunctionModel(answer), name=run_dir.name, instructions=run_dir.name)
    run = evaluate_sync(
        dataset, agent, scorers=parse_scorer("contains"), run_dir=run_dir, concurrency=1
    )
    return run.path


def synthetic_trace(
    path: Path,
    *,
    run_id: str,
    created: str,
    steps: int,
    task: str = "count the files",
    model: str = "synthetic-model",
    config_hash: str = "cafe0001",
    tool_name: str = "count",
    finished: bool = True,
) -> Path:
    """A trace of ``steps`` tool-calling steps (then an answer), as the runtime writes them."""
    header = TraceHeader(
        run_id=run_id,
        created=created,
        task=task,
        agent={"model": {"name": model}, "tools": [{"name": tool_name}]},
        config_hash=config_hash,
    )
    lines = [header.model_dump_json()]
    seq = 0

    def add(event: object) -> None:
        nonlocal seq
        lines.append(event.model_dump_json())  # type: ignore[attr-defined]
        seq += 1

    base = {"run_id": run_id, "ts": 1_700_000_000.0}
    for step in range(steps + 1):
        message = (
            UserMessage(content=task)
            if step == 0
            else ToolMessage(call_id=f"c{step - 1}", name=tool_name, content=f"{step - 1} files")
        )
        add(ModelRequested(**base, step=step, seq=seq, messages=[message], message_count=step + 1))
        if step == steps:
            if finished:
                add(
                    ModelResponded(
                        **base, step=step, seq=seq, response=ModelResponse.answer("done")
                    )
                )
                add(
                    RunFinished(
                        **base,
                        step=step,
                        seq=seq,
                        output=f"done after {steps} steps",
                        usage=Usage(input_tokens=steps, output_tokens=steps),
                        steps=steps + 1,
                        tool_calls=steps,
                        duration_s=0.5,
                    )
                )
            break
        response = ModelResponse.tool_call(tool_name, {"n": step}, call_id=f"c{step}")
        add(ModelResponded(**base, step=step, seq=seq, response=response))
        args = json.dumps({"n": step})
        add(
            ToolCallRequested(
                **base,
                step=step,
                seq=seq,
                call_id=f"c{step}",
                name=tool_name,
                raw_arguments=args,
                arguments={"n": step},
                valid=True,
            )
        )
        add(
            ToolResultRecorded(
                **base,
                step=step,
                seq=seq,
                call_id=f"c{step}",
                name=tool_name,
                content=f"{step} files",
                duration_ms=1.0,
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def many_runs(folder: Path, count: int, steps: int = 2) -> None:
    """``count`` small synthetic runs: a template trace copied with fresh ids and times."""
    template = synthetic_trace(
        folder / "template.tmp", run_id="RUNID", created="CREATED", steps=steps
    ).read_text()
    (folder / "template.tmp").unlink()
    for i in range(count):
        run_id = f"run{i:05d}"
        created = f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:{i % 60:02d}.000Z"
        text = template.replace("RUNID", run_id).replace("CREATED", created)
        if i % 2:
            text = text.replace("cafe0001", "beef0002")
        (folder / f"{run_id}.jsonl").write_text(text, encoding="utf-8")
