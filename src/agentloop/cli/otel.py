"""``agentloop export otel``: recorded runs sent as OpenTelemetry spans to an OTLP endpoint.

The options live here so the ``export`` command stays about fine-tuning data; the
OpenTelemetry packages are imported only when this kind of export runs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from agentloop.cli._output import EXIT_FAILED, EXIT_OK, say
from agentloop.errors import UserError
from agentloop.terminal import escape
from agentloop.trace import Trace

ENDPOINT_ENV = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        help="otel: the OTLP/HTTP endpoint, e.g. http://127.0.0.1:6006 (default: "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT)",
    )
    parser.add_argument(
        "--content",
        action="store_true",
        default=None,
        help="otel: include messages and tool arguments and results (as redacted in the "
        "trace); default: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, else off",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="otel: how long to keep trying to send each batch of spans (default 10)",
    )


def export(traces: Sequence[Trace], args: argparse.Namespace) -> int:
    if args.endpoint is None and not any(os.environ.get(name) for name in ENDPOINT_ENV):
        raise UserError("export otel: give --endpoint URL or set OTEL_EXPORTER_OTLP_ENDPOINT")
    try:
        from agentloop.otel import capture_content_from_env, export_traces
        from agentloop.otel._setup import otlp_endpoint
    except ImportError as exc:
        raise UserError(str(exc)) from None

    content = capture_content_from_env() if args.content is None else args.content
    report = export_traces(traces, args.endpoint, capture_content=content, timeout=args.timeout)
    where = escape(
        otlp_endpoint(args.endpoint) if args.endpoint else "the OTEL_EXPORTER_OTLP endpoint"
    )
    if report.failed:
        say(
            f"the endpoint did not take {report.failed} of {report.spans} span(s) "
            f"from {report.traces} trace(s): {where}"
        )
        return EXIT_FAILED
    say(f"sent {report.spans} span(s) from {report.traces} trace(s) to {where}")
    return EXIT_OK
