"""fetch_url: fetch a web page over http(s) and return its readable text.

The fetch goes through ``agentloop.safety.safe_fetch``: only http and https, never to a
loopback, private, link-local, multicast, reserved or cloud-metadata address in any spelling,
connecting to the address that was checked and checking every redirect. The body is cut at a
byte cap and the text says so. HTML becomes text with ``inscriptis`` (from the ``tools`` extra:
``pip install 'agentloop[tools]'``).

``make_fetch_tool(...)`` builds the tool with other limits; its ``allow`` parameter lists
``(ip, port)`` endpoints to treat as public, which only tests should set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from agentloop import Tool, tool
from agentloop.safety import FetchedPage, FetchFailed, safe_fetch

MAX_BYTES = 2_000_000
TIMEOUT = 15.0
MAX_REDIRECTS = 5
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml")
USER_AGENT = "agentloop-fetch/0.1"


def page_text(page: FetchedPage) -> str:
    """The readable text of a fetched page: HTML converted, other text types as they are."""
    text = page.text()
    if page.content_type in ("text/html", "application/xhtml+xml") or (
        not page.content_type and text.lstrip()[:1] == "<"
    ):
        from inscriptis import get_text  # imported here: only HTML pages pay for it

        text = get_text(text)
    return text.strip()


def make_fetch_tool(
    *,
    max_bytes: int = MAX_BYTES,
    timeout: float = TIMEOUT,
    max_redirects: int = MAX_REDIRECTS,
    allow: Collection[tuple[str, int]] = (),
    name: str = "fetch_url",
) -> Tool:
    """A ``fetch_url`` tool with these limits. ``allow`` is for tests only (see the module)."""

    @tool(name=name, timeout=timeout + 5, idempotent=True)
    async def fetch_url(url: str) -> str:
        """Fetch a web page (http or https) and return its text.

        Args:
            url: The full address, starting with http:// or https://.
        """
        try:
            page = await safe_fetch(
                url,
                max_bytes=max_bytes,
                timeout=timeout,
                max_redirects=max_redirects,
                headers={"User-Agent": USER_AGENT},
                allow=allow,
            )
        except FetchFailed as exc:
            return f"Error: could not fetch {url!r}: {exc}"
        if page.content_type and not page.content_type.startswith(_TEXT_TYPES):
            return f"Error: {page.url!r} is {page.content_type!r}, not a text or HTML page"
        text = await asyncio.to_thread(page_text, page)
        lines = [f"URL: {page.url}"]
        if page.status >= 400:
            lines.append(f"HTTP status: {page.status}")
        lines += ["", text or "(no text on the page)"]
        if page.truncated:
            lines.append(f"\n[truncated: the page is longer than {max_bytes} bytes]")
        return "\n".join(lines)

    return fetch_url


fetch_url = make_fetch_tool()
