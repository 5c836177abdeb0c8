"""The app example of docs/embedding.md, driven through its ASGI interface: a conversation per
session, typed replies, deps reaching the tool, PII stripped before the model sees it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from agentloop import ModelResponse, read_trace
from agentloop.testing import ScriptedModel

ROOT = Path(__file__).resolve().parents[1]


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location(
        "chat_app_example", ROOT / "examples" / "chat_app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chat_app_example"] = module
    spec.loader.exec_module(module)
    return module


async def post(app: Any, path: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One POST through the ASGI interface, as a server would send it."""
    body = json.dumps(payload).encode()
    sent: list[dict[str, Any]] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(data)


async def test_the_chat_endpoint_holds_a_typed_conversation_per_session(tmp_path: Path) -> None:
    example = load_example()
    model = ScriptedModel(
        [
            ModelResponse.tool_call("order_status", {"order_id": "A-1001"}),
            '{"answer": "Order A-1001 has shipped.", "needs_human": false}',
            '{"answer": "You asked about A-1001.", "needs_human": false}',
            '{"answer": "Hello.", "needs_human": false}',
        ]
    )
    orders = example.Orders({"A-1001": {"status": "shipped", "email": "ada@example.com"}})
    app = example.create_app(model, orders, trace_dir=str(tmp_path))
    status, first = await post(app, "/chat", {"session": "s1", "message": "Where is A-1001?"})
    assert status == 200 and first["answer"] == "Order A-1001 has shipped." and first["turn"] == 1
    seen = [m.content for m in model.calls[1].messages if m.role == "tool"]
    assert "[email]" in seen[0] and "ada@example.com" not in seen[0]
    status, second = await post(app, "/chat", {"session": "s1", "message": "Which order?"})
    assert second["turn"] == 2 and "Where is A-1001?" in [
        m.content for m in model.calls[2].messages
    ]
    status, other = await post(app, "/chat", {"session": "s2", "message": "hi"})
    assert other["turn"] == 1 and "Where is A-1001?" not in [
        m.content for m in model.calls[3].messages
    ]
    trace = read_trace(tmp_path / f"{second['run']}.jsonl")
    assert trace.header.conversation is not None and trace.header.conversation["turn"] == 1
    assert trace.header.deps_type == "Orders"
    status, refused = await post(app, "/chat", {"session": "s1"})
    assert status == 400 and "message" in refused["error"]
