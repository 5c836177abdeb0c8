"""The one seam between the loop and any model: ``Model.request``, and its streaming form.

Every backend (an OpenAI-compatible endpoint, the embedded model, the scripted test model, a
replay of a trace) implements the single abstract method ``request``. ``request_stream`` is
the same request yielding deltas as they arrive; backends that can stream override it.
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from agentloop.deltas import StreamItem, deltas_of
from agentloop.errors import ModelRequestsBlocked
from agentloop.messages import Message, ModelResponse
from agentloop.settings import ModelSettings
from agentloop.tools import Toolset


class Model(ABC):
    """A model that answers a conversation, optionally with tool calls."""

    name: str = "model"
    """What the trace and errors call this model."""

    @abstractmethod
    async def request(
        self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings
    ) -> ModelResponse:
        """Answer ``messages``, offering ``tools``; raise a ``ModelError`` if the backend fails."""

    async def request_stream(
        self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings
    ) -> AsyncGenerator[StreamItem, None]:
        """``request`` as it happens: ``TextDelta`` and ``ToolCallDelta`` values as the backend
        produces them, then the assembled ``ModelResponse`` (always last, always once).

        Close the iterator (``aclose``, or leave an ``async with aclosing(...)`` block) to stop
        early: a streaming backend then closes its connection. This default, for backends that
        cannot stream, asks ``request`` and sends the whole response as deltas at once.
        """
        response = await self.request(messages, tools, settings)
        for delta in deltas_of(response):
            yield delta
        yield response

    def config(self) -> dict[str, Any]:
        """What identifies this model in a trace header and the agent's ``config_hash``.

        Never includes secrets. Backends add what changes behaviour (endpoint, model file).
        """
        return {"kind": type(self).__name__, "name": self.name}

    def secrets(self) -> list[str]:
        """Values that must never be written anywhere (API keys); traces and logs mask them."""
        return []

    async def aclose(self) -> None:  # noqa: B027 (a hook; most models hold nothing)
        """Close what this model keeps open on the running event loop (connections); it can
        still be used afterwards. Nothing to close by default."""

    def expect_concurrency(self, requests: int) -> int:
        """Get ready for ``requests`` requests at once (an eval's ``concurrency``): size a
        connection pool, load model instances. Returns how many this model serves at once;
        the rest wait their turn. Only ever grows what the model keeps ready."""
        return requests


_blocked = False


@contextmanager
def block_model_requests(blocked: bool = True) -> Iterator[None]:
    """Within this block, a model request that would leave the machine raises
    ``ModelRequestsBlocked``. Loopback endpoints and in-process models stay allowed."""
    global _blocked
    previous, _blocked = _blocked, blocked
    try:
        yield
    finally:
        _blocked = previous


def check_request_allowed(model: str, endpoint: str) -> None:
    """Raise if requests are blocked and ``endpoint`` is not on this machine."""
    if _blocked and not is_loopback_url(endpoint):
        raise ModelRequestsBlocked(
            f"model request to {endpoint} for {model!r} blocked: real model requests are off "
            "(block_model_requests); use agentloop.testing.ScriptedModel or a loopback server"
        )


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
