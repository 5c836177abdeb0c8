"""Shared test set-up: no test may reach a real model over the network."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

# Ray in tests (tests/test_eval_ray*.py): a cluster of this machine that listens on loopback
# only (Ray's own switch for single-machine clusters), with a token of this session's own
# rather than ~/.ray/auth_token. Set before anything imports ray; subprocesses inherit it.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

from agentloop.testing import block_model_requests
from agentloop.trace import TraceWriter
from fakes import FakeOpenAIServer
from fakes.runs import close_models

WRITTEN_TRACES: list[Path] = []
"""Every trace a test run in this process wrote; tests/test_zz_replay_corpus.py replays them."""


@pytest.fixture(autouse=True, scope="session")
def _record_written_traces() -> Iterator[None]:
    original = TraceWriter.__init__

    def recording(self: TraceWriter, path: Path, *args: Any, **kwargs: Any) -> None:
        original(self, path, *args, **kwargs)
        WRITTEN_TRACES.append(path)

    TraceWriter.__init__ = recording  # type: ignore[method-assign]
    yield
    TraceWriter.__init__ = original  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _no_real_model_requests() -> Iterator[None]:
    with block_model_requests():
        yield


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any internet socket fails the test (the event loop's own Unix socketpair still works)."""
    real = socket.socket

    class NoInternet(real):  # type: ignore[misc, valid-type]
        def __init__(self, family: int = -1, *args: object, **kwargs: object) -> None:
            if family in (socket.AF_INET, socket.AF_INET6, -1):
                raise AssertionError("a socket was opened where no network may be used")
            super().__init__(family, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "socket", NoInternet)


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    """A scripted OpenAI-compatible server on 127.0.0.1; fails the test at teardown if a
    scripted reply went unused or a request came after the script ran out."""
    with FakeOpenAIServer() as server:
        yield server
        server.assert_consumed()


@pytest.fixture
async def _close_openai_models() -> AsyncIterator[None]:
    """Close, on the test's own event loop, the models ``fakes.runs.fast_model`` made."""
    yield
    await close_models()
