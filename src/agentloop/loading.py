"""Load tools from Python files by path: what ``agentloop run --tools PATH`` does.

A tool file is a plain module; every module-level ``Tool`` in it (what ``@tool`` or
``Tool.from_schema`` builds) is offered to the agent, in definition order. A folder means every
``.py`` file directly in it, in name order, except files whose name starts with ``_`` (helpers).
Each file is imported on its own under a unique module name, not as part of a package, and the
folder is not put on ``sys.path``: share code between tool files through an installed package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from agentloop.errors import UserError
from agentloop.tools import Tool

MODULE_PREFIX = "agentloop_tools"
"""Tool files are imported as ``agentloop_tools_<stem>_<hash of the path>``."""


class ToolLoadError(UserError):
    """A tool path is missing, a tool file fails to import, or it defines no tools."""


def load_tools(paths: Iterable[str | Path]) -> list[Tool]:
    """Every tool in ``paths`` (files or folders), in order; the same object only once.

    Names are not checked here: ``Toolset`` rejects two different tools with one name.
    """
    found: list[Tool] = []
    seen: set[Path] = set()
    for path in paths:
        for file in tool_files(Path(path)):
            if file.resolve() not in seen:
                seen.add(file.resolve())
                found.extend(t for t in tools_in_file(file) if all(t is not f for f in found))
    return found


def tool_files(path: Path) -> list[Path]:
    """``path`` itself if it is a file, else the tool files directly in the folder."""
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.suffix == ".py" and not p.name.startswith("_")
        )
        files = [p for p in files if p.is_file()]
        if not files:
            raise ToolLoadError(
                f"tools folder {path} has no .py files (names starting with '_' are skipped)"
            )
        return files
    if path.is_file():
        return [path]
    raise ToolLoadError(f"tools path {path} does not exist")


def tools_in_file(file: Path) -> list[Tool]:
    """Import ``file`` and return its module-level tools; raise ``ToolLoadError`` if it fails
    to import or holds no tool."""
    module_name = _module_name(file)
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ToolLoadError(f"cannot import {file}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pydantic look their module up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        where = _line_in(file, exc)
        raise ToolLoadError(
            f"cannot import tool file {file}{where}: {type(exc).__name__}: {exc}"
        ) from exc
    tools = [value for value in vars(module).values() if isinstance(value, Tool)]
    if not tools:
        raise ToolLoadError(
            f"tool file {file} defines no tools: decorate functions with @agentloop.tool "
            "at module level"
        )
    return tools


def _module_name(file: Path) -> str:
    digest = hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:10]
    stem = re.sub(r"\W", "_", file.stem)
    return f"{MODULE_PREFIX}_{stem}_{digest}"


def _line_in(file: Path, exc: BaseException) -> str:
    """`` (line N)``: where in ``file`` the import failed, if the traceback or syntax error
    says."""
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        return f" (line {exc.lineno})"
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == file:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" (line {line})" if line is not None else ""
