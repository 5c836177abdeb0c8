"""Eval datasets: cases read from JSONL, one case per line.

A line is a JSON object::

    {"id": "add-1", "input": "What is 2 + 3?", "expected": 5,
     "scorers": {"numeric": {"tolerance": 0.01}}, "metadata": {"topic": "arithmetic"}}

``id`` and ``input`` (the task) are required; ``expected`` is any JSON value the scorers
compare against; ``scorers`` holds per-case scorer settings by scorer name (they override the
eval's settings for that scorer, or add a built-in scorer for this case only); ``metadata``
is carried into each trace's header. Blank lines and lines starting with ``#`` are skipped.
A malformed case raises ``DatasetError`` naming the file, the line and the field.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentloop.errors import UserError, first_problem


class DatasetError(UserError):
    """A dataset file is missing or holds a malformed case; the message names the line."""


class Case(BaseModel):
    """One eval case: a task for the agent and what to score its run against."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    """Unique within the dataset; results and comparisons pair cases by it."""
    input: str
    """The task given to the agent."""
    expected: Any = None
    """What a correct run produces: text, a number, a JSON value; scorers decide how to use it."""
    scorers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-case scorer settings by scorer name, e.g. ``{"numeric": {"tolerance": 0.5}}``."""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _id_from_number(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Dataset(Sequence[Case]):
    """An ordered collection of cases with unique ids."""

    def __init__(self, cases: Iterable[Case], *, name: str = "dataset") -> None:
        self.cases = list(cases)
        self.name = name
        seen: set[str] = set()
        for case in self.cases:
            if case.id in seen:
                raise DatasetError(f"dataset {name!r} has two cases with id {case.id!r}")
            seen.add(case.id)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str]) -> Dataset:
        """Read a JSONL dataset; ``DatasetError`` names the line of the first bad case."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise DatasetError(f"cannot read dataset {file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise DatasetError(f"dataset {file} is not UTF-8 text") from None
        cases: list[Case] = []
        lines: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            case = _parse_line(file, number, line)
            if case.id in lines:
                raise DatasetError(
                    f"{file}:{number}: duplicate case id {case.id!r} (first on line "
                    f"{lines[case.id]})"
                )
            lines[case.id] = number
            cases.append(case)
        if not cases:
            raise DatasetError(f"dataset {file} has no cases")
        return cls(cases, name=file.stem)

    def to_jsonl(self, path: str | os.PathLike[str]) -> None:
        with Path(path).open("w", encoding="utf-8") as f:
            for case in self.cases:
                f.write(case.model_dump_json(exclude_defaults=True) + "\n")

    @property
    def digest(self) -> str:
        """A short hash of the cases, so a comparison can tell two datasets apart."""
        canonical = "\n".join(c.model_dump_json() for c in self.cases)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def get(self, case_id: str) -> Case | None:
        return next((c for c in self.cases if c.id == case_id), None)

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    def __getitem__(self, index: int) -> Case:  # type: ignore[override]
        return self.cases[index]


def _parse_line(file: Path, number: int, line: str) -> Case:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{file}:{number}: not valid JSON: {exc.msg} (column {exc.colno})"
        ) from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{file}:{number}: a case must be a JSON object, not {_kind(raw)}")
    try:
        return Case.model_validate(raw)
    except ValidationError as exc:
        problem = first_problem(exc)
        hint = ""
        if problem.kind == "extra_forbidden":
            hint = f" (known fields: {', '.join(Case.model_fields)})"
        where = problem.where or "case"
        raise DatasetError(f"{file}:{number}: field {where!r}: {problem.message}{hint}") from None


def _kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")
