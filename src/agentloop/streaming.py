"""A run watched as it happens: the answer's text as it is generated, each tool step as it
starts and ends.

``Agent.stream`` returns an ``AgentStream``::

    async with agent.stream("What is 6 * 7?") as run:
        async for event in run:
            if isinstance(event, TextGenerated):
                print(event.text, end="", flush=True)
    result = run.result()

It runs the ordinary loop, with the model asked through ``Model.request_stream`` (the one
difference from ``Agent.run``), and turns what happens into ``StreamEvent``\\s: text pieces,
validated tool calls, their results, finished steps, and the final output. The trace is the
same as an unstreamed run's (plus each response's time to first token); the text pieces are
not journaled. Leaving the block before the end cancels the run: the model's HTTP stream is
closed, the trace ends with ``run_cancelled`` and keeps the partial text.

``Agent.stream_sync`` is the same for blocking code: ``with agent.stream_sync(task) as run:
for event in run: ...``, the run going on in a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

from agentloop.deltas import DeltaListener, ModelDelta, TextDelta, delta_listener
from agentloop.errors import ModelResponseError, UserError
from agentloop.events import (
    BaseEvent,
    EventListener,
    ModelRequested,
    ModelResponded,
    RunFinished,
    StreamInterrupted,
    ToolCallRequested,
    ToolResultRecorded,
)
from agentloop.messages import ModelResponse
from agentloop.observations import ErrorKind
from agentloop.settings import ModelSettings

if TYPE_CHECKING:
    from agentloop.models.base import Model
    from agentloop.steered import Steered

__all__ = [
    "AgentStream",
    "OutputProduced",
    "StepFinished",
    "StreamEvent",
    "SyncAgentStream",
    "TextGenerated",
    "ToolCallFinished",
    "ToolCallStarted",
]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TextGenerated:
    """A piece of the model's text, as it arrives (for the JSON action protocol: of the
    answer). A step that ends in tool calls may also have text."""

    step: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    """The model asked for a tool call and it was validated: ``valid`` (and ``arguments``)
    if the tool will run, else ``rejection`` says why not (the model is told)."""

    step: int
    call_id: str
    name: str
    arguments: dict[str, Any] | None
    valid: bool
    rejection: str | None


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    """A tool call's result, as the model will see it (``error`` when it failed)."""

    step: int
    call_id: str
    name: str
    content: str
    error: ErrorKind | None
    duration_ms: float


@dataclass(frozen=True, slots=True)
class StepFinished:
    """A step ended: its model response and the results of the tools it called."""

    step: int
    response: ModelResponse
    tool_results: tuple[ToolCallFinished, ...]


@dataclass(frozen=True, slots=True)
class OutputProduced:
    """The run's final answer, typed when the agent has an ``output_type`` (the last event
    of a run that finished)."""

    output: Any


StreamEvent: TypeAlias = (
    TextGenerated | ToolCallStarted | ToolCallFinished | StepFinished | OutputProduced
)


class _Translator:
    """Trace events and deltas in, ``StreamEvent``\\s out (to ``put``)."""

    def __init__(self, put: Callable[[StreamEvent], None]) -> None:
        self.put = put
        self.response: ModelResponse | None = None
        self.results: list[ToolCallFinished] = []
        self.step = 0

    def delta(self, step: int, delta: ModelDelta) -> None:
        if isinstance(delta, TextDelta):
            self.put(TextGenerated(step, delta.text))

    def event(self, event: BaseEvent) -> None:
        if isinstance(event, ModelRequested):
            self.finish_step()
            self.step = event.step
        elif isinstance(event, ModelResponded):
            self.response = event.response
        elif isinstance(event, ToolCallRequested):
            self.put(
                ToolCallStarted(
                    event.step,
                    event.call_id,
                    event.name,
                    event.arguments,
                    event.valid,
                    event.rejection,
                )
            )
        elif isinstance(event, ToolResultRecorded):
            finished = ToolCallFinished(
                event.step, event.call_id, event.name, event.content, event.error, event.duration_ms
            )
            self.results.append(finished)
            self.put(finished)
        elif isinstance(event, RunFinished):
            self.finish_step()

    def finish_step(self) -> None:
        if self.response is not None:
            self.put(StepFinished(self.step, self.response, tuple(self.results)))
        self.response, self.results = None, []


async def stream_response(
    run: Steered, model: Model, settings: ModelSettings, on_delta: DeltaListener
) -> ModelResponse:
    """``model.request_stream`` for a step of ``run``, each delta passed to ``on_delta`` as it
    arrives. A stream that ends early (cancelled, broken) after something arrived leaves a
    ``stream_interrupted`` event with what had arrived. A backend that sends its response whole
    gets its time to first token measured here."""
    stream = model.request_stream(run.messages, run.tools, settings)
    text: list[str] = []
    started, first = time.perf_counter(), None
    try:
        async with aclosing(stream):
            async for item in stream:
                if isinstance(item, ModelResponse):
                    break
                if first is None:
                    first = time.perf_counter()
                if isinstance(item, TextDelta):
                    text.append(item.text)
                on_delta(run.step, item)
            else:
                raise ModelResponseError("the stream ended without a response", model=model.name)
    except BaseException as exc:
        partial = getattr(exc, "partial_text", None)
        if first is None and partial is None and not isinstance(exc, asyncio.CancelledError):
            raise  # nothing had arrived (an HTTP error, a refused connection)
        run.emit(
            StreamInterrupted,
            partial_text=partial if partial is not None else "".join(text),
            partial_tool_calls=list(getattr(exc, "partial_tool_calls", ())),
            error_type=type(exc).__name__,
            first_token_ms=(first - started) * 1000 if first is not None else None,
        )
        raise
    if item.first_token_ms is None and first is not None:
        ended = time.perf_counter()
        item = item.model_copy(
            update={
                "first_token_ms": (first - started) * 1000,
                "generation_ms": (ended - first) * 1000,
            }
        )
    return item


class AgentStream(Generic[T]):
    """A run in progress, streamed (``Agent.stream``, ``replay_stream``); ``result()`` once it
    has ended."""

    def __init__(
        self,
        start: Callable[[EventListener], Coroutine[Any, Any, T]],
        listener: EventListener | None = None,
    ) -> None:
        """``start(listener)`` runs the loop feeding ``listener`` every trace event;
        ``listener`` here sees them too (as ``Agent.run(listener=...)`` does)."""
        self._begin = start
        self._queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        self._translator = _Translator(self._queue.put_nowait)
        self._listener: EventListener = self._translator.event
        if listener is not None:

            def both(event: BaseEvent) -> None:
                listener(event)
                self._translator.event(event)

            self._listener = both
        self._task: asyncio.Task[T] | None = None

    def result(self) -> T:
        """The run's result; raises the run's error if it failed."""
        if self._task is None or not self._task.done():
            raise UserError("the run has not ended yet; iterate the stream to its end first")
        return self._task.result()

    def _start(self) -> None:
        if self._task is not None:
            return
        token = delta_listener.set(self._translator.delta)
        try:  # the task copies the context now, with the delta listener in it
            self._task = asyncio.ensure_future(self._begin(self._listener))
        finally:
            delta_listener.reset(token)
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[T]) -> None:
        if not task.cancelled() and task.exception() is None:
            output = getattr(task.result(), "output", None)
            if output is not None:
                self._queue.put_nowait(OutputProduced(output))
        self._queue.put_nowait(None)

    async def __aenter__(self) -> AgentStream[T]:
        self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.cancel()

    async def cancel(self) -> None:
        """Stop the run if it is still going (its trace records ``run_cancelled``), and wait
        until the trace is closed."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self

    async def __anext__(self) -> StreamEvent:
        self._start()
        assert self._task is not None
        event = await self._queue.get()
        if event is None:
            self._task.result()  # re-raise the run's error, if any
            raise StopAsyncIteration
        return event


class SyncAgentStream(Generic[T]):
    """``AgentStream`` for blocking code (``Agent.stream_sync``): the run goes on in a
    thread with its own event loop; leaving the ``with`` block early cancels it."""

    def __init__(self, stream: AgentStream[T]) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise UserError(
                "Agent.stream_sync() cannot run inside a running event loop; use "
                "`async with agent.stream(...)` there"
            )
        self._stream = stream
        self._events: queue.Queue[StreamEvent | BaseException | None] = queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="agentloop-stream", daemon=True)
        self._started = False
        self._ready = threading.Event()
        """Set once the run's task exists (so ``close`` can cancel it)."""

    def _run(self) -> None:
        async def pump() -> None:
            self._loop = asyncio.get_running_loop()
            try:
                self._stream._start()
            finally:
                self._ready.set()
            try:
                async with self._stream as run:
                    async for event in run:
                        self._events.put(event)
            except BaseException as exc:
                self._events.put(exc)
                return
            self._events.put(None)

        asyncio.run(pump())

    def __enter__(self) -> SyncAgentStream[T]:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel the run if it is still going and wait for its trace to close."""
        if self._started and self._thread.is_alive():
            self._ready.wait()
            loop = self._loop
            task = self._stream._task
            if loop is not None and task is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed: the run has ended
                    loop.call_soon_threadsafe(task.cancel)
            self._thread.join()

    def __iter__(self) -> Iterator[StreamEvent]:
        self.__enter__()
        while True:
            item = self._events.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def result(self) -> T:
        """The run's result; raises the run's error if it failed."""
        self._thread.join()
        return self._stream.result()
