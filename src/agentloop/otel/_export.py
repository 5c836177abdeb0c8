"""``agentloop export otel``: recorded traces sent as spans to an OTLP endpoint.

Each trace is replayed, event by event, through the same ``SpanWriter`` a live run uses, with a
provider whose ids derive from the run id: the spans keep the run's own timestamps, and
exporting the same trace again sends the same span ids (backends that key spans by id keep one
copy). The spans are collected, then sent in batches over OTLP/HTTP, and every batch the
endpoint refuses is counted, so the caller can tell a complete export from a partial one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from agentloop.otel._conventions import SCHEMA_URL, SCOPE, scope_version
from agentloop.otel._setup import make_provider, otlp_endpoint
from agentloop.otel._spans import SpanWriter
from agentloop.trace import Trace

BATCH = 256
"""Spans per request to the endpoint."""


class _Collect(SpanProcessor):
    """Keeps every ended span, to be sent when the traces are done."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


@dataclass(frozen=True)
class ExportReport:
    """What ``export_traces`` sent: traces read, spans made, and spans the endpoint refused."""

    traces: int
    spans: int
    failed: int


def trace_spans(traces: Iterable[Trace], *, capture_content: bool = False) -> list[ReadableSpan]:
    """The spans of recorded runs, with ids derived from each run id. A trace without a
    terminal event (a killed run) ends at its last event, marked ``incomplete``."""
    collected = _Collect()
    provider = make_provider(collected)
    tracer = provider.get_tracer(SCOPE, scope_version(), schema_url=SCHEMA_URL)
    for trace in traces:
        writer = SpanWriter(
            tracer, trace.header, capture_content=capture_content, context=Context()
        )
        for event in trace.events:
            writer(event)
        if not writer.ended:
            writer.close(trace.events[-1].ts if trace.events else 0.0)
    provider.shutdown()
    return collected.spans


def send(spans: Sequence[ReadableSpan], exporter: SpanExporter) -> int:
    """Send ``spans`` in batches; return how many were not delivered. After a batch fails
    (the exporter already retried it until its timeout), the rest are not tried."""
    try:
        for start in range(0, len(spans), BATCH):
            if exporter.export(spans[start : start + BATCH]) is not SpanExportResult.SUCCESS:
                return len(spans) - start
        return 0
    finally:
        exporter.shutdown()


def export_traces(
    traces: Iterable[Trace],
    endpoint: str | None = None,
    *,
    capture_content: bool = False,
    timeout: float | None = None,
    exporter: SpanExporter | None = None,
) -> ExportReport:
    """Send recorded traces as spans to an OTLP/HTTP ``endpoint`` (a base URL such as
    ``http://localhost:6006``, or the full ``.../v1/traces``; ``None`` reads the standard
    ``OTEL_EXPORTER_OTLP_*`` environment), or to ``exporter``. ``timeout`` is how long, in
    seconds, each batch is retried (default: the environment's, else 10).
    ``capture_content`` adds the messages and tool arguments and results, as the trace holds
    them (already redacted)."""
    read = list(traces)
    spans = trace_spans(read, capture_content=capture_content)
    if exporter is None:
        url = otlp_endpoint(endpoint) if endpoint else None
        exporter = OTLPSpanExporter(endpoint=url, timeout=timeout)
    return ExportReport(traces=len(read), spans=len(spans), failed=send(spans, exporter))
