"""web_search: search the web with ``ddgs`` and return the top results (title, URL, snippet).

``ddgs`` (from the ``tools`` extra: ``pip install 'agentloop[tools]'``) is synchronous; a sync
tool runs in a worker thread, so the event loop is never blocked. "No results", a timeout (tried
once more) and a rate limit come back to the model as text it can act on, not as a failed run.
The results are recorded in the trace like any tool result, so a replay does not search again.

``make_search_tool(ddgs_factory=...)`` takes any callable that returns an object with a
``text(query, max_results=...)`` method, which is how tests run without a network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from agentloop import Tool, ToolRetry, tool

TIMEOUT = 10
MAX_RESULTS = 10


class SearchBackend(Protocol):
    def text(self, query: str, **kwargs: Any) -> list[dict[str, Any]]: ...


def _ddgs(timeout: int) -> SearchBackend:
    from ddgs import DDGS

    backend: SearchBackend = DDGS(timeout=timeout)
    return backend


def format_results(results: list[dict[str, Any]]) -> str:
    """Numbered results, each with its title, URL and snippet."""
    lines: list[str] = []
    for number, result in enumerate(results, start=1):
        title = str(result.get("title") or "(no title)").strip()
        url = str(result.get("href") or result.get("url") or "").strip()
        snippet = " ".join(str(result.get("body") or "").split())
        lines += [f"{number}. {title}", f"   URL: {url}"] + ([f"   {snippet}"] if snippet else [])
    return "\n".join(lines)


def make_search_tool(
    *,
    ddgs_factory: Callable[[int], SearchBackend] = _ddgs,
    timeout: int = TIMEOUT,
    region: str = "us-en",
    name: str = "web_search",
) -> Tool:
    """A ``web_search`` tool; ``ddgs_factory(timeout)`` returns the search backend."""

    @tool(name=name, timeout=3 * timeout, idempotent=True)
    def web_search(query: str, max_results: int = 5) -> str:
        """Search the web; returns the top results with their title, URL and a snippet.

        Args:
            query: What to search for, as you would type it into a search engine.
            max_results: How many results to return (1 to 10).
        """
        from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

        if not query.strip():
            raise ToolRetry("the query is empty; say what to search for")
        count = min(max(max_results, 1), MAX_RESULTS)
        for attempt in (1, 2):
            try:
                results = ddgs_factory(timeout).text(query, max_results=count, region=region)
                break
            except TimeoutException:
                if attempt == 2:
                    return f"Search for {query!r} timed out twice; try again later or rephrase."
            except RatelimitException:
                return "Search is rate-limited right now; answer from what you have or try later."
            except DDGSException as exc:
                if "no results" in str(exc).lower():
                    return f"No results for {query!r}; try other words."
                return f"Search for {query!r} failed ({type(exc).__name__}); try again later."
        if not results:
            return f"No results for {query!r}; try other words."
        return format_results(results[:count])

    return web_search


web_search = make_search_tool()
