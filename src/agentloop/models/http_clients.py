"""The HTTP clients one ``OpenAIModel`` keeps per event loop, and how they are closed.

Requests are spread over several httpx2 clients (``SHARD`` connections each: httpx2's pool does
work per idle connection on every request), the TLS context is made once per process, and the
clients close when their event loop shuts down. Models layer.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from functools import cache

import httpx2


@cache
def tls_context() -> ssl.SSLContext:
    """httpx2's default TLS context, made once per process: loading the CA bundle takes tens
    of milliseconds, and every client would otherwise load its own."""
    return httpx2.create_ssl_context()


@dataclass(slots=True)
class LoopClients:
    """One event loop's HTTP clients, and how many requests each has in flight."""

    clients: tuple[httpx2.AsyncClient, ...]
    closer: AsyncGenerator[None, None]
    connections: int
    retired: tuple[LoopClients, ...] = ()
    busy: list[int] = field(default_factory=list)

    def lease(self) -> int:
        """The least busy client (its index), now counted one request busier."""
        if not self.busy:
            self.busy = [0] * len(self.clients)
        shard = self.busy.index(min(self.busy))
        self.busy[shard] += 1
        return shard


async def close_with_loop(
    clients: tuple[httpx2.AsyncClient, ...],
) -> AsyncGenerator[None, None]:
    """Closes ``clients`` when their event loop shuts down.

    Started once, this generator stays suspended for the life of the loop. ``asyncio.run`` (and
    any runner that calls ``loop.shutdown_asyncgens()``) closes live async generators while the
    loop still runs, which runs the ``finally`` below; if the model goes away first, the loop's
    finalizer hook does the same.
    """
    try:
        yield
    finally:
        for client in clients:
            await client.aclose()
