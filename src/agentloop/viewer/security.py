"""What keeps a page full of hostile text harmless, and the viewer's files its own.

- Every response carries a strict Content-Security-Policy: scripts and styles only from the
  viewer's own ``/static/`` files (no inline script, no inline style, no other origin), no
  frames, no plugins, forms that post only back to the viewer. Trace text is escaped by the
  templates (Jinja autoescape); the policy is the second wall if a template ever slips.
- A state-changing request (a POST) must carry this server's session token and an ``Origin``
  equal to the viewer's own, so another site open in the same browser cannot post feedback.
- Requests must name a loopback host (``Host``), which defeats DNS rebinding.
- A route names a file as ``FOLDER/RELATIVE/PATH``; ``confine`` resolves it (symbolic links
  included) and refuses anything outside the folder the viewer was given.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentloop.errors import UserError

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'; object-src 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    # not no-referrer: under it Chromium sends ``Origin: null`` with the viewer's own forms
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


class Forbidden(Exception):
    """A request the viewer refuses (bad token, foreign origin, a path outside its folders)."""


class NotFound(Exception):
    """A route named a file or run that is not there."""


class SecurityHeaders:
    """ASGI middleware that puts ``HEADERS`` on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in HEADERS.items():
                    headers[key] = value
            await send(message)

        await self.app(scope, receive, with_headers)


def check_post(request: Request, token: str, submitted: str) -> None:
    """Refuse a POST without this session's token or from another origin."""
    if not hmac.compare_digest(submitted.encode(), token.encode()):
        raise Forbidden("the form's session token is missing or stale; reload the page")
    origin = request.headers.get("origin")
    if not origin:
        raise Forbidden("the request has no Origin header")
    parts = urlsplit(origin)
    own_host = request.headers.get("host", "")
    if parts.scheme != request.url.scheme or parts.netloc != own_host:
        raise Forbidden("the request comes from another origin")


def confine(folders: Sequence[Path], ref: str, *, suffix: str | None = ".jsonl") -> Path:
    """The file (or with ``suffix=None`` the folder) that ``ref`` (``N/RELATIVE/PATH``) names,
    resolved, inside folder N; ``Forbidden`` if it lies outside, ``NotFound`` if absent."""
    number, _, rel = ref.partition("/")
    if not number.isdigit() or int(number) >= len(folders):
        raise NotFound(f"no trace folder {number!r}")
    if "\x00" in rel or "\\" in rel:
        raise Forbidden("the path holds a character paths here never hold")
    root = folders[int(number)]
    candidate = (root / rel).resolve()
    if not candidate.is_relative_to(root):
        raise Forbidden("the path leads outside the viewer's folders")
    if suffix is not None and (candidate.suffix != suffix or not candidate.is_file()):
        raise NotFound(f"no trace {rel!r} in folder {number}")
    if suffix is None and not candidate.is_dir():
        raise NotFound(f"no folder {rel!r} in folder {number}")
    return candidate


def loopback_only(host: str) -> None:
    """The viewer serves people on this machine only: refuse to bind anything else."""
    if host not in (*LOOPBACK_HOSTS, "::1"):
        raise UserError(f"the viewer binds only to loopback (127.0.0.1), not {host}")
