"""Scorers named on the command line: ``contains:ignore_case=true``, ``judge:model=...``,
``my_scorers.py[:function]``, and the spec that rebuilds a scorer for ``rescore``.

Evals layer; builds on ``scorers`` (the built-ins) and ``judge`` (the model-judged scorer).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

from agentloop.evals.judge import JudgeScorer
from agentloop.evals.scorers import BuiltinScorer, Scorer, ScorerError
from agentloop.feedback.critique import RUBRICS


def parse_scorer(spec: str, base: Path | None = None) -> list[Scorer]:
    """The scorers a command-line spec names (a file may hold several)."""
    head, _, rest = spec.partition(":")
    if head.endswith(".py"):
        path = Path(head)
        if base is not None and not path.is_absolute():
            path = base / path
        return load_scorer_file(path, rest or None)
    options = _options(spec, rest)
    name = options.pop("name", None)
    if head == "judge":
        return [_judge(spec, options, name, base)]
    return [BuiltinScorer(head, options, str(name) if name is not None else None)]


def _judge(spec: str, options: dict[str, Any], name: Any, base: Path | None) -> Scorer:
    """``judge:model=MODEL[,rubric=FILE|NAME][,threshold=X]``: the model-judged scorer (a
    built-in rubric by name: ``default``, ``grounded``)."""
    unknown = set(options) - {"model", "rubric", "threshold"}
    if "model" not in options or unknown:
        raise ScorerError(f"scorer {spec!r}: use judge:model=MODEL[,rubric=FILE][,threshold=X]")
    rubric = options.get("rubric")
    if rubric is not None and base is not None and not Path(str(rubric)).is_absolute():
        in_base = base / str(rubric)
        rubric = in_base if in_base.exists() or rubric not in RUBRICS else rubric
    threshold = options.get("threshold", 0.6)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ScorerError(f"scorer {spec!r}: threshold must be a number, not {threshold!r}")
    judge = JudgeScorer(
        str(options["model"]),
        rubric,
        threshold=float(threshold),
        name=str(name) if name is not None else "judge",
    )
    judge.spec = spec
    return judge


def _options(spec: str, text: str) -> dict[str, Any]:
    if not text:
        return {}
    if text.lstrip().startswith("{"):
        try:
            options = json.loads(text)
        except ValueError as exc:
            raise ScorerError(
                f"scorer {spec!r}: its settings are not a JSON object: {exc}"
            ) from None
        if not isinstance(options, dict):
            raise ScorerError(f"scorer {spec!r}: its settings must be a JSON object")
        return options
    options = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ScorerError(f"scorer {spec!r}: expected key=value, got {item!r}")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


def load_scorer_file(path: Path, function: str | None = None) -> list[Scorer]:
    """Scorers from a Python file: ``function`` if given, else every public function the
    file defines (in definition order)."""
    if not path.is_file():
        raise ScorerError(f"scorer file {path} does not exist")
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    stem = re.sub(r"\W", "_", path.stem)
    module_name = f"agentloop_scorers_{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ScorerError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise ScorerError(f"cannot import scorer file {path}: {type(exc).__name__}: {exc}") from exc
    if function is not None:
        found = getattr(module, function, None)
        if not callable(found):
            raise ScorerError(f"scorer file {path} has no function {function!r}")
        return [_with_spec(found, f"{path.resolve()}:{function}")]
    functions = [
        value
        for key, value in vars(module).items()
        if inspect.isfunction(value) and value.__module__ == module_name and not key.startswith("_")
    ]
    if not functions:
        raise ScorerError(f"scorer file {path} defines no public functions")
    return [_with_spec(f, f"{path.resolve()}:{f.__name__}") for f in functions]


def _with_spec(function: Scorer, spec: str) -> Scorer:
    function.spec = spec  # type: ignore[attr-defined]
    return function
