"""Where live spans go: the tracer provider for ``Agent(..., otel=...)``.

``otel=True`` uses the application's tracer provider when it has set one up (an SDK
``TracerProvider`` registered globally), and otherwise one agentloop builds once per process
from the standard environment: ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (OTLP over HTTP), ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``; ``OTEL_SDK_DISABLED=true`` turns it
off. Spans are sent in batches from a background thread, and the rest are flushed when the
process exits. agentloop never installs its provider as the global one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from agentloop.events import BaseEvent, EventListener
from agentloop.otel._conventions import (
    SCHEMA_URL,
    SCOPE,
    capture_content_from_env,
    scope_version,
)
from agentloop.otel._ids import RunIdGenerator
from agentloop.otel._spans import SpanWriter
from agentloop.trace import TraceHeader

SERVICE = "agentloop"
"""The service name when ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` name none."""

_log = logging.getLogger("agentloop.otel")
_default: TracerProvider | None = None
_lock = threading.Lock()


def resource() -> Resource:
    """The resource from the standard environment, named ``agentloop`` if it names nothing."""
    found = Resource.create()
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        found = found.merge(Resource({SERVICE_NAME: SERVICE}))
    return _HashedOnce(found)


class _HashedOnce(Resource):
    """A resource whose hash is worked out once. The OTLP exporter groups every span it sends
    by its resource, and ``Resource.__hash__`` serializes all the attributes each time (about
    8 µs a span on this machine, a fifth of encoding one of agentloop's spans)."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def otlp_endpoint(url: str) -> str:
    """The traces URL for an OTLP/HTTP endpoint given as a base (``http://host:4318``) or as
    the full traces URL (``.../v1/traces``)."""
    url = url.rstrip("/")
    return url if url.endswith("/v1/traces") else url + "/v1/traces"


def make_provider(processor: SpanProcessor | None = None) -> TracerProvider:
    """A tracer provider with run-derived ids (``RunIdGenerator``) whose spans go to
    ``processor`` (default: batches sent over OTLP/HTTP, configured from the environment)."""
    provider = TracerProvider(resource=resource(), id_generator=RunIdGenerator())
    provider.add_span_processor(processor or BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def tracer_provider() -> trace_api.TracerProvider:
    """The provider ``otel=True`` sends spans to: the application's global SDK provider when
    there is one, otherwise agentloop's own (made on first use). Call its ``force_flush()`` to
    send what is buffered before a short script ends."""
    current = trace_api.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    global _default
    with _lock:
        if _default is None:
            _default = make_provider()
        return _default


def run_observer(
    provider: trace_api.TracerProvider | None = None,
    *,
    capture_content: bool | None = None,
    redact: Callable[[str], str] | None = None,
) -> Callable[[TraceHeader], EventListener]:
    """What an agent calls as each run starts, with the run's header: a ``SpanWriter`` for
    that run. ``provider`` ``None`` means ``tracer_provider()``, looked up as each run starts;
    ``capture_content`` ``None`` means the standard environment switch
    (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``), read at each run."""

    last: list[tuple[trace_api.TracerProvider, trace_api.Tracer]] = []  # one tracer a provider

    def observe(header: TraceHeader) -> EventListener:
        try:
            chosen = provider if provider is not None else tracer_provider()
            if not last or last[0][0] is not chosen:
                tracer = chosen.get_tracer(SCOPE, scope_version(), schema_url=SCHEMA_URL)
                last[:] = [(chosen, tracer)]
            tracer = last[0][1]
            capture = capture_content_from_env() if capture_content is None else capture_content
            return SpanWriter(tracer, header, redact=redact, capture_content=capture)
        except Exception:  # a tracing backend must not stop the run from starting
            _log.warning("OpenTelemetry: no spans for run %s", header.run_id, exc_info=True)
            return _ignore

    return observe


def _ignore(event: BaseEvent) -> None:
    """The listener of a run whose span writer could not be made."""
