"""What the benchmark measures: the same K-step tool loop done by agentloop and by raw clients.

Each workload runs in its own process (``python bench/workloads.py NAME ...``) and prints one
JSON line, so CPU time and peak memory belong to that client alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
]
Run = Callable[[int], Awaitable[None]]


def _add(arguments: str) -> str:
    args = json.loads(arguments)
    return str(args["a"] + args["b"])


async def httpx_runner(url: str, connections: int = 20) -> Run:
    import httpx2

    limits = httpx2.Limits(
        max_connections=max(connections, 100), max_keepalive_connections=connections
    )
    client = httpx2.AsyncClient(base_url=url, headers={"Authorization": "Bearer x"}, limits=limits)

    async def step(messages: list[dict[str, Any]], k: int) -> dict[str, Any]:
        body = {"model": f"k{k}", "messages": messages, "tools": TOOLS}
        reply = (await client.post("/chat/completions", json=body)).json()
        message: dict[str, Any] = reply["choices"][0]["message"]
        return message

    return _raw_loop(step)


def _raw_loop(step: Callable[[list[dict[str, Any]], int], Awaitable[dict[str, Any]]]) -> Run:
    """The raw tool loop around one request ``step``: keep the messages, call ``add`` inline."""

    async def run(k: int) -> None:
        messages: list[dict[str, Any]] = [{"role": "user", "content": "add numbers"}]
        while True:
            message = await step(messages, k)
            if not message.get("tool_calls"):
                return
            messages.append(message)
            for call in message["tool_calls"]:
                content = _add(call["function"]["arguments"])
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})

    return run


async def httpx_streamed_runner(url: str) -> Run:
    """The raw streamed loop: httpx2, SSE lines, json.loads per event, tool calls assembled
    by index (id, name, argument pieces), then the same tool step as ``httpx``."""
    import httpx2

    client = httpx2.AsyncClient(base_url=url, headers={"Authorization": "Bearer x"})

    async def step(messages: list[dict[str, Any]], k: int) -> dict[str, Any]:
        body = {"model": f"k{k}", "messages": messages, "tools": TOOLS, "stream": True}
        calls: dict[int, dict[str, Any]] = {}
        text: list[str] = []
        async with client.stream("POST", "/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    break
                chunk = json.loads(line[6:])
                for choice in chunk["choices"]:
                    delta = choice["delta"]
                    if delta.get("content"):
                        text.append(delta["content"])
                    for piece in delta.get("tool_calls") or ():
                        empty = {"name": "", "arguments": ""}
                        call = calls.setdefault(
                            piece["index"], {"id": "", "type": "function", "function": empty}
                        )
                        call["id"] = piece.get("id") or call["id"]
                        function = piece.get("function") or {}
                        call["function"]["name"] += function.get("name") or ""
                        call["function"]["arguments"] += function.get("arguments") or ""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
        if calls:
            message["tool_calls"] = [calls[i] for i in sorted(calls)]
        return message

    return _raw_loop(step)


async def openai_runner(url: str) -> Run:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)

    async def run(k: int) -> None:
        messages: list[Any] = [{"role": "user", "content": "add numbers"}]
        while True:
            reply = await client.chat.completions.create(
                model=f"k{k}",
                messages=messages,
                tools=TOOLS,  # type: ignore[arg-type]
            )
            message = reply.choices[0].message
            if not message.tool_calls:
                return
            messages.append(message.model_dump(exclude_none=True))
            for call in message.tool_calls:
                content = _add(call.function.arguments)  # type: ignore[union-attr]
                messages.append({"role": "tool", "tool_call_id": call.id, "content": content})

    return run


def _agentloop_runner(
    trace: bool, otel: bool = False, streamed: bool = False, async_tool: bool = False
) -> Callable[[str], Awaitable[Run]]:
    async def make(url: str) -> Run:
        from agentloop import Agent, tool
        from agentloop.models import OpenAIModel

        @tool
        def add(a: int, b: int) -> int:
            """Add two integers."""
            return a + b

        if async_tool:  # runs on the event loop, as the raw loops run theirs

            @tool
            async def add(a: int, b: int) -> int:  # type: ignore[no-redef]
                """Add two integers."""
                return a + b

        trace_dir = Path(tempfile.mkdtemp(prefix="agentloop-bench-")) if trace else None
        agents: dict[int, Agent] = {}
        provider = _otel_provider(url) if otel else None

        async def run(k: int) -> None:
            if k not in agents:
                model = OpenAIModel(f"k{k}", base_url=url, api_key="x")
                agents[k] = Agent(
                    model, tools=[add], trace_dir=trace_dir, max_steps=None, otel=provider or False
                )
            if not streamed:
                await agents[k].run("add numbers")
                return
            async with agents[k].stream("add numbers") as watched:
                async for _ in watched:
                    pass

        if provider is not None:
            run.finish = provider.force_flush  # type: ignore[attr-defined]
        return run

    return make


def _otel_provider(url: str) -> Any:
    """What a user gets from live export: a batch span processor sending OTLP/HTTP, here to the
    bench server's /v1/traces."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from agentloop.otel import make_provider

    endpoint = url.removesuffix("/v1") + "/v1/traces"
    return make_provider(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))


RUNNERS: dict[str, Callable[[str], Awaitable[Run]]] = {
    "httpx": httpx_runner,
    "openai": openai_runner,
    "agentloop": _agentloop_runner(trace=True),
    "agentloop-notrace": _agentloop_runner(trace=False),
    "agentloop-async-tool": _agentloop_runner(trace=True, async_tool=True),
    "agentloop-otel": _agentloop_runner(trace=True, otel=True),
    "httpx-streamed": httpx_streamed_runner,
    "agentloop-streamed": _agentloop_runner(trace=True, streamed=True),
}


async def per_step(name: str, url: str, k: int, runs: int) -> dict[str, float]:
    run = await RUNNERS[name](url)
    await run(k)  # warm up: connections, imports, caches
    finish = getattr(run, "finish", None)
    if finish is not None:  # the warm-up's spans are sent before the clock starts
        finish()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(runs):
        await run(k)
    if finish is not None:  # spans still buffered are part of the cost
        finish()
    steps = runs * (k + 1)
    return {
        "wall_ms": (time.perf_counter() - wall) * 1000 / steps,
        "cpu_ms": (time.process_time() - cpu) * 1000 / steps,
    }


FLUSH_EVERY = 20
"""In ``interleaved``, a client with buffered work (live OpenTelemetry export) sends it every
this many of its runs, inside its timing: 20 runs of K=10 make 420 spans, under a batch span
processor's batch of 512, so the processor's own thread seldom sends during another client."""


async def interleaved(
    names: list[str], url: str, k: int, runs: int, longer: list[str] | None = None, k2: int = 0
) -> dict[str, dict[str, float]]:
    """Per-step wall and CPU time of several clients in one process, a run of each in turn
    (A B C A B C ...): drift in the machine's speed, and the luck of the process, fall on all
    of them alike, so their ratios and differences are steadier than between processes.

    ``longer`` clients also run conversations of ``k2`` steps, as clients of their own
    (``name@k2``), every (k2+1)/(k+1)-th round so that each side gets about as many steps:
    flatness with the conversation's length, measured side by side too."""
    made = {name: await RUNNERS[name](url) for name in names}
    plan = [(name, name, k, 1) for name in names]
    every = max(1, round((k2 + 1) / (k + 1)))
    plan += [(f"{name}@{k2}", name, k2, every) for name in longer or ()]
    for _, name, size, _ in plan:
        await made[name](size)  # warm up: connections, imports, caches
        finish = getattr(made[name], "finish", None)
        if finish is not None:
            finish()
    totals = {key: [0.0, 0.0, 0] for key, *_ in plan}
    for i in range(1, runs + 1):
        for key, name, size, period in plan:
            if i % period:
                continue
            run = made[name]
            wall, cpu = time.perf_counter(), time.process_time()
            await run(size)
            finish = getattr(run, "finish", None)
            if finish is not None and (i % FLUSH_EVERY == 0 or i == runs):
                finish()  # its spans are sent in its own time, not during another client's
            total = totals[key]
            total[0] += time.perf_counter() - wall
            total[1] += time.process_time() - cpu
            total[2] += size + 1
    return {
        key: {"wall_ms": wall * 1000 / steps, "cpu_ms": cpu * 1000 / steps}
        for key, (wall, cpu, steps) in totals.items()
    }


async def throughput(name: str, url: str, k: int, concurrent: int) -> dict[str, float]:
    run = await RUNNERS[name](url)
    await run(k)
    started = time.perf_counter()
    await asyncio.gather(*(run(k) for _ in range(concurrent)))
    elapsed = time.perf_counter() - started
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"runs_per_s": concurrent / elapsed, "peak_rss_mib": rss_mib}


StreamRun = Callable[[int], Awaitable[float]]
"""Streams an answer of N tokens; returns the seconds until its first text delta."""


async def httpx_sse_runner(url: str) -> StreamRun:
    """The raw baseline: httpx2, a line loop, json.loads per event, the text collected."""
    import httpx2

    client = httpx2.AsyncClient(base_url=url, headers={"Authorization": "Bearer x"})
    messages = [{"role": "user", "content": "say something"}]

    async def run(tokens: int) -> float:
        body = {"model": f"t{tokens}", "messages": messages, "stream": True}
        started, first, text = time.perf_counter(), 0.0, []
        async with client.stream("POST", "/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk["choices"]:
                    content = chunk["choices"][0]["delta"].get("content")
                    if content:
                        if not first:
                            first = time.perf_counter() - started
                        text.append(content)
        assert len(text) == tokens
        return first

    return run


async def agentloop_stream_runner(url: str) -> StreamRun:
    """agentloop: ``OpenAIModel.request_stream`` (decode, assemble, deltas, the response)."""
    from agentloop import ModelSettings
    from agentloop.deltas import TextDelta
    from agentloop.messages import UserMessage
    from agentloop.models import OpenAIModel
    from agentloop.tools import Toolset

    models: dict[int, Any] = {}
    messages = [UserMessage(content="say something")]
    tools, settings = Toolset(), ModelSettings()

    async def run(tokens: int) -> float:
        if tokens not in models:
            models[tokens] = OpenAIModel(f"t{tokens}", base_url=url, api_key="x")
        started, first, pieces = time.perf_counter(), 0.0, 0
        async for item in models[tokens].request_stream(messages, tools, settings):
            if isinstance(item, TextDelta):
                if not first:
                    first = time.perf_counter() - started
                pieces += 1
        assert pieces == tokens
        return first

    return run


STREAM_RUNNERS: dict[str, Callable[[str], Awaitable[StreamRun]]] = {
    "httpx-sse": httpx_sse_runner,
    "agentloop-stream": agentloop_stream_runner,
}


async def stream(name: str, url: str, tokens: int, runs: int) -> dict[str, float]:
    """Per-token wall time of streamed answers, and the median time to the first delta."""
    run = await STREAM_RUNNERS[name](url)
    await run(tokens)  # warm up
    firsts: list[float] = []
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(runs):
        firsts.append(await run(tokens))
    count = runs * tokens
    firsts.sort()
    return {
        "token_us": (time.perf_counter() - wall) * 1e6 / count,
        "cpu_token_us": (time.process_time() - cpu) * 1e6 / count,
        "first_ms": firsts[len(firsts) // 2] * 1000,
    }


# -- evals: a dataset of cases, each a K-step tool loop, many at once --------------------------

TOOLS_FILE = '''
from agentloop import tool

@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b
'''


def eval_files(url: str, k: int, cases: int) -> tuple[Path, Path]:
    """An agent file (the bench model, the ``add`` tool) and a dataset of ``cases`` cases, in a
    new temporary folder: what ``agentloop eval`` and the Ray backend take."""
    folder = Path(tempfile.mkdtemp(prefix="agentloop-bench-eval-"))
    (folder / "tools.py").write_text(TOOLS_FILE)
    (folder / "agent.toml").write_text(
        f'model = "openai:k{k}"\ntools = ["tools.py"]\n'
        f'[model_options]\nbase_url = "{url}"\n[limits]\nmax_steps = {k + 2}\n'
    )
    case = {"input": "add numbers", "expected": "done"}
    lines = [json.dumps({"id": f"c{i}", **case}) for i in range(cases)]
    (folder / "cases.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "agent.toml", folder / "cases.jsonl"


async def raw_eval(url: str, k: int, cases: int, concurrent: int) -> None:
    """The floor: the same cases as a bare asyncio + httpx2 loop (no traces, no scoring), with
    as many pooled connections as cases at once."""
    run = await httpx_runner(url, connections=concurrent)
    gate = asyncio.Semaphore(concurrent)

    async def one() -> None:
        async with gate:
            await run(k)

    await asyncio.gather(*(one() for _ in range(cases)))


async def eval_mode(
    name: str, url: str, k: int, cases: int, concurrent: int, workers: int
) -> dict[str, float]:
    """Cases per second through the eval runner (``agentloop``, or ``ray`` on ``workers``
    workers of a local Ray cluster) or the raw loop, and the peak memory of this process (the
    driver)."""
    import httpx2  # noqa: F401  (imports happen before the clock starts, for both)

    import agentloop.models.openai  # noqa: F401
    from agentloop.evals import evaluate

    agent, dataset = eval_files(url, k, cases)
    started, cpu = time.perf_counter(), time.process_time()
    if name == "raw":
        await raw_eval(url, k, cases, concurrent)
    else:
        run = await evaluate(
            dataset,
            agent,
            scorers=_scorers(),
            run_dir=agent.parent / "run",
            concurrency=concurrent,
            **({"backend": "ray", "workers": workers} if name == "ray" else {}),
        )
        failed = [r.case_id for r in run.records if not r.passed]
        if len(run.records) != cases or failed:
            raise SystemExit(f"{len(run.records)} of {cases} cases ran; failed: {failed[:5]}")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "cases_per_s": cases / elapsed,
        "cpu_ms_per_case": cpu * 1000 / cases,
        "peak_rss_mib": rss_mib,
    }


def _scorers() -> list[Any]:
    from agentloop.evals.specs import parse_scorer

    return parse_scorer("exact")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["per_step", "throughput", "eval", "stream", "interleaved"])
    parser.add_argument("name", choices=[*sorted([*RUNNERS, *STREAM_RUNNERS]), "raw", "ray"])
    parser.add_argument("--url", required=True)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--also", default="", help="interleaved: more clients, comma-separated")
    parser.add_argument("--longer", default="", help="interleaved: clients also run at --k2")
    parser.add_argument("--k2", type=int, default=50)
    args = parser.parse_args()
    result: Any
    if args.mode == "stream":
        result = asyncio.run(stream(args.name, args.url, args.k, args.runs))
    elif args.mode == "eval":
        result = asyncio.run(
            eval_mode(args.name, args.url, args.k, args.cases, args.concurrent, args.workers)
        )
    elif args.mode == "interleaved":
        names = [args.name, *filter(None, args.also.split(","))]
        longer = [*filter(None, args.longer.split(","))]
        result = asyncio.run(interleaved(names, args.url, args.k, args.runs, longer, args.k2))
    elif args.mode == "per_step":
        result = asyncio.run(per_step(args.name, args.url, args.k, args.runs))
    else:
        result = asyncio.run(throughput(args.name, args.url, args.k, args.concurrent))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
