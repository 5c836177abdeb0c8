"""`make bench`: agentloop's own cost per step against raw clients, in one interleaved run.

Starts the lean loopback server (bench/server.py) in its own process, then runs every workload
in a fresh process per measurement, alternating clients (A B C A B C ...) so that machine noise
falls on all of them alike, and prints median [min-max] with ratios against the baselines.
``--quick`` runs tiny sizes (the smoke test uses it); ``--json FILE`` saves the numbers.
"""

from __future__ import annotations

import argparse
import json
import operator
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


@contextmanager
def fake_server(latency: float = 0.0) -> Iterator[str]:
    command = [PYTHON, str(HERE / "server.py"), *([str(latency)] if latency else [])]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def workload(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [PYTHON, str(HERE / "workloads.py"), *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"workload {' '.join(args)} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def python_snippet(code: str) -> float:
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def summary(values: list[float]) -> dict[str, Any]:
    """Median, range, and every round's value in order (rounds alternate the clients, so
    round i of one client ran beside round i of every other)."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "rounds": values,
    }


def fmt(s: dict[str, Any], digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


PER_STEP = [
    "httpx",
    "openai",
    "agentloop",
    "agentloop-notrace",
    "httpx-streamed",
    "agentloop-streamed",
]
"""Each in its own processes, at every K. The clients that only explain a cost at K=10
(``agentloop-async-tool``, ``agentloop-otel``) are measured side by side only."""
RAW = {"agentloop-streamed": "httpx-streamed", "httpx-streamed": "httpx-streamed"}
"""What a row's "vs raw" compares with: the raw streamed loop for streamed rows, else httpx."""


def mid_k(ks: list[int]) -> int:
    """The K the targets compare at: 10 in the full run, the smallest in ``--quick``."""
    return 10 if 10 in ks else ks[0]


def measure_per_step(url: str, ks: list[int], repeats: int, runs: int) -> dict[str, Any]:
    samples: dict[tuple[str, int], list[dict[str, float]]] = {}
    for _ in range(repeats):
        for k in ks:
            for name in PER_STEP:
                n = max(1, runs * 10 // (k + 1))
                samples.setdefault((name, k), []).append(
                    workload("per_step", name, "--url", url, "-k", str(k), "--runs", str(n))
                )
    table: dict[str, Any] = {}
    for (name, k), rows in samples.items():
        table[f"{name}@{k}"] = {
            "wall_ms": summary([r["wall_ms"] for r in rows]),
            "cpu_ms": summary([r["cpu_ms"] for r in rows]),
        }
    return table


def measure_throughput(url: str, concurrency: list[int], repeats: int) -> dict[str, Any]:
    names = ["openai", "httpx", "agentloop"]
    samples: dict[tuple[str, int], list[dict[str, float]]] = {}
    for _ in range(repeats):
        for c in concurrency:
            for name in names:
                samples.setdefault((name, c), []).append(
                    workload("throughput", name, "--url", url, "-k", "10", "--concurrent", str(c))
                )
    return {
        f"{name}@{c}": {
            "runs_per_s": summary([r["runs_per_s"] for r in rows]),
            "peak_rss_mib": summary([r["peak_rss_mib"] for r in rows]),
        }
        for (name, c), rows in samples.items()
    }


IN_ONE_PROCESS = [
    "httpx",
    "agentloop",
    "agentloop-notrace",
    "agentloop-async-tool",
    "agentloop-otel",
    "httpx-streamed",
    "agentloop-streamed",
]
FLAT = ["agentloop", "agentloop-streamed"]
"""Also run at the largest K beside the rest, for the flatness targets."""


def measure_in_one_process(url: str, k: int, top: int, runs: int) -> dict[str, Any]:
    """The per-step clients the targets compare, alternating run by run in one process
    (``workloads.py interleaved``), three processes (the rounds). On this machine the same
    client's time moved by up to a third from one process to the next (pinning the client and
    the server to CPUs did not explain it), so clients in separate processes compare one
    process's luck with another's; side by side in one process they share it."""
    samples: list[dict[str, dict[str, float]]] = []
    for _ in range(3):
        also = ",".join(IN_ONE_PROCESS[1:])
        args = ("interleaved", IN_ONE_PROCESS[0], "--also", also, "--url", url, "-k", str(k))
        longer = ("--longer", ",".join(FLAT), "--k2", str(top))
        samples.append(workload(*args, *longer, "--runs", str(runs)))
    return {
        name: {key: summary([s[name][key] for s in samples]) for key in ("wall_ms", "cpu_ms")}
        for name in samples[0]
    }


STREAMERS = ["httpx-sse", "agentloop-stream"]


def measure_stream(url: str, tokens: int, repeats: int, runs: int) -> dict[str, Any]:
    """A streamed answer of ``tokens`` tokens: wall and CPU microseconds per token, and the
    time to the first text delta, for a raw httpx2 SSE loop and ``OpenAIModel``."""
    samples: dict[str, list[dict[str, float]]] = {}
    for _ in range(repeats):
        for name in STREAMERS:
            samples.setdefault(name, []).append(
                workload("stream", name, "--url", url, "-k", str(tokens), "--runs", str(runs))
            )
    return {
        name: {key: summary([r[key] for r in rows]) for key in rows[0]}
        for name, rows in samples.items()
    }


def measure_eval(url: str, cases: int, repeats: int) -> dict[str, Any]:
    """The eval runner against a raw asyncio + httpx2 loop: ``cases`` cases of 3 tool steps,
    50 at once, tracing and scoring on."""
    samples: dict[str, list[dict[str, float]]] = {}
    for _ in range(repeats):
        for name in ("raw", "agentloop"):
            samples.setdefault(name, []).append(
                workload("eval", name, "--url", url, "-k", "3", "--cases", str(cases))
            )
    return {
        name: {
            "cases_per_s": summary([r["cases_per_s"] for r in rows]),
            "cpu_ms_per_case": summary([r["cpu_ms_per_case"] for r in rows]),
            "peak_rss_mib": summary([r["peak_rss_mib"] for r in rows]),
        }
        for name, rows in samples.items()
    }


def measure_scale(cases: int, latency: float) -> dict[str, Any]:
    """``cases`` cases against a model that takes ``latency`` s per request: the local runner
    in one process, and the Ray backend on two workers (a local cluster started for it)."""
    with fake_server(latency) as url:
        rows = {}
        for name in ("agentloop", "ray"):
            rows[name] = workload(
                "eval", name, "--url", url, "-k", "3", "--cases", str(cases), "--workers", "2"
            )
    return rows


REPLAY = """
import sys, tempfile, time
from agentloop import Agent, ModelResponse, tool, replay_sync
from agentloop.testing import FunctionModel

@tool
def add(a: int, b: int) -> int:
    \"\"\"Add two integers.\"\"\"
    return a + b

steps = int(sys.argv[1])
def script(messages, call):
    if call.index < steps:
        return ModelResponse.tool_call("add", {"a": call.index, "b": 1}, call_id=f"c{call.index}")
    return "done"

folder = tempfile.mkdtemp()
agent = Agent(FunctionModel(script), tools=[add], trace_dir=folder, max_steps=None)
source = agent.run_sync("count").trace_path
started = time.perf_counter()
result = replay_sync(source, trace_dir=folder + "/replays")
assert result.output == "done" and not result.diverged, result.report()
print(time.perf_counter() - started)
"""


def measure_replay(steps: int, repeats: int) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [PYTHON, "-c", REPLAY, str(steps)], capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout))
    return summary(times)


LOCAL = """
import asyncio, sys, time
from agentloop import ModelSettings, tool
from agentloop.messages import UserMessage
from agentloop.models.local import LocalModel
from agentloop.tools import Toolset

@tool
def calculator(expression: str) -> str:
    \"\"\"Compute an arithmetic expression.\"\"\"
    return expression

repeats, max_tokens = int(sys.argv[1]), int(sys.argv[2])
model = LocalModel()
server = model.load()
messages = [UserMessage(content="Write the numbers from one to fifty in words.")]
tools = Toolset([calculator])
settings = ModelSettings(max_tokens=max_tokens, temperature=0, seed=0)
body = model.body(messages, tools, settings)

async def through_agentloop():
    started = time.perf_counter()
    response = await model.request(messages, tools, settings)
    return response.usage.output_tokens / (time.perf_counter() - started)

def direct():
    started = time.perf_counter()
    raw = server.handle_completions(body)
    return raw["usage"]["completion_tokens"] / (time.perf_counter() - started)

direct()  # warm the prompt cache for both
a, b = [], []
for _ in range(repeats):
    a.append(asyncio.run(through_agentloop()))
    b.append(direct())
print(f"{sorted(a)[len(a) // 2]} {sorted(b)[len(b) // 2]}")
"""


def measure_local(repeats: int, max_tokens: int) -> dict[str, float] | None:
    """Generated tokens per second through LocalModel and through xllamacpp directly, with the
    same request; ``None`` when the local extra is not installed."""
    out = subprocess.run(
        [PYTHON, "-c", LOCAL, str(repeats), str(max_tokens)], capture_output=True, text=True
    )
    if out.returncode != 0:
        if "optional packages" in out.stderr or "No module named" in out.stderr:
            return None
        raise SystemExit(f"local model benchmark failed:\n{out.stderr}")
    agentloop_tps, direct_tps = map(float, out.stdout.split())
    return {"agentloop": agentloop_tps, "direct": direct_tps}


def measure_imports(repeats: int) -> dict[str, dict[str, float]]:
    code = "import time; t = time.perf_counter(); import {m}; print(time.perf_counter() - t)"
    samples: dict[str, list[float]] = {"agentloop": [], "openai": []}
    for _ in range(repeats):
        for module in samples:
            samples[module].append(python_snippet(code.format(m=module)) * 1000)
    return {m: summary(v) for m, v in samples.items()}


def _paired(
    a: dict[str, Any], b: dict[str, Any], compare: Callable[[float, float], float]
) -> float:
    """``compare(a, b)`` as the median, over rounds, of the comparison within each round.
    Clients measured in the same round ran side by side, so a slow spell of the machine falls
    on both and cancels, where comparing the two medians would take one client's lucky round
    against the other's unlucky one. Without rounds to pair, the medians compared."""
    rounds_a, rounds_b = a.get("rounds", []), b.get("rounds", [])
    if rounds_a and len(rounds_a) == len(rounds_b):
        return statistics.median(compare(x, y) for x, y in zip(rounds_a, rounds_b, strict=True))
    return compare(a["median"], b["median"])


def ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
    """``a`` over ``b``, paired by round."""
    return _paired(a, b, operator.truediv)


def difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    """``a`` minus ``b``, paired by round."""
    return _paired(a, b, operator.sub)


def report(results: dict[str, Any]) -> str:
    ps, ks = results["per_step"], results["ks"]
    lines = ["## Per tool step (ms, median [min-max])", ""]
    lines.append("| client | K | wall ms | CPU ms | wall vs raw | wall vs openai |")
    lines.append("|---|---|---|---|---|---|")
    for k in ks:
        for name in PER_STEP:
            if f"{name}@{k}" not in ps:
                continue
            row = ps[f"{name}@{k}"]
            raw = RAW.get(name, "httpx")
            vs_httpx = ratio(row["wall_ms"], ps[f"{raw}@{k}"]["wall_ms"])
            vs_openai = ratio(row["wall_ms"], ps[f"openai@{k}"]["wall_ms"])
            lines.append(
                f"| {name} | {k} | {fmt(row['wall_ms'])} | {fmt(row['cpu_ms'])} | "
                f"{vs_httpx:.2f}x | {vs_openai:.2f}x |"
            )
    lines += in_one_process_lines(results)
    lines += ["", "## Concurrent runs (K=10)", ""]
    lines.append("| client | runs at once | runs/s | peak RSS MiB | vs openai |")
    lines.append("|---|---|---|---|---|")
    tp = results["throughput"]
    for c in results["concurrency"]:
        for name in ["openai", "httpx", "agentloop"]:
            row = tp[f"{name}@{c}"]
            vs = ratio(row["runs_per_s"], tp[f"openai@{c}"]["runs_per_s"])
            lines.append(
                f"| {name} | {c} | {fmt(row['runs_per_s'], 1)} | "
                f"{fmt(row['peak_rss_mib'], 0)} | {vs:.2f}x |"
            )
    st = results["stream"]
    lines += ["", f"## Streamed answer ({results['stream_tokens']} tokens)", ""]
    lines.append("| client | wall µs/token | CPU µs/token | first delta ms | vs raw |")
    lines.append("|---|---|---|---|---|")
    for name in STREAMERS:
        row = st[name]
        vs = ratio(row["token_us"], st["httpx-sse"]["token_us"])
        lines.append(
            f"| {name} | {fmt(row['token_us'], 1)} | {fmt(row['cpu_token_us'], 1)} | "
            f"{fmt(row['first_ms'], 2)} | {vs:.2f}x |"
        )
    imports, rp = results["imports"], results["replay"]
    ev = results["eval"]
    lines += ["", f"## Evaluation ({results['eval_cases']} cases of 3 tool steps, 50 at once)", ""]
    lines.append("| runner | cases/s | CPU ms per case (driver) | peak RSS MiB | vs raw |")
    lines.append("|---|---|---|---|---|")
    for name in ("raw", "agentloop"):
        row = ev[name]
        vs = ratio(row["cases_per_s"], ev["raw"]["cases_per_s"])
        lines.append(
            f"| {name} | {fmt(row['cases_per_s'], 1)} | {fmt(row['cpu_ms_per_case'])} | "
            f"{fmt(row['peak_rss_mib'], 0)} | {vs:.2f}x |"
        )
    scale = results.get("scale")
    if scale:
        lines += [
            "",
            f"## Scale ({results['scale_cases']} cases, {results['scale_latency'] * 1000:.0f} ms "
            "per model request, 50 at once per process)",
            "",
            "| runner | cases/s | driver peak RSS MiB |",
            "|---|---|---|",
        ]
        for name, label in (("agentloop", "local (one process)"), ("ray", "ray (2 workers)")):
            row = scale[name]
            lines.append(f"| {label} | {row['cases_per_s']:.1f} | {row['peak_rss_mib']:.0f} |")
    lines += ["", "## Other", ""]
    lines.append(tracing_line(results))
    lines.append(thread_line(results))
    lines.append(
        f"- replay of a {results['replay_steps']}-step trace (recorded tools): {fmt(rp, 3)} s"
    )
    lines.append(
        f"- import agentloop: {fmt(imports['agentloop'], 0)} ms; "
        f"import openai: {fmt(imports['openai'], 0)} ms"
    )
    local = results.get("local")
    if local:
        lines.append(
            f"- local model, generated tokens/s: through LocalModel {local['agentloop']:.1f}, "
            f"xllamacpp directly {local['direct']:.1f} "
            f"({local['agentloop'] / local['direct']:.2f}x)"
        )
    else:
        lines.append("- local model: not measured (install the extra: agentloop[local])")
    lines += ["", "## Targets", ""]
    lines += [f"- {'PASS' if ok else 'MISS'}: {what}" for what, ok in targets(results)]
    return "\n".join(lines)


def in_one_process_lines(results: dict[str, Any]) -> list[str]:
    """The clients that explain a step's cost, measured in one process, and the differences
    that say where agentloop's extra time goes."""
    one, at = results["in_one_process"], mid_k(results["ks"])
    lines = ["", f"## Side by side in one process (K={at}; the per-step targets)", ""]
    lines.append("| client | wall ms | CPU ms | wall vs raw |")
    lines.append("|---|---|---|---|")
    for key, row in one.items():
        name, _, size = key.partition("@")
        if size:  # the same client at the largest K: against itself at K=at
            vs = ratio(row["wall_ms"], one[name]["wall_ms"])
            shown = f"{vs:.2f}x its K={at}"
        else:
            shown = f"{ratio(row['wall_ms'], one[RAW.get(name, 'httpx')]['wall_ms']):.2f}x"
        label = f"{name} at K={size}" if size else name
        lines.append(f"| {label} | {fmt(row['wall_ms'])} | {fmt(row['cpu_ms'])} | {shown} |")

    def over(name: str, base: str) -> float:
        return difference(one[name]["wall_ms"], one[base]["wall_ms"])

    extra = over("agentloop", "httpx")
    trace = over("agentloop", "agentloop-notrace")
    thread = over("agentloop", "agentloop-async-tool")
    rest = extra - trace - thread
    lines.append("")
    lines.append(
        f"Of agentloop's {extra:.3f} ms a step over the raw loop: the trace {trace:.3f} ms, "
        f"the sync tool's worker thread {thread:.3f} ms, the rest of the loop {rest:.3f} ms."
    )
    return lines


def tracing_line(results: dict[str, Any]) -> str:
    """What writing the trace (redaction included) costs per step: the difference between the
    agent with and without a trace folder, in wall and in CPU time (CPU is steadier when other
    processes share the machine)."""
    one, mid = results["in_one_process"], mid_k(results["ks"])
    traced, bare = one["agentloop"], one["agentloop-notrace"]
    wall = 1 - ratio(bare["wall_ms"], traced["wall_ms"])
    cpu = 1 - ratio(bare["cpu_ms"], traced["cpu_ms"])
    return (
        f"- tracing (serialize, redact values, write, flush) at K={mid}: {wall:.0%} of a "
        f"step's wall time, {cpu:.0%} of its CPU time"
    )


def thread_line(results: dict[str, Any]) -> str:
    """What running a sync tool in a worker thread costs per step (the handoff both ways),
    against the same tool written ``async def``, which runs on the event loop as the raw
    loops' tool does."""
    one, at = results["in_one_process"], mid_k(results["ks"])
    threaded, on_loop = one["agentloop"], one["agentloop-async-tool"]
    wall = difference(threaded["wall_ms"], on_loop["wall_ms"])
    cpu = difference(threaded["cpu_ms"], on_loop["cpu_ms"])
    return (
        f"- a sync tool's worker thread at K={at}: {wall * 1000:.0f} µs of a step's wall time, "
        f"{cpu * 1000:.0f} µs of its CPU time (against the same tool as `async def`)"
    )


def targets(results: dict[str, Any]) -> list[tuple[str, bool]]:
    ks = results["ks"]
    mid, top = (10, 50) if 10 in ks and 50 in ks else (ks[0], ks[-1])
    one = results["in_one_process"]
    trace_cost = 1 - ratio(one["agentloop-notrace"]["wall_ms"], one["agentloop"]["wall_ms"])
    at = mid_k(ks)
    otel_cost = ratio(one["agentloop-otel"]["wall_ms"], one["agentloop"]["wall_ms"]) - 1
    c = results["concurrency"][0]
    tp = results["throughput"]
    speedup = ratio(tp[f"agentloop@{c}"]["runs_per_s"], tp[f"openai@{c}"]["runs_per_s"])
    imports = results["imports"]
    replay_s = results["replay"]["median"]
    ev = results["eval"]
    eval_gap = ratio(ev["raw"]["cases_per_s"], ev["agentloop"]["cases_per_s"])
    return [
        (
            f"eval runner within 1.3x of the raw loop's cases/s, tracing on ({eval_gap:.2f}x)",
            eval_gap <= 1.3,
        ),
        *_per_step_targets(one, mid, top),
        (f"{c} concurrent runs >= 2.5x the openai-client loop ({speedup:.2f}x)", speedup >= 2.5),
        (f"tracing <= 10% of a step ({trace_cost:.0%})", trace_cost <= 0.10),
        (
            f"OpenTelemetry live export <= 10% more per step at K={at}, in one process "
            f"({otel_cost:.0%})",
            otel_cost <= 0.10,
        ),
        (
            f"replay of {results['replay_steps']} steps < 0.5 s ({replay_s:.3f} s)",
            replay_s < 0.5,
        ),
        ("import agentloop < import openai", ratio(imports["agentloop"], imports["openai"]) < 1),
        (
            "import agentloop <= 150 ms above a bare interpreter "
            f"({imports['agentloop']['median']:.0f} ms)",
            imports["agentloop"]["median"] <= 150,
        ),
        *_stream_targets(results["stream"]),
        *_local_target(results.get("local")),
    ]


def _per_step_targets(one: dict[str, Any], mid: int, top: int) -> list[tuple[str, bool]]:
    """Near the wire, streamed and not: within 1.3x of the raw loop at K=mid, and flat with the
    conversation's length (K=top within 1.1x of K=mid), each side by side in one process."""
    found = []
    for name, raw, label in (
        ("agentloop", "httpx", "raw httpx2"),
        ("agentloop-streamed", "httpx-streamed", "a raw httpx2 SSE loop"),
    ):
        vs_raw = ratio(one[name]["wall_ms"], one[raw]["wall_ms"])
        growth = ratio(one[f"{name}@{top}"]["wall_ms"], one[name]["wall_ms"])
        found += [
            (
                f"{name} per step at K={mid} <= 1.3x {label}, in one process ({vs_raw:.2f}x)",
                vs_raw <= 1.3,
            ),
            (
                f"{name}: K={top} within 1.1x of K={mid} per step, in one process ({growth:.2f}x)",
                growth <= 1.1,
            ),
        ]
    return found


def _stream_targets(stream: dict[str, Any]) -> list[tuple[str, bool]]:
    ours, raw = stream["agentloop-stream"], stream["httpx-sse"]
    per_token = ratio(ours["token_us"], raw["token_us"])
    added = difference(ours["first_ms"], raw["first_ms"])
    return [
        (f"streamed, per token <= 1.5x a raw httpx2 SSE loop ({per_token:.2f}x)", per_token <= 1.5),
        (f"streamed, time to first token < 0.5 ms over raw ({added:+.2f} ms)", added < 0.5),
    ]


def _local_target(local: dict[str, float] | None) -> list[tuple[str, bool]]:
    if not local:
        return []
    cost = 1 - local["agentloop"] / local["direct"]
    return [(f"LocalModel costs < 5% of xllamacpp's tokens/s ({cost:.1%})", cost < 0.05)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 5
    ks = [1, 3] if args.quick else [1, 10, 50]
    concurrency = [5] if args.quick else [50, 200]
    replay_steps = 20 if args.quick else 1000
    started = time.perf_counter()
    with fake_server() as url:
        results: dict[str, Any] = {
            "ks": ks,
            "concurrency": concurrency,
            "replay_steps": replay_steps,
            "per_step": measure_per_step(url, ks, repeats, runs=2 if args.quick else 30),
            "in_one_process": measure_in_one_process(
                url, mid_k(ks), ks[-1], 5 if args.quick else 200
            ),
            "throughput": measure_throughput(url, concurrency, repeats),
            "eval_cases": 20 if args.quick else 200,
            "stream_tokens": 20 if args.quick else 500,
        }
        results["eval"] = measure_eval(url, results["eval_cases"], repeats)
        results["stream"] = measure_stream(
            url, results["stream_tokens"], repeats, runs=2 if args.quick else 20
        )
    if not args.quick:
        results["scale_cases"], results["scale_latency"] = 10_000, 0.02
        results["scale"] = measure_scale(results["scale_cases"], results["scale_latency"])
    results["replay"] = measure_replay(replay_steps, repeats)
    results["imports"] = measure_imports(repeats)
    results["local"] = measure_local(1 if args.quick else 5, 8 if args.quick else 96)
    print(report(results))
    print(f"\n(took {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
