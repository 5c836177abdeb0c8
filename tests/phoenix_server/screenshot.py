"""Refresh docs/images/phoenix-run.png: a run of a small agent, as Phoenix shows it.

``make screenshot`` runs this with the project's Python: it starts Phoenix on 127.0.0.1
(``running_phoenix``), runs a scripted two-tool agent with live export and content capture on,
and has headless Chromium (Debian's ``chromium``) photograph the run's trace page with its
last chat span open. Scripted, so the picture is the same every time but for ids and times.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentloop import Agent, ModelResponse, tool
from agentloop.messages import Usage
from agentloop.otel import CAPTURE_CONTENT_ENV, make_provider
from agentloop.testing import ScriptedModel
from phoenix_server import ROOT, running_phoenix

PROJECT = "agentloop-demo"
OUT = ROOT / "docs" / "images" / "phoenix-run.png"


@tool
def population(city: str) -> int:
    """The population of a city."""
    return {"Lyon": 522_250, "Porto": 231_800}[city]


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def run_agent(endpoint: str, trace_dir: Path) -> str:
    def usage(i: int, o: int) -> Usage:
        return Usage(input_tokens=i, output_tokens=o)

    cities = [("population", {"city": "Lyon"}), ("population", {"city": "Porto"})]
    script = [
        ModelResponse.tool_calls_of(cities, usage=usage(182, 41), model_name="demo-model"),
        ModelResponse.tool_call(
            "add", {"a": 522_250, "b": 231_800}, usage=usage(260, 22), model_name="demo-model"
        ),
        ModelResponse.answer(
            "Lyon and Porto have 754,050 inhabitants together.",
            usage=usage(301, 15),
            model_name="demo-model",
        ),
    ]
    provider = make_provider(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    agent = Agent(
        ScriptedModel(script, name="demo-model"),
        tools=[population, add],
        name="city-stats",
        instructions="Answer with numbers from the tools.",
        trace_dir=trace_dir,
        otel=provider,
    )
    result = agent.run_sync("How many people live in Lyon and Porto together?")
    provider.shutdown()
    return result.run_id


def main() -> None:
    os.environ["OTEL_RESOURCE_ATTRIBUTES"] = f"openinference.project.name={PROJECT}"
    os.environ[CAPTURE_CONTENT_ENV] = "true"
    with tempfile.TemporaryDirectory() as folder, running_phoenix(Path(folder)) as phoenix:
        run_agent(phoenix.url + "/v1/traces", Path(folder) / "traces")
        spans = phoenix.wait_for(PROJECT, 7)
        last_chat = max(
            (s for s in spans if s["name"].startswith("chat ")),
            key=lambda s: s["attributes"]["agentloop.step"],
        )
        trace = last_chat["context"]["trace_id"]
        page = (
            f"{phoenix.url}/projects/{phoenix.project_id(PROJECT)}/traces/{trace}"
            f"?selectedSpanNodeId={last_chat['id']}"
        )
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1440,900",
                "--virtual-time-budget=20000",
                f"--screenshot={OUT}",
                page,
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
