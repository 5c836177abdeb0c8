"""The `make demo` script: a real agent on the embedded local model, offline, with no key.

It runs Gemma 3 270M (bundled by the `local` extra) with a calculator tool on an arithmetic
question, prints each step and the answer, writes the trace, shows it, and replays it offline.
The first run joins the model file into the cache (a few seconds); later runs start in about
two seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agentloop import load_agent, read_trace, replay_sync

TASK = sys.argv[1] if len(sys.argv) > 1 else "What is 17 * 23?"


# "local" (the bundled model) with the tool pack's calculator, at temperature 0.
AGENT_FILE = Path(__file__).resolve().parents[1] / "agents" / "local-calculator.toml"


def main() -> int:
    agent = load_agent(AGENT_FILE, trace_dir="traces")
    print(f"task: {TASK}")
    result = agent.run_sync(TASK)
    print(f"answer: {result.output}")
    assert result.trace_path is not None

    trace = read_trace(result.trace_path)
    print(f"\ntrace: {Path(result.trace_path)} (agent version {trace.header.config_hash})")
    for event in trace.events:
        if event.type == "model_response":
            r = event.response
            action = [f"{c.name}({c.arguments})" for c in r.tool_calls] or [repr(r.text)]
            speed = (r.timings or {}).get("predicted_per_second", 0.0)
            print(
                f"  step {event.step}  model -> {action[0]}   "
                f"[{r.usage.input_tokens} in / {r.usage.output_tokens} out tokens, "
                f"{r.latency_ms or 0:.0f} ms, {speed:.0f} tokens/s]"
            )
        elif event.type == "tool_result":
            print(f"  step {event.step}  {event.name} -> {event.content}")
        elif event.type in ("run_finished", "run_failed", "run_cancelled"):
            print(f"  end     {event.type} after {event.steps} steps, {event.duration_s:.1f} s")

    replayed = replay_sync(result.trace_path, trace_dir="traces/replays")
    verdict = "the same answer, no divergence" if not replayed.diverged else replayed.report()
    print(f"\nreplayed offline (no model, no tools): {replayed.output!r}: {verdict}")
    print(f"replay trace: {replayed.trace_path}")
    print("\nnext, with the environment active (. .venv/bin/activate):")
    print(f"  agentloop traces show {result.trace_path}")
    print(f"  agentloop replay {result.trace_path} --step")
    return 0 if not replayed.diverged else 1


if __name__ == "__main__":
    sys.exit(main())
