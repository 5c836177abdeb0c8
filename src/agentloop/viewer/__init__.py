"""``agentloop view``: a local web viewer for traces and eval runs, with feedback that writes
back into the trace (the ``agentloop[view]`` extra: Starlette, Jinja2, uvicorn).

It reads the same JSONL traces as everything else, keeps an index of them in
``.agentloop-index.sqlite`` beside them, renders pages on the server with autoescaped templates
and one small script of its own, and records feedback with ``agentloop.feedback.add_feedback``.
It binds to 127.0.0.1 only. ``create_app`` builds the ASGI app; ``serve`` runs it.

Viewer layer: imports the runtime, replay, feedback and evals below it, never the tool pack or
the CLI; nothing below imports it, and ``import agentloop`` never loads the extra's packages.
"""

from __future__ import annotations

from agentloop.viewer.app import create_app
from agentloop.viewer.index import RunFilters, TraceIndex
from agentloop.viewer.serve import serve

__all__ = ["RunFilters", "TraceIndex", "create_app", "serve"]
