"""Serving the viewer: uvicorn on 127.0.0.1, and optionally a browser tab opened on it."""

from __future__ import annotations

import socket
import threading
import time
import webbrowser
from collections.abc import Callable, Sequence
from pathlib import Path

import uvicorn

from agentloop.errors import UserError
from agentloop.viewer.app import create_app

HOST = "127.0.0.1"
"""The only address the viewer listens on: it shows traces and takes feedback from people on
this machine, never from the network."""


def serve(
    folders: Sequence[str | Path],
    *,
    port: int = 8765,
    open_browser: bool = False,
    read_only: bool = False,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the viewer over ``folders`` on ``http://127.0.0.1:PORT/`` until interrupted."""
    app = create_app(folders, read_only=read_only)
    app.state.viewer.index.refresh(force=True)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((HOST, port))
    except OSError as exc:
        listener.close()
        raise UserError(f"cannot listen on {HOST}:{port}: {exc.strerror} (try --port)") from None
    port = listener.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    url = f"http://{HOST}:{port}/"
    announce(f"agentloop view: {url}  ({'read-only, ' if read_only else ''}Ctrl-C stops it)")
    if open_browser:
        threading.Thread(target=_open_when_started, args=(server, url), daemon=True).start()
    server.run(sockets=[listener])


def _open_when_started(server: uvicorn.Server, url: str) -> None:
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if server.started:
        webbrowser.open(url)
