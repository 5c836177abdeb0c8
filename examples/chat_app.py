"""An app that embeds an agent: a Starlette chat endpoint (``pip install starlette``).

One ``Conversation`` per session, a typed reply, a database handle for the tools (``deps``), a
token budget per conversation, and a hook that strips e-mail addresses from tool results before
the model sees them. Run it with any ASGI server, e.g.
``uvicorn --factory examples.chat_app:app_from_env`` (``OPENAI_BASE_URL`` and
``OPENAI_API_KEY`` choose the endpoint, ``CHAT_MODEL`` the model). ``tests/test_chat_app.py``
drives it through its ASGI interface.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import pydantic
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agentloop import Agent, AgentLoopError, Conversation, Hooks, Model, RunContext, RunLimits, tool

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


@dataclass
class Orders:
    """The app's database (a dict here; a connection pool in a real app)."""

    rows: dict[str, dict[str, str]] = field(default_factory=dict)


class Reply(pydantic.BaseModel):
    """What the endpoint returns: the answer, and whether a human should follow up."""

    answer: str
    needs_human: bool


@tool
def order_status(ctx: RunContext[Orders], order_id: str) -> str:
    """The status of an order, with the customer's contact details.

    Args:
        order_id: The order number, e.g. A-1001.
    """
    row = ctx.deps.rows.get(order_id)
    if row is None:
        return f"no order {order_id}"
    return f"order {order_id}: {row['status']} (customer {row['email']})"


def strip_emails(ctx: RunContext[Orders], call: Any, content: str) -> str:
    """PII stays out of the model's context (the trace keeps the raw result)."""
    return EMAIL.sub("[email]", content)


def create_app(model: Model | str, orders: Orders, trace_dir: str = "traces") -> Starlette:
    agent = Agent(
        model,
        tools=[order_status],
        instructions="You answer questions about orders. Look orders up; never guess.",
        output_type=Reply,
        hooks=Hooks(after_tool_call=[strip_emails]),
        trace_dir=trace_dir,
    )
    sessions: dict[str, Conversation[Reply]] = {}

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        session = str(body.get("session", ""))
        message = str(body.get("message", "")).strip()
        if not session or not message:
            return JSONResponse({"error": "send a session and a message"}, status_code=400)
        conversation = sessions.setdefault(
            session,
            Conversation(agent, session, limits=RunLimits(max_total_tokens=50_000)),
        )
        try:
            result = await conversation.run(message, deps=orders)
        except AgentLoopError as exc:
            return JSONResponse(
                {"error": type(exc).__name__, "trace": str(exc.trace_path)}, status_code=502
            )
        assert result.output is not None
        return JSONResponse(
            {**result.output.model_dump(), "turn": len(conversation.results), "run": result.run_id}
        )

    return Starlette(routes=[Route("/chat", chat, methods=["POST"])])


def app_from_env() -> Starlette:
    """The app with the model ``CHAT_MODEL`` names and a one-order database."""
    return create_app(
        os.environ.get("CHAT_MODEL", "openai:gpt-4o-mini"),
        Orders({"A-1001": {"status": "shipped", "email": "ada@example.com"}}),
    )
