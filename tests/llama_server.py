"""llama.cpp's own HTTP server (from ``xllamacpp``) with the bundled model, in a subprocess on
127.0.0.1, so a test can kill it (SIGKILL, as a crash would) and start it again on the same
port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import httpx2

from agentloop.models.local import bundled_model_path

PROGRAM = textwrap.dedent(
    """
    import sys, time
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = sys.argv[1]
    params.port = int(sys.argv[2])
    params.n_ctx = 4096
    params.n_parallel = 1
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 2
    params.verbosity = -1
    server = xllamacpp.Server(params)
    print(server.listening_address, flush=True)
    while True:
        time.sleep(3600)
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LlamaServer:
    """``start()`` it, ``url`` is its ``base_url``, ``kill()`` it, ``start()`` it again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.model = str(bundled_model_path())
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 300) -> LlamaServer:
        self.process = subprocess.Popen(
            [sys.executable, "-c", PROGRAM, self.model, str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        address = self.process.stdout.readline().strip()
        assert address == f"http://127.0.0.1:{self.port}", address
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # the model loads after the socket opens
            try:
                if httpx2.get(f"http://127.0.0.1:{self.port}/health", timeout=5).status_code == 200:
                    return self
            except httpx2.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("llama.cpp's server did not become healthy")

    def kill(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.kill()
