"""What every command shares: exit codes, stdout for data and stderr for the rest, logging."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from agentloop.redaction import redact_log_event
from agentloop.terminal import escape

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 130
DEFAULT_TRACE_DIR = "traces"
EXIT_CODES = """\
exit codes:
  0    success
  1    the run failed (a limit, a model error, a tool error); the message and the
       trace path are on stderr
  2    usage or configuration error (bad arguments, unknown model string, tool file or
       trace not found, a tool file that fails to import)
  130  cancelled with Ctrl-C (the trace ends with run_cancelled)
"""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def model_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from ``--model-option``; VALUE is read as JSON when it is JSON
    (``false``, ``4096``, ``0.5``, ``"x"``) and as a plain string otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not KEY=VALUE (e.g. native_tools=false, prompt_form=completion)"
        )
    try:
        parsed: Any = json.loads(value)
    except ValueError:
        parsed = value
    return key.strip(), parsed


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model-option KEY=VALUE``, repeatable: options for the model's backend."""
    parser.add_argument(
        "--model-option",
        metavar="KEY=VALUE",
        type=model_option,
        action="append",
        default=[],
        dest="model_options",
        help="an option for the model's backend, e.g. native_tools=false or "
        "prompt_form=completion (OpenAI-compatible), max_tokens=512 (local); repeat for more",
    )


@contextmanager
def logging_to_stderr(*, verbose: bool) -> Iterator[None]:
    """Within the block, the ``agentloop`` logger writes to stderr (WARNING and up, or DEBUG
    with ``--verbose``), one ``key=value`` line per record; afterwards it is as it was."""
    logger = logging.getLogger("agentloop")
    before = (logger.level, logger.propagate)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_EscapingFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before[0])
        logger.propagate = before[1]


class _EscapingFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's console rendering of stdlib records (with their ``extra`` fields), with
    control characters escaped."""

    def __init__(self) -> None:
        super().__init__(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.ExtraAdder(),
                redact_log_event,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.dev.ConsoleRenderer(colors=False),
            ],
        )

    def format(self, record: logging.LogRecord) -> str:
        return escape(super().format(record))


def out(line: str) -> None:
    """Data, on stdout, escaped for the terminal (a no-op on the ASCII of ``json.dumps``), so
    nothing a command prints from a trace, a model or a tool can hold a control sequence."""
    print(escape(line), file=sys.stdout, flush=True)


def say(line: str) -> None:
    """Progress and errors, on stderr, escaped for the terminal like ``out``."""
    print(escape(line), file=sys.stderr, flush=True)


def message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__
