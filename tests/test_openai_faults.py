"""HTTP faults between ``OpenAIModel`` and an OpenAI-compatible server, over real loopback HTTP.

Each fault is injected by the fake server (tests/fakes): rate limits, server errors, refused
and dropped connections, stalls, context overflow, auth errors, malformed bodies. The model
has one retry layer; these tests pin what it retries, how long it waits, what it records in
``attempts``, which typed error it raises, and (through an ``Agent``) how the trace ends.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from agentloop import Agent, AgentLoopError
from agentloop.errors import (
    ContextWindowExceeded,
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelNotFoundError,
    ModelRateLimited,
    ModelResponseError,
    ModelTimeoutError,
)
from agentloop.events import ModelResponded
from agentloop.messages import RequestAttempt, UserMessage
from agentloop.models.openai_wire import retry_after as _retry_after
from agentloop.settings import ModelSettings
from agentloop.tools import Toolset
from fakes import (
    CLOSE,
    STALL,
    STALL_AFTER_HEADERS,
    TRUNCATE_BODY,
    FakeOpenAIServer,
    Reply,
    answer,
    error,
    raw,
    refused_url,
)
from fakes.runs import API_KEY, MODEL_NAME, failed_trace, fast_model, finished_trace

pytestmark = pytest.mark.usefixtures("_close_openai_models")


async def ask(model: Any) -> Any:
    return await model.request([UserMessage(content="hi")], Toolset(), ModelSettings())


async def failing_run(agent: Agent) -> AgentLoopError:
    with pytest.raises(AgentLoopError) as caught:
        await agent.run("hi")
    return caught.value


def attempts_of(exc: BaseException) -> tuple[RequestAttempt, ...]:
    attempts: tuple[RequestAttempt, ...] = getattr(exc, "attempts", ())
    return attempts


# -- 429 and Retry-After ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "1"}, 1.0),
        ({"retry-after-ms": "300"}, 0.3),
        ({"Retry-After": "0.3"}, 0.3),
    ],
    ids=["seconds", "milliseconds", "fraction"],
)
async def test_429_with_retry_after_waits_then_succeeds(
    openai_server: FakeOpenAIServer, tmp_path: Any, headers: dict[str, str], wait: float
) -> None:
    openai_server.script(error(429, "slow down", code="rate_limit", headers=headers), answer("ok"))
    agent = Agent(fast_model(openai_server.url, max_retry_after=5), trace_dir=tmp_path)
    started = time.perf_counter()
    result = await agent.run("hi")
    assert time.perf_counter() - started >= wait - 0.01  # timers may fire a hair early
    assert result.output == "ok"
    assert len(openai_server.requests) == 2
    trace = finished_trace(result)
    [responded] = [e for e in trace.events if isinstance(e, ModelResponded)]
    [attempt] = responded.response.attempts
    assert (attempt.attempt, attempt.status, attempt.delay_s) == (1, 429, wait)
    assert "429" in attempt.error and "slow down" in attempt.error


async def test_429_with_retry_after_beyond_the_cap_fails_at_once(
    openai_server: FakeOpenAIServer, tmp_path: Any
) -> None:
    openai_server.script(error(429, "come back later", headers={"Retry-After": "600"}))
    agent = Agent(fast_model(openai_server.url, max_retry_after=5), trace_dir=tmp_path)
    started = time.perf_counter()
    exc = await failing_run(agent)
    assert time.perf_counter() - started < 2
    assert len(openai_server.requests) == 1
    assert isinstance(exc, ModelRateLimited) and exc.status == 429
    assert [a.status for a in attempts_of(exc)] == [429]
    _, end = failed_trace(exc, ModelRateLimited)
    assert [a.status for a in end.attempts] == [429]


async def test_429_without_retry_after_backs_off_and_gives_up_after_max_retries(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.script(*[error(429, "busy")] * 3)
    with pytest.raises(ModelRateLimited) as caught:
        await ask(fast_model(openai_server.url, max_retries=2))
    attempts = attempts_of(caught.value)
    assert [a.status for a in attempts] == [429, 429, 429]
    assert all(0 < a.delay_s <= 0.05 for a in attempts[:2])
    assert attempts[-1].delay_s == 0  # the last try is not followed by a wait


@pytest.mark.parametrize(
    "value",
    ["soon", "Wed, 99 Foo 2015 07:28:00 GMT", "", "-5"],
    ids=["word", "bad-date", "empty", "negative"],
)
async def test_unreadable_retry_after_falls_back_to_backoff(
    openai_server: FakeOpenAIServer, value: str
) -> None:
    openai_server.script(error(429, "busy", headers={"Retry-After": value}), answer("ok"))
    response = await ask(fast_model(openai_server.url))
    assert response.text == "ok"
    [attempt] = response.attempts
    assert 0 <= attempt.delay_s <= 0.05


def test_retry_after_reads_seconds_milliseconds_and_http_dates() -> None:
    import email.utils

    import httpx2

    in_two = email.utils.formatdate(time.time() + 2, usegmt=True)
    assert 0.5 < (_retry_after(httpx2.Headers({"Retry-After": in_two})) or 0) <= 2.0
    assert _retry_after(httpx2.Headers({"Retry-After": "3"})) == 3.0
    assert _retry_after(httpx2.Headers({"retry-after-ms": "250", "Retry-After": "9"})) == 0.25
    assert _retry_after(httpx2.Headers({"Retry-After": "Mon, 01 Jan 2001 00:00:00 GMT"})) == 0
    assert _retry_after(httpx2.Headers({"Retry-After": "-0000 nonsense"})) is None
    assert _retry_after(httpx2.Headers({})) is None


# -- server errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_twice_then_success_backs_off_exponentially(
    openai_server: FakeOpenAIServer, tmp_path: Any, status: int
) -> None:
    openai_server.script(error(status, "upstream down"), error(status, "still down"), answer("ok"))
    model = fast_model(openai_server.url, backoff=0.02, max_backoff=1.0)
    result = await Agent(model, trace_dir=tmp_path).run("hi")
    assert result.output == "ok"
    assert len(openai_server.requests) == 3
    [responded] = [e for e in finished_trace(result).events if isinstance(e, ModelResponded)]
    first, second = responded.response.attempts
    assert (first.attempt, first.status, second.attempt, second.status) == (1, status, 2, status)
    assert 0.01 <= first.delay_s <= 0.02  # backoff * 2**0 with jitter in [1/2, 1]
    assert 0.02 <= second.delay_s <= 0.04  # backoff * 2**1
    assert "still down" in second.error


async def test_server_errors_are_retried_max_retries_times_then_raised(
    openai_server: FakeOpenAIServer, tmp_path: Any
) -> None:
    openai_server.script(*[error(503, "overloaded")] * 3)
    agent = Agent(fast_model(openai_server.url, max_retries=2), trace_dir=tmp_path)
    exc = await failing_run(agent)
    assert isinstance(exc, ModelHTTPError) and exc.status == 503
    assert "overloaded" in str(exc)
    assert len(openai_server.requests) == 3
    _, end = failed_trace(exc, ModelHTTPError)
    assert [a.attempt for a in end.attempts] == [1, 2, 3]


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, ModelHTTPError), (404, ModelNotFoundError), (422, ModelHTTPError)],
)
async def test_client_errors_are_not_retried(
    openai_server: FakeOpenAIServer, status: int, kind: type[ModelHTTPError]
) -> None:
    openai_server.script(error(status, "bad tool schema"))
    with pytest.raises(kind) as caught:
        await ask(fast_model(openai_server.url))
    assert caught.value.status == status
    assert "bad tool schema" in str(caught.value)
    assert len(openai_server.requests) == 1


# -- connections ----------------------------------------------------------------------------


async def test_connection_refused_retries_a_bounded_number_of_times(tmp_path: Any) -> None:
    with refused_url() as url:
        agent = Agent(fast_model(url, max_retries=2), trace_dir=tmp_path)
        started = time.perf_counter()
        exc = await failing_run(agent)
    assert time.perf_counter() - started < 3
    assert isinstance(exc, ModelConnectionError)
    assert url in str(exc)
    assert [a.attempt for a in attempts_of(exc)] == [1, 2, 3]
    _, end = failed_trace(exc, ModelConnectionError)
    assert len(end.attempts) == 3 and url in end.message


@pytest.mark.parametrize("fault", [CLOSE, TRUNCATE_BODY], ids=["dropped", "cut-short"])
async def test_a_dropped_connection_is_retried(
    openai_server: FakeOpenAIServer, fault: Reply
) -> None:
    openai_server.script(fault, answer("ok"))
    response = await ask(fast_model(openai_server.url))
    assert response.text == "ok"
    [attempt] = response.attempts
    assert attempt.status is None and "connection to" in attempt.error
    assert len(openai_server.requests) == 2


async def test_dropped_every_time_raises_connection_error(openai_server: FakeOpenAIServer) -> None:
    openai_server.script(CLOSE, CLOSE)
    with pytest.raises(ModelConnectionError, match=openai_server.url):
        await ask(fast_model(openai_server.url, max_retries=1))


# -- stalls and timeouts -----------------------------------------------------------------------


@pytest.mark.parametrize("stall", [STALL, STALL_AFTER_HEADERS], ids=["no-answer", "no-body"])
async def test_a_stalled_server_times_out_with_bounded_retries(
    openai_server: FakeOpenAIServer, tmp_path: Any, stall: Reply
) -> None:
    openai_server.script(stall, stall)
    model = fast_model(openai_server.url, timeout=0.2, max_retries=1)
    started = time.perf_counter()
    exc = await failing_run(Agent(model, trace_dir=tmp_path))
    elapsed = time.perf_counter() - started
    assert 0.38 <= elapsed < 2.0
    assert isinstance(exc, ModelTimeoutError)
    assert "0.2 s" in str(exc) and openai_server.url in str(exc)
    assert len(openai_server.requests) == 2
    _, end = failed_trace(exc, ModelTimeoutError)
    assert [a.attempt for a in end.attempts] == [1, 2]


async def test_a_stall_once_is_retried(openai_server: FakeOpenAIServer) -> None:
    openai_server.script(STALL, answer("ok"))
    response = await ask(fast_model(openai_server.url, timeout=0.2))
    assert response.text == "ok"
    [attempt] = response.attempts
    assert "timeout" in attempt.error


async def test_a_slow_answer_within_the_timeout_is_not_a_fault(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.script(Reply(body=answer("late").body, delay=0.1))
    response = await ask(fast_model(openai_server.url, timeout=1.0))
    assert (response.text, response.attempts) == ("late", ())


async def test_cancelling_a_stalled_request_propagates(openai_server: FakeOpenAIServer) -> None:
    openai_server.script(STALL)
    task = asyncio.ensure_future(ask(fast_model(openai_server.url, timeout=30)))
    while not openai_server.requests:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- context overflow ----------------------------------------------------------------------------


OVERFLOW_BODIES = {
    "openai": {
        "error": {
            "message": "This model's maximum context length is 8192 tokens. However, your "
            "messages resulted in 9000 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    },
    "vllm-flat": {
        "object": "error",
        "message": "This model's maximum context length is 4096 tokens. However, you "
        "requested 5000 tokens (4000 in the messages, 1000 in the completion).",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    },
    "vllm-nested": {
        "error": {
            "message": "This model's maximum context length is 4096 tokens.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }
    },
    "llama.cpp": {
        "error": {
            "code": 400,
            "message": "the request exceeds the available context size, try increasing it",
            "type": "exceed_context_size_error",
        }
    },
}


@pytest.mark.parametrize("style", list(OVERFLOW_BODIES))
async def test_context_length_exceeded_is_typed_and_never_retried(
    openai_server: FakeOpenAIServer, tmp_path: Any, style: str
) -> None:
    openai_server.script(Reply(status=400, body=OVERFLOW_BODIES[style]))
    exc = await failing_run(Agent(fast_model(openai_server.url), trace_dir=tmp_path))
    assert isinstance(exc, ContextWindowExceeded) and exc.status == 400
    assert len(openai_server.requests) == 1
    _, end = failed_trace(exc, ContextWindowExceeded)
    assert [a.status for a in end.attempts] == [400]


# -- auth and not found ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_are_not_retried_and_never_echo_the_key(
    openai_server: FakeOpenAIServer, tmp_path: Any, status: int
) -> None:
    openai_server.script(error(status, f"Incorrect API key provided: {API_KEY}"))
    exc = await failing_run(Agent(fast_model(openai_server.url), trace_dir=tmp_path))
    assert isinstance(exc, ModelAuthError) and exc.status == status
    assert len(openai_server.requests) == 1
    message = str(exc)
    assert MODEL_NAME in message and openai_server.url in message
    assert API_KEY not in message and API_KEY not in repr(attempts_of(exc))
    assert openai_server.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    trace, _ = failed_trace(exc, ModelAuthError)
    assert API_KEY not in trace.model_dump_json()


async def test_404_is_model_not_found_with_the_key_masked(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.script(error(404, f"The model {MODEL_NAME} does not exist for key {API_KEY}"))
    with pytest.raises(ModelNotFoundError) as caught:
        await ask(fast_model(openai_server.url))
    assert "does not exist" in str(caught.value) and API_KEY not in str(caught.value)
    assert len(openai_server.requests) == 1


async def test_a_wrong_base_url_path_is_model_not_found(openai_server: FakeOpenAIServer) -> None:
    base_without_v1 = openai_server.url.removesuffix("/v1")
    with pytest.raises(ModelNotFoundError, match="wrong base_url"):
        await ask(fast_model(base_without_v1))
    assert [r.path for r in openai_server.requests] == ["/chat/completions"]


# -- bodies that are not chat completions ----------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (raw("<html>502 Bad Gateway</html>", content_type="text/html"), "not JSON"),
        (raw(b"\xff\xfe not utf-8"), "not JSON"),
        (raw(""), "not JSON"),
        (Reply(body={"choices": []}), "'choices' is empty"),
        (Reply(body={"object": "chat.completion"}), "no 'choices' field"),
        (Reply(body={"choices": [{"index": 0}]}), "no 'message' field"),
        (Reply(body=[1, 2]), "wrong type"),
        (Reply(body={"choices": [{"message": "hello"}]}), "wrong type"),
        (Reply(body={"choices": [{"message": {"tool_calls": "add"}}]}), "wrong type"),
        (Reply(body={"choices": [{"message": {"tool_calls": [{"function": "x"}]}}]}), "wrong"),
        (Reply(body={"choices": [{"message": {}, "finish_reason": 7}]}), "finish_reason"),
    ],
    ids=[
        "html",
        "binary",
        "empty-body",
        "no-choices",
        "missing-choices",
        "no-message",
        "array",
        "message-is-text",
        "tool-calls-is-text",
        "function-is-text",
        "finish-reason-number",
    ],
)
async def test_a_body_that_is_not_a_chat_completion_is_a_clear_response_error(
    openai_server: FakeOpenAIServer, tmp_path: Any, reply: Reply, problem: str
) -> None:
    openai_server.script(reply)
    exc = await failing_run(Agent(fast_model(openai_server.url), trace_dir=tmp_path))
    assert isinstance(exc, ModelResponseError)
    message = str(exc)
    assert "malformed response" in message and problem in message
    assert openai_server.url in message and MODEL_NAME in message
    assert len(openai_server.requests) == 1  # a 200 is an answer: not retried
    failed_trace(exc, ModelResponseError)


async def test_a_malformed_body_after_retries_keeps_the_attempts(
    openai_server: FakeOpenAIServer, tmp_path: Any
) -> None:
    openai_server.script(error(503, "busy"), raw("oops"))
    exc = await failing_run(Agent(fast_model(openai_server.url), trace_dir=tmp_path))
    _, end = failed_trace(exc, ModelResponseError)
    assert [a.status for a in end.attempts] == [503]


async def test_the_malformed_body_quoted_in_the_error_has_the_key_masked(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.script(raw(f"proxy error for Authorization: Bearer {API_KEY}"))
    with pytest.raises(ModelResponseError) as caught:
        await ask(fast_model(openai_server.url))
    assert "proxy error" in str(caught.value) and API_KEY not in str(caught.value)


def test_every_model_error_names_the_model_and_endpoint() -> None:
    exc = ModelError("boom", model="m", endpoint="http://127.0.0.1:1/v1")
    assert str(exc) == "boom (model='m', http://127.0.0.1:1/v1)"
