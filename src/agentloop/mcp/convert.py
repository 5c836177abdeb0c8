"""MCP tools and results in agentloop's terms, with the server's text treated as untrusted.

A server's tool names, descriptions and schemas are text from outside (tool poisoning: a
description that tells the model to read ``~/.ssh`` and send it somewhere). Names are cut down to
the characters every model endpoint accepts; descriptions, here and inside the input schema,
have their control and invisible characters escaped and are capped in length. The input schema
then goes through ``Tool.from_schema``, the same raw-schema path every catalogue tool takes.

A call result becomes one text observation: text content as text, structured content as JSON,
and images, audio and resources as one-line references with their MIME type and size (never
their bytes: a model cannot read base64, and it would fill its context).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from agentloop.observations import to_text
from agentloop.terminal import escape
from agentloop.types import JSONObject

MAX_DESCRIPTION_CHARS = 1024
"""A tool description (or a parameter's) from a server is cut to this many characters."""

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")
_DESCRIBING = ("description", "title")


def tool_name(prefix: str, raw: str) -> str:
    """The agentloop name of a server's tool: ``prefix + raw`` with every character a model
    endpoint does not accept replaced by ``_``, at most 64 characters."""
    return _UNSAFE_NAME.sub("_", f"{prefix}{raw}")[:64] or "_"


def clean_text(text: object, limit: int = MAX_DESCRIPTION_CHARS) -> str:
    """Untrusted text made safe to show: controls escaped (newlines kept), cut to ``limit``
    characters with a marker saying so."""
    shown = escape(str(text), keep="\n")
    if len(shown) <= limit:
        return shown
    marker = f" [cut: {len(shown)} chars]"
    return shown[: max(0, limit - len(marker))] + marker


def clean_schema(schema: Any, limit: int = MAX_DESCRIPTION_CHARS) -> Any:
    """A copy of ``schema`` whose ``description`` and ``title`` strings went through
    ``clean_text``, wherever they are nested."""
    if isinstance(schema, dict):
        return {
            key: clean_text(value, limit)
            if key in _DESCRIBING and isinstance(value, str)
            else clean_schema(value, limit)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [clean_schema(item, limit) for item in schema]
    return schema


def result_text(result: Any) -> str:
    """The text the model sees of an MCP ``CallToolResult`` (its ``isError`` aside).

    The content blocks in order; structured content as JSON when no text block carries it
    (servers are asked to send its JSON as text too, and SDK servers wrap a plain return value
    as ``{"result": ...}`` beside the text)."""
    parts = [
        block.text if getattr(block, "type", None) == "text" else reference(block)
        for block in result.content
    ]
    has_text = any(getattr(block, "type", None) == "text" for block in result.content)
    if result.structured_content is not None and not has_text:
        parts.insert(0, to_text(result.structured_content))
    return "\n".join(parts)


def reference(block: Any) -> str:
    """A one-line stand-in for a content block that is not text: its kind, where it is, its
    MIME type and its size, never its bytes."""
    kind = getattr(block, "type", "unknown")
    if kind in ("image", "audio"):
        return f"[{kind}: {block.mime_type}, {_decoded_size(block.data)} bytes]"
    if kind == "resource":
        item = block.resource
        text = getattr(item, "text", None)
        size = len(text.encode()) if isinstance(text, str) else _decoded_size(item.blob)
        kind_of = item.mime_type or "unknown type"
        return f"[resource {clean_text(item.uri, 300)}: {kind_of}, {size} bytes]"
    if kind == "resource_link":
        sized = f", {block.size} bytes" if block.size is not None else ""
        return (
            f"[resource link {clean_text(block.uri, 300)}: {clean_text(block.name, 200)}, "
            f"{block.mime_type or 'unknown type'}{sized}]"
        )
    return f"[{clean_text(kind, 50)} content]"


def served_tool(tool: Any) -> JSONObject:
    """What the server said about one tool, as recorded in the trace header (and hashed)."""
    entry: JSONObject = {
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.input_schema,
    }
    if tool.output_schema is not None:
        entry["output_schema"] = tool.output_schema
    hints = tool.annotations.model_dump(exclude_none=True) if tool.annotations else {}
    if hints:
        entry["annotations"] = hints  # hints shown, never trusted (idempotentHint included)
    return entry


def _decoded_size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except (binascii.Error, ValueError):
        return len(data)
