"""Load tools by path or by name: what ``agentloop run --tools REF`` and agent files do.

A reference is a path (a ``.py`` file, or a folder of them) or an importable name: a module
(``agentloop.toolpack.calculator``: its module-level tools), a package
(``agentloop.toolpack``: the tools of each of its public modules) or ``module:attribute`` (a
tool, a plain function, or a list or ``Toolset`` of them). A path that exists wins over a name.

A tool file is a plain module; every module-level ``Tool`` in it (what ``@tool`` or
``Tool.from_schema`` builds) is offered to the agent, in definition order. A folder means every
``.py`` file directly in it, in name order, except files whose name starts with ``_`` (helpers).
Each file is imported on its own under a unique module name, not as part of a package, and the
folder is not put on ``sys.path``: share code between tool files through an installed package.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from agentloop.errors import UserError
from agentloop.tools import Tool, Toolset

MODULE_PREFIX = "agentloop_tools"
"""Tool files are imported as ``agentloop_tools_<stem>_<hash of the path>``."""


class ToolLoadError(UserError):
    """A tool path is missing, a tool file fails to import, or it defines no tools."""


_NAME = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?\Z")


def load_tools(
    refs: Iterable[str | Path], base: Path | None = None
) -> list[Tool | Callable[..., Any]]:
    """Every tool ``refs`` name (paths relative to ``base``, else to the working folder), in
    order; the same object only once.

    Names are not checked here: ``Toolset`` rejects two different tools with one name.
    """
    found: list[Tool | Callable[..., Any]] = []
    seen: set[Path] = set()
    for ref in refs:
        path = Path(ref)
        if base is not None and not path.is_absolute():
            path = base / path
        if isinstance(ref, str) and _is_name(ref) and not path.exists():
            found.extend(t for t in imported_tools(ref) if all(t is not f for f in found))
            continue
        for file in tool_files(path):
            if file.resolve() not in seen:
                seen.add(file.resolve())
                found.extend(t for t in tools_in_file(file) if all(t is not f for f in found))
    return found


def _is_name(ref: str) -> bool:
    """``ref`` reads as an importable name, not a path (``.py`` files are always paths)."""
    return bool(_NAME.match(ref)) and not ref.endswith(".py")


def imported_tools(ref: str) -> list[Tool | Callable[..., Any]]:
    """The tools an importable name refers to: ``module:attribute``, a module or a package."""
    module_name, _, attribute = ref.partition(":")
    module = _import(ref, module_name)
    if not attribute:
        if hasattr(module, "__path__"):  # a package: the tools of each public module in it
            names = sorted(m.name for m in pkgutil.iter_modules(module.__path__))
            modules = [_import(ref, f"{module_name}.{n}") for n in names if not n.startswith("_")]
        else:
            modules = [module]
        tools = [v for m in modules for v in vars(m).values() if isinstance(v, Tool)]
        if not tools:
            raise ToolLoadError(f"tool reference {ref!r}: {module_name} defines no tools")
        return list(tools)
    value = getattr(module, attribute, None)
    if isinstance(value, Toolset):
        return list(value.values())
    if isinstance(value, list | tuple) and all(isinstance(v, Tool) or callable(v) for v in value):
        return list(value)
    if isinstance(value, Tool) or callable(value):
        return [value]
    raise ToolLoadError(
        f"tool reference {ref!r}: {module_name} has no tool, function or list of tools "
        f"named {attribute!r}"
    )


def _import(ref: str, module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        hint = ""
        if module_name.startswith("agentloop.toolpack"):
            hint = " (the tool pack needs: pip install 'agentloop[tools]')"
        raise ToolLoadError(
            f"tool reference {ref!r}: cannot import {module_name}: {exc}{hint}; "
            "a path that does not exist is read as a module name"
        ) from exc


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
