"""OpenTelemetry for agentloop: runs as spans in the observability tools teams already use.

Needs the extra: ``pip install 'agentloop[otel]'``. Two ways in, one way of making spans:

- live: ``Agent(..., otel=True)`` (or ``otel=`` a ``TracerProvider``) writes each run's spans
  from the same events its trace writer receives (``SpanWriter``);
- after the fact: ``export_traces`` (``agentloop export otel TRACE_OR_DIR... --endpoint URL``)
  sends recorded traces, with ids derived from each run id and the original timestamps.

Spans follow the OpenTelemetry GenAI semantic conventions (``SEMCONV_VERSION``). Message and
tool content is left out unless capture is switched on (``capture_content=True`` or
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``), and is then redacted exactly as the
trace is. See docs/opentelemetry.md.
"""

from __future__ import annotations

try:
    import opentelemetry.exporter.otlp.proto.http.trace_exporter
    import opentelemetry.sdk.trace  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"agentloop's OpenTelemetry support needs the optional packages ({exc.name} is "
        "missing): pip install 'agentloop[otel]'"
    ) from exc

from agentloop.otel._conventions import (
    CAPTURE_CONTENT_ENV,
    CONTENT_ATTRIBUTES,
    SEMCONV_VERSION,
    capture_content_from_env,
)
from agentloop.otel._export import ExportReport, export_traces, trace_spans
from agentloop.otel._ids import RunIdGenerator, span_id, trace_id
from agentloop.otel._setup import make_provider, run_observer, tracer_provider
from agentloop.otel._spans import SpanWriter

__all__ = [
    "CAPTURE_CONTENT_ENV",
    "CONTENT_ATTRIBUTES",
    "SEMCONV_VERSION",
    "ExportReport",
    "RunIdGenerator",
    "SpanWriter",
    "capture_content_from_env",
    "export_traces",
    "make_provider",
    "run_observer",
    "span_id",
    "trace_id",
    "trace_spans",
    "tracer_provider",
]
