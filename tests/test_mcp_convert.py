"""How MCP tools and results become agentloop's, with the server's text untrusted (no server
needed: the SDK's own result types are built directly)."""

from __future__ import annotations

import base64

from mcp import types

from agentloop.mcp.convert import clean_schema, clean_text, result_text, tool_name


def result(
    *content: object, structured: object = None, error: bool = False
) -> types.CallToolResult:
    return types.CallToolResult(
        content=list(content),  # type: ignore[arg-type]
        structured_content=structured,  # type: ignore[arg-type]
        is_error=error,
    )


def test_text_blocks_are_joined_in_order() -> None:
    text = result(
        types.TextContent(type="text", text="one"), types.TextContent(type="text", text="two")
    )
    assert result_text(text) == "one\ntwo"


def test_structured_content_is_json_when_no_text_carries_it() -> None:
    only = result(structured={"b": 1, "a": [1, 2]})
    assert result_text(only) == '{"b": 1, "a": [1, 2]}'
    both = result(types.TextContent(type="text", text="hot"), structured={"result": "hot"})
    assert result_text(both) == "hot"  # the text, once


def test_binary_content_is_a_reference_never_bytes() -> None:
    png = base64.b64encode(b"\x89PNG" + b"\x00" * 96).decode()
    blob = base64.b64encode(b"x" * 10).decode()
    shown = result_text(
        result(
            types.ImageContent(type="image", data=png, mime_type="image/png"),
            types.AudioContent(type="audio", data=blob, mime_type="audio/wav"),
            types.EmbeddedResource(
                type="resource",
                resource=types.BlobResourceContents(uri="file:///a.bin", blob=blob),
            ),
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(
                    uri="file:///n.txt", text="héllo", mime_type="text/plain"
                ),
            ),
            types.ResourceLink(
                type="resource_link", uri="file:///big", name="big", size=5, mime_type="a/b"
            ),
        )
    )
    assert shown.splitlines() == [
        "[image: image/png, 100 bytes]",
        "[audio: audio/wav, 10 bytes]",
        "[resource file:///a.bin: unknown type, 10 bytes]",
        "[resource file:///n.txt: text/plain, 6 bytes]",
        "[resource link file:///big: big, a/b, 5 bytes]",
    ]
    assert png not in shown


def test_names_are_made_acceptable_and_prefixed() -> None:
    assert tool_name("", "get-sum") == "get-sum"
    assert tool_name("ev_", "a.b c/d") == "ev_a_b_c_d"
    assert len(tool_name("p_", "x" * 100)) == 64
    assert tool_name("", "") == "_"


def test_descriptions_are_escaped_and_capped_everywhere_in_a_schema() -> None:
    assert clean_text("ok\nline two") == "ok\nline two"
    assert clean_text("\x1b[31mred\u202e") == "\\x1b[31mred\\u202e"
    cut = clean_text("a" * 2000, limit=100)
    assert len(cut) == 100 and cut.endswith(" [cut: 2000 chars]")
    schema = {
        "type": "object",
        "properties": {"x": {"type": "string", "description": "\x07" + "y" * 5000}},
    }
    cleaned = clean_schema(schema, limit=50)
    assert cleaned["properties"]["x"]["description"].startswith("\\x07yyy")
    assert len(cleaned["properties"]["x"]["description"]) == 50
    assert cleaned["type"] == "object"
