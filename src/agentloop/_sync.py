"""The thin sync door: run one coroutine to completion from blocking code."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from agentloop.errors import UserError

T = TypeVar("T")
P = ParamSpec("P")


def run_blocking(
    function: Callable[..., Coroutine[Any, Any, T]], *args: Any, what: str, use: str, **kwargs: Any
) -> T:
    """``asyncio.run(function(*args, **kwargs))``, or a ``UserError`` naming ``what`` and the
    async form to ``use`` when an event loop is already running in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(function(*args, **kwargs))
    raise UserError(
        f"{what} cannot run inside a running event loop (async code, Jupyter); use `{use}` there"
    )


def blocking(function: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """The sync door to an async function ``<name>``: ``<name>_sync``, with the same
    parameters (type checkers see them) and docstring, run to completion by ``run_blocking``."""
    name = f"{function.__name__}_sync"
    what, use = f"{name}()", f"await {function.__name__}(...)"

    @functools.wraps(function)
    def door(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_blocking(function, *args, what=what, use=use, **kwargs)

    door.__name__ = door.__qualname__ = name
    return door
