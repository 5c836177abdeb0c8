"""The thin sync door: run one coroutine to completion from blocking code."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from agentloop.errors import UserError

T = TypeVar("T")


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
