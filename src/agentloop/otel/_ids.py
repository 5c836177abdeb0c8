"""Trace and span ids derived from the run id, so a run's spans have the same ids every time.

A run's trace id is a hash of its run id, and each span's id a hash of the run id and the span's
place in the run (``run``, ``chat/3``, ``tool/3/call_1``). Exporting a trace twice therefore
sends the same spans again instead of new ones, and a replay or fork can link to its parent
run's root span knowing only the parent's run id.

Ids come from a tracer provider's id generator, so ``RunIdGenerator`` is one: it returns the
ids planned for the span being started (``plan``), and random ids for anyone else's spans.
agentloop's own providers use it; pass ``RunIdGenerator()`` to your own ``TracerProvider`` to
get the same ids from it.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar, Token

from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import SpanContext, TraceFlags

ROOT = "run"
"""The key of a run's root (``invoke_agent``) span."""

_planned: ContextVar[tuple[int, int] | None] = ContextVar("agentloop_otel_ids", default=None)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def trace_id(run_id: str) -> int:
    """The 128-bit trace id of a run (never zero, which OpenTelemetry reserves)."""
    return int.from_bytes(_digest(f"agentloop/{run_id}")[:16]) or 1


def span_id(run_id: str, key: str) -> int:
    """The 64-bit id of the span at ``key`` in a run (never zero)."""
    return int.from_bytes(_digest(f"agentloop/{run_id}/{key}")[:8]) or 1


def root_context(run_id: str) -> SpanContext:
    """Where a run's root span is, for a link from a replay or fork of it."""
    return SpanContext(
        trace_id(run_id),
        span_id(run_id, ROOT),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


def plan(trace: int, span: int) -> Token[tuple[int, int] | None]:
    """Until ``unplan``, a ``RunIdGenerator`` hands out these ids (for the span being
    started; the trace id is used only if it is a root span)."""
    return _planned.set((trace, span))


def unplan(token: Token[tuple[int, int] | None]) -> None:
    _planned.reset(token)


class RunIdGenerator(IdGenerator):
    """Deterministic ids for agentloop's spans, random ones for every other span."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        ids = _planned.get()
        return ids[1] if ids is not None else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        ids = _planned.get()
        return ids[0] if ids is not None else self._random.generate_trace_id()
