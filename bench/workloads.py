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


async def httpx_runner(url: str) -> Run:
    import httpx2

    client = httpx2.AsyncClient(base_url=url, headers={"Authorization": "Bearer x"})

    async def run(k: int) -> None:
        messages: list[dict[str, Any]] = [{"role": "user", "content": "add numbers"}]
        while True:
            body = {"model": f"k{k}", "messages": messages, "tools": TOOLS}
            reply = (await client.post("/chat/completions", json=body)).json()
            message = reply["choices"][0]["message"]
            if not message.get("tool_calls"):
                return
            messages.append(message)
            for call in message["tool_calls"]:
                content = _add(call["function"]["arguments"])
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})

    return run


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


def _agentloop_runner(trace: bool, otel: bool = False) -> Callable[[str], Awaitable[Run]]:
    async def make(url: str) -> Run:
        from agentloop import Agent, tool
        from agentloop.models import OpenAIModel

        @tool
        def add(a: int, b: int) -> int:
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
            await agents[k].run("add numbers")

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
    "agentloop-otel": _agentloop_runner(trace=True, otel=True),
}


async def per_step(name: str, url: str, k: int, runs: int) -> dict[str, float]:
    run = await RUNNERS[name](url)
    await run(k)  # warm up: connections, imports, caches
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(runs):
        await run(k)
    finish = getattr(run, "finish", None)
    if finish is not None:  # spans still buffered are part of the cost
        finish()
    steps = runs * (k + 1)
    return {
        "wall_ms": (time.perf_counter() - wall) * 1000 / steps,
        "cpu_ms": (time.process_time() - cpu) * 1000 / steps,
    }


async def throughput(name: str, url: str, k: int, concurrent: int) -> dict[str, float]:
    run = await RUNNERS[name](url)
    await run(k)
    started = time.perf_counter()
    await asyncio.gather(*(run(k) for _ in range(concurrent)))
    elapsed = time.perf_counter() - started
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"runs_per_s": concurrent / elapsed, "peak_rss_mib": rss_mib}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["per_step", "throughput"])
    parser.add_argument("name", choices=sorted(RUNNERS))
    parser.add_argument("--url", required=True)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--concurrent", type=int, default=50)
    args = parser.parse_args()
    if args.mode == "per_step":
        result = asyncio.run(per_step(args.name, args.url, args.k, args.runs))
    else:
        result = asyncio.run(throughput(args.name, args.url, args.k, args.concurrent))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
