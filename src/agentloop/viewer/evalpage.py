"""Eval run folders for the viewer: finding them, and the plot of agent versions side by side.

An eval run folder is any folder under the viewer's folders holding an ``eval.json``
(``agentloop.evals``). Summaries and comparisons come from ``agentloop.evals.summary`` and
``agentloop.evals.comparison``, exactly as ``agentloop eval`` prints them. The plot is plain SVG
geometry computed here (bars with their labels), so the page needs no chart library and no
script.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentloop.errors import UserError
from agentloop.evals import EvalRun, Summary, summarize
from agentloop.evals.records import META_FILE

MAX_EVALS = 500


@dataclass(frozen=True)
class EvalEntry:
    """One eval run folder: where it is (``folder`` index and relative path) and its summary."""

    folder: int
    path: str
    run: EvalRun
    summary: Summary

    @property
    def ref(self) -> str:
        return f"{self.folder}/{self.path}"


def find_evals(folders: Sequence[Path]) -> list[EvalEntry]:
    """Every readable eval run folder under ``folders``, newest first."""
    found: list[EvalEntry] = []
    for number, folder in enumerate(folders):
        for top, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "traces")
            if META_FILE in files and len(found) < MAX_EVALS:
                entry = load_eval(folders, number, Path(top).relative_to(folder).as_posix())
                if entry is not None:
                    found.append(entry)
    found.sort(key=lambda e: e.run.meta.created, reverse=True)
    return found


def load_eval(folders: Sequence[Path], number: int, rel: str) -> EvalEntry | None:
    try:
        run = EvalRun.load(folders[number] / rel)
    except UserError:
        return None
    return EvalEntry(number, rel, run, summarize(run))


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Panel:
    """One metric across agent versions: a title and one bar per version."""

    title: str
    x: float
    bars: list[Bar]


PLOT_HEIGHT = 220
PANEL_WIDTH = 260
BAR_AREA = 150
"""Height in pixels of the tallest bar."""
_TOP = 30


def plot(entries: Sequence[EvalEntry]) -> list[Panel]:
    """Pass rate, mean tokens and median latency per agent version (the newest eval of each
    label and version), as bars scaled within each panel."""
    latest: dict[tuple[str, str], EvalEntry] = {}
    for entry in entries:
        key = (entry.summary.label, entry.summary.config_hash)
        latest.setdefault(key, entry)
    versions = list(latest.values())[:8]
    metrics: list[tuple[str, Callable[[Summary], float], str]] = [
        ("pass rate", lambda s: s.pass_rate, "{:.0%}"),
        ("tokens per attempt", lambda s: s.tokens_mean, "{:.0f}"),
        ("latency p50 (s)", lambda s: s.latency_p50, "{:.2f}"),
    ]
    panels = []
    for number, (title, get, fmt) in enumerate(metrics):
        values = [float(get(e.summary)) for e in versions]
        top = max([*values, 1.0 if title == "pass rate" else 1e-9])
        slot = (PANEL_WIDTH - 20) / max(len(values), 1)
        bars = []
        for i, (entry, value) in enumerate(zip(versions, values, strict=True)):
            height = BAR_AREA * value / top if top > 0 else 0.0
            bars.append(
                Bar(
                    label=f"{entry.summary.label} {entry.summary.config_hash[:8]}",
                    value=value,
                    text=fmt.format(value),
                    x=10 + i * slot + slot * 0.15,
                    y=_TOP + BAR_AREA - height,
                    width=slot * 0.7,
                    height=height,
                )
            )
        panels.append(Panel(title, number * PANEL_WIDTH, bars))
    return panels
