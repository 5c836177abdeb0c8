"""The web_search tool with a fake ddgs backend: results, no results, timeouts, rate limits.
No test reaches the internet: every search goes to ``FakeDDGS``."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from ddgs.ddgs import DDGS
from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

from agentloop import Agent, ModelResponse, ToolRetry, read_trace
from agentloop.testing import ScriptedModel
from toolpack import load

search = load("web_search")

RESULTS = [
    {"title": "Sea otter - Wikipedia", "href": "https://en.wikipedia.org/wiki/Sea_otter",
     "body": "The sea otter is a marine mammal\n native to the coasts of the northern Pacific."},
    {"title": "Otters hold hands", "href": "https://example.org/otters", "body": ""},
    {"title": "Third", "href": "https://example.org/3", "body": "three"},
]  # fmt: skip


class FakeDDGS:
    """Plays a script: each item is a result list to return or an exception to raise."""

    def __init__(self, script: list[list[dict[str, Any]] | Exception]) -> None:
        self.script = script
        self.calls: list[tuple[str, dict[str, Any], int, str]] = []

    def factory(self, timeout: int) -> FakeDDGS:
        self.timeout = timeout
        return self

    def text(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append((query, kwargs, self.timeout, threading.current_thread().name))
        step = self.script[len(self.calls) - 1]
        if isinstance(step, Exception):
            raise step
        return step


def tool_for(fake: FakeDDGS) -> Any:
    return search.make_search_tool(ddgs_factory=fake.factory, timeout=3)


def test_returns_title_url_and_snippet_of_the_top_results() -> None:
    fake = FakeDDGS([RESULTS])
    text = tool_for(fake)(query="sea otters", max_results=2)
    assert text == (
        "1. Sea otter - Wikipedia\n"
        "   URL: https://en.wikipedia.org/wiki/Sea_otter\n"
        "   The sea otter is a marine mammal native to the coasts of the northern Pacific.\n"
        "2. Otters hold hands\n"
        "   URL: https://example.org/otters"
    )
    [(query, kwargs, timeout, _)] = fake.calls
    assert (query, kwargs["max_results"], timeout) == ("sea otters", 2, 3)


def test_max_results_is_clamped() -> None:
    fake = FakeDDGS([RESULTS, RESULTS])
    tool_for(fake)(query="q", max_results=500)
    tool_for(fake)(query="q", max_results=0)
    assert [c[1]["max_results"] for c in fake.calls] == [10, 1]


@pytest.mark.parametrize(
    "script",
    [[DDGSException("No results found.")], [[]]],
    ids=["ddgs-raises-no-results", "empty-list"],
)
def test_no_results_is_data_not_a_crash(script: list[Any]) -> None:
    fake = FakeDDGS(script)
    assert tool_for(fake)(query="xyzzy plugh") == "No results for 'xyzzy plugh'; try other words."
    assert len(fake.calls) == 1


def test_a_timeout_is_retried_once() -> None:
    fake = FakeDDGS([TimeoutException("timed out"), RESULTS])
    assert tool_for(fake)(query="otters").startswith("1. Sea otter")
    assert len(fake.calls) == 2


def test_a_second_timeout_is_reported_and_not_retried_again() -> None:
    fake = FakeDDGS([TimeoutException("timed out"), TimeoutException("timed out"), RESULTS])
    assert "timed out twice" in tool_for(fake)(query="otters")
    assert len(fake.calls) == 2


def test_a_rate_limit_is_reported_without_retrying() -> None:
    fake = FakeDDGS([RatelimitException("202 Ratelimit"), RESULTS])
    assert "rate-limited" in tool_for(fake)(query="otters")
    assert len(fake.calls) == 1


def test_other_search_errors_do_not_leak_their_details() -> None:
    fake = FakeDDGS([DDGSException("https://internal.example/?token=abc failed")])
    text = tool_for(fake)(query="otters")
    assert text == "Search for 'otters' failed (DDGSException); try again later."


def test_an_empty_query_is_a_mistake_the_model_can_fix() -> None:
    fake = FakeDDGS([])
    with pytest.raises(ToolRetry, match="query is empty"):
        tool_for(fake)(query="   ")
    assert fake.calls == []


async def test_in_a_run_the_search_runs_off_the_event_loop(tmp_path: Path) -> None:
    fake = FakeDDGS([DDGSException("No results found."), TimeoutException("t"), RESULTS])
    model = ScriptedModel(
        [
            ModelResponse.tool_call("web_search", {"query": "xyzzy"}),
            ModelResponse.tool_call("web_search", {"query": "sea otters", "max_results": 1}),
            "Sea otters live in the northern Pacific.",
        ]
    )
    result = await Agent(model, tools=[tool_for(fake)], trace_dir=tmp_path).run("otters?")
    assert result.output.startswith("Sea otters")
    loop_thread = threading.current_thread().name
    assert all(thread != loop_thread for *_, thread in fake.calls)
    assert result.trace_path is not None
    results = read_trace(result.trace_path).tool_results()
    assert [(r.error, r.content.splitlines()[0]) for r in results] == [
        (None, "No results for 'xyzzy'; try other words."),
        (None, "1. Sea otter - Wikipedia"),
    ]
    assert all(r.untrusted for r in results)


def test_the_default_backend_is_ddgs() -> None:
    backend = search._ddgs(7)
    assert isinstance(backend, DDGS)
    assert search.web_search.name == "web_search"
    assert set(search.web_search.parameters["properties"]) == {"query", "max_results"}
