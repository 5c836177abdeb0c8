"""Loading the tool pack's modules (``src/agentloop/toolpack/``) by path, each a fresh module."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).resolve().parents[1] / "src" / "agentloop" / "toolpack"


def load(name: str) -> ModuleType:
    """Import ``toolpack/<name>.py`` as a fresh module of its own."""
    spec = importlib.util.spec_from_file_location(f"toolpack_test_{name}", TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
