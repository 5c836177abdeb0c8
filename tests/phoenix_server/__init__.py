"""Arize Phoenix, the real OTLP receiver the OpenTelemetry tests send spans to.

Phoenix lives in its own virtual environment (``make phoenix`` creates ``.venv-phoenix``), so
its pins never constrain agentloop's. ``running_phoenix`` starts it on 127.0.0.1 (``serve.py``
binds the one listener ``PHOENIX_HOST`` does not cover), with its own working directory and its
telemetry and every other outside request switched off, and stops it afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PHOENIX_PYTHON = ROOT / ".venv-phoenix" / "bin" / "python"
STARTUP_S = 240


class PhoenixError(RuntimeError):
    """Phoenix is not installed, exited, or did not answer in time."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Phoenix:
    """A running Phoenix: its base URL (UI, REST API and OTLP/HTTP receiver) and its log."""

    url: str
    log: Path

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as reply:
            return json.loads(reply.read())

    def spans(self, project: str) -> list[dict[str, Any]]:
        """A project's spans, newest first, as Phoenix's REST API gives them."""
        try:
            found: list[dict[str, Any]] = self.get(f"/v1/projects/{project}/spans?limit=1000")[
                "data"
            ]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # the project appears with its first span
                return []
            raise
        return found

    def wait_for(self, project: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        """The project's spans once there are ``count`` (Phoenix inserts in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans(project)
            if len(spans) >= count or time.monotonic() > deadline:
                return spans
            time.sleep(0.3)

    def project_id(self, name: str) -> str:
        projects = self.get("/v1/projects")["data"]
        return str(next(p["id"] for p in projects if p["name"] == name))


@contextmanager
def running_phoenix(workdir: Path) -> Iterator[Phoenix]:
    if not PHOENIX_PYTHON.exists():
        raise PhoenixError(f"Phoenix is not installed at {PHOENIX_PYTHON}: run `make phoenix`")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))},
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
        "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
    }
    log = workdir / "phoenix.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(PHOENIX_PYTHON), str(Path(__file__).with_name("serve.py"))],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Phoenix(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                tail = log.read_text()[-3000:]
                raise PhoenixError(f"Phoenix exited ({process.returncode}):\n{tail}")
            try:
                urllib.request.urlopen(server.url + "/healthz", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    tail = log.read_text()[-3000:]
                    raise PhoenixError(
                        f"Phoenix did not answer in {STARTUP_S} s:\n{tail}"
                    ) from None
                time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
