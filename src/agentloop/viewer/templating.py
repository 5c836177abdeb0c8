"""The Jinja environment the viewer renders with: autoescape on for every template, undefined
names an error, and the few filters the templates need (times, JSON, route URLs).

Autoescape is what makes a ``<script>`` in tool output show as text: every ``{{ value }}`` is
HTML-escaped unless a template marks it safe, and no template marks trace text safe. Before
that, every string shown passes through ``agentloop.terminal.escape``, as on the terminal:
control characters, bidirectional overrides and zero-width characters appear as ``\\u202e``
and the like, so hidden text cannot reorder or hide what a person reads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from agentloop.terminal import escape

FOLD = 600
"""Characters of a long value shown before it folds behind an expand."""


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("agentloop.viewer", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=visible,
    )
    env.filters["when"] = when
    env.filters["pretty"] = pretty
    env.filters["route"] = route
    env.filters["short"] = short
    env.filters["mappings"] = mappings
    env.globals["FOLD"] = FOLD
    return env


def visible(value: Any) -> Any:
    """A string with its invisible and control characters written out (``terminal.escape``);
    other values, and HTML the templates made themselves (``Markup``), as they are."""
    if not isinstance(value, str) or isinstance(value, Markup):
        return value
    if value.replace("\n", "").replace("\t", "").isprintable():
        return value
    return escape(value)


def when(value: float | str | None) -> str:
    """A Unix time or an ISO time as ``YYYY-MM-DD HH:MM:SS`` UTC."""
    if value is None or value == "":
        return ""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return value[:19].replace("T", " ")


def pretty(value: Any) -> str:
    """JSON, indented; a string that holds JSON is shown as that JSON."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def route(ref: str) -> str:
    """A file reference as a URL path (each segment percent-encoded)."""
    return quote(ref, safe="/")


def mappings(value: Any) -> list[dict[str, Any]]:
    """The objects in a JSON list (a critique's scores or problems), whatever else it holds:
    a trace may carry any shape there."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def short(text: str | None, limit: int = 120) -> str:
    """One line, at most ``limit`` characters."""
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
