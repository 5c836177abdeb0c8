"""The viewer's index of runs: one SQLite file per trace folder, kept in step with the traces.

Listing 10,000 runs cannot mean reading 10,000 traces on every page load. Each folder given to
the viewer gets ``.agentloop-index.sqlite`` (or a file in the temporary folder, if the trace
folder is read-only) with one row per trace file: the facts a listing filters and sorts on,
taken from the header, the terminal event and the annotations after it. ``refresh`` brings it up
to date incrementally: a file whose size and modification time are unchanged is not read again;
a new or grown file is summarized once; a removed file leaves the index.

Queries go through one in-memory connection that attaches every folder's index, so filters,
sorting and pagination span all folders. Nothing here serves HTTP or knows about templates.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args
from urllib.parse import quote

from pydantic import ValidationError

from agentloop import trace as trace_module
from agentloop.errors import TraceError, UserError
from agentloop.events import (
    ANNOTATION_TYPES,
    TERMINAL_TYPES,
    Event,
    EventAdapter,
    FeedbackRecorded,
    RunCancelled,
    RunFailed,
    RunFinished,
    ScoreRecorded,
)
from agentloop.trace import parse_header

INDEX_FILE = ".agentloop-index.sqlite"
SCHEMA = 1
MAX_FOLDERS = 10
"""SQLite attaches at most ten databases to one connection."""
REFRESH_EVERY_S = 1.0
STATUSES = ("finished", "failed", "cancelled", "incomplete")
_STATUS = {"run_finished": "finished", "run_failed": "failed", "run_cancelled": "cancelled"}
_KNOWN = frozenset(kind.model_fields["type"].default for kind in get_args(get_args(Event)[0]))
"""Event types whose lines the index reads by pattern; any other line must parse as an event."""
_TYPE = re.compile(rb'"type":\s*"([a-z_]+)"')
"""An event line's type, read by pattern: agentloop writes ``run_id``, ``step``, ``seq``, ``ts``
and ``type`` first (JSON whitespace allowed, as any JSON writer may add it)."""
_NAME = re.compile(rb'"call_id":\s*"(?:[^"\\]|\\.)*",\s*"name":\s*"((?:[^"\\]|\\.)*)"')
_COLUMNS = (
    "path",
    "mtime_ns",
    "size",
    "error",
    "run_id",
    "created",
    "task",
    "model",
    "config_hash",
    "status",
    "reason",
    "steps",
    "tool_calls",
    "tools",
    "output",
    "rating",
    "feedback",
    "critiques",
    "scores",
    "scores_passed",
    "parent_run",
    "parent_kind",
    "parent_step",
    "input_tokens",
    "output_tokens",
    "duration_s",
)
_CREATE = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs ({", ".join(_COLUMNS)}, PRIMARY KEY (path));
CREATE INDEX IF NOT EXISTS runs_created ON runs (created);
CREATE INDEX IF NOT EXISTS runs_run_id ON runs (run_id);
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run);
"""


@dataclass(frozen=True)
class RunRow:
    """One run as the runs list shows it; ``folder`` and ``path`` locate its trace."""

    folder: int
    path: str
    run_id: str
    created: str
    task: str
    model: str
    config_hash: str
    status: str
    reason: str | None
    steps: int
    tool_calls: int
    tools: list[str]
    output: str | None
    rating: str | None
    feedback: int
    critiques: int
    scores: int
    scores_passed: int
    parent_run: str | None
    parent_kind: str | None
    parent_step: int | None
    input_tokens: int
    output_tokens: int
    duration_s: float | None
    children: list[RunRow] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """How routes name this run: ``FOLDER/RELATIVE/PATH.jsonl``."""
        return f"{self.folder}/{self.path}"


@dataclass(frozen=True)
class RunFilters:
    """What the runs list is narrowed to; empty fields do not filter."""

    status: str = ""
    config_hash: str = ""
    model: str = ""
    tool: str = ""
    rating: str = ""
    """``up``, ``down`` or ``none`` (no rating given)."""
    date_from: str = ""
    """``YYYY-MM-DD``, inclusive, on the UTC creation date."""
    date_to: str = ""
    text: str = ""
    """Words looked for in the task and the answer (all must occur, any case)."""

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        for column in ("status", "config_hash", "model"):
            value = getattr(self, column)
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if self.tool:
            clauses.append("tools LIKE ? ESCAPE '\\'")
            args.append(f"%,{_like(self.tool)},%")
        if self.rating == "none":
            clauses.append("rating IS NULL")
        elif self.rating:
            clauses.append("rating = ?")
            args.append(self.rating)
        if self.date_from:
            clauses.append("substr(created, 1, 10) >= ?")
            args.append(self.date_from)
        if self.date_to:
            clauses.append("substr(created, 1, 10) <= ?")
            args.append(self.date_to)
        for word in self.text.split():
            clauses.append("(task LIKE ? ESCAPE '\\' OR output LIKE ? ESCAPE '\\')")
            args += [f"%{_like(word)}%"] * 2
        return (" AND ".join(clauses) or "1"), args


@dataclass(frozen=True)
class Listing:
    """A page of the runs list: top-level runs with their replays and forks beneath them."""

    runs: list[RunRow]
    matched: int
    """Runs that match the filters, children included."""
    groups: int
    """Top-level runs that match (what pages count)."""
    page: int
    pages: int
    by_status: dict[str, int]


@dataclass(frozen=True)
class Choices:
    """The values the filters offer, over every indexed run."""

    models: list[str]
    config_hashes: list[str]
    tools: list[str]
    total: int


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class TraceIndex:
    """The runs under some folders, indexed; safe to share between request threads."""

    def __init__(self, folders: Sequence[Path], *, beside_traces: bool = True) -> None:
        """Index ``folders``; ``beside_traces=False`` keeps the index files in the temporary
        folder and writes nothing into the trace folders (the viewer's ``--read-only``)."""
        if not folders:
            raise UserError("give at least one trace folder")
        if len(folders) > MAX_FOLDERS:
            raise UserError(f"the viewer reads at most {MAX_FOLDERS} folders at once")
        self.folders = [Path(f).resolve() for f in folders]
        for folder in self.folders:
            if not folder.is_dir():
                raise UserError(f"trace folder {folder} does not exist or is not a folder")
        self.files = [_index_file(f, beside_traces) for f in self.folders]
        self._lock = threading.Lock()
        self._refreshed = 0.0
        for index_file in self.files:
            with _connect(index_file) as db:
                _ensure_schema(db)

    def refresh(self, *, force: bool = False) -> None:
        """Bring every folder's index up to date (at most once a second unless ``force``)."""
        with self._lock:
            if not force and time.monotonic() - self._refreshed < REFRESH_EVERY_S:
                return
            for folder, index_file in zip(self.folders, self.files, strict=True):
                _sync_folder(folder, index_file)
            self._refreshed = time.monotonic()

    def _query(self) -> sqlite3.Connection:
        db = sqlite3.connect(":memory:", timeout=10, uri=True)
        parts = []
        for i, index_file in enumerate(self.files):
            db.execute(f"ATTACH DATABASE ? AS f{i}", (f"file:{quote(str(index_file))}?mode=ro",))
            parts.append(f"SELECT {i} AS folder, * FROM f{i}.runs WHERE error IS NULL")
        db.execute(f"CREATE TEMP VIEW allruns AS {' UNION ALL '.join(parts)}")
        db.row_factory = sqlite3.Row
        return db

    def listing(self, filters: RunFilters, page: int = 1, per_page: int = 50) -> Listing:
        """One page of matching runs, newest first by the time each run started."""
        where, args = filters.where()
        matching = f"WITH m AS (SELECT * FROM allruns WHERE {where}) "
        roots = "FROM m WHERE parent_run IS NULL OR parent_run NOT IN (SELECT run_id FROM m)"
        with _closing(self._query()) as db:
            matched = db.execute(matching + "SELECT COUNT(*) FROM m", args).fetchone()[0]
            groups = db.execute(matching + "SELECT COUNT(*) " + roots, args).fetchone()[0]
            pages = max(1, -(-groups // per_page))
            page = min(max(page, 1), pages)
            rows = db.execute(
                matching + "SELECT * " + roots + " ORDER BY created DESC, run_id DESC "
                "LIMIT ? OFFSET ?",
                [*args, per_page, (page - 1) * per_page],
            ).fetchall()
            runs = [_row(r) for r in rows]
            _attach_children(db, matching, args, runs)
            by_status = dict(
                db.execute(matching + "SELECT status, COUNT(*) FROM m GROUP BY status", args)
            )
        return Listing(runs, matched, groups, page, pages, by_status)

    def choices(self) -> Choices:
        with _closing(self._query()) as db:
            models = [r[0] for r in db.execute("SELECT DISTINCT model FROM allruns ORDER BY 1")]
            hashes = [
                r[0] for r in db.execute("SELECT DISTINCT config_hash FROM allruns ORDER BY 1")
            ]
            tools = sorted(
                {
                    name
                    for (names,) in db.execute("SELECT DISTINCT tools FROM allruns")
                    for name in names.strip(",").split(",")
                    if name
                }
            )
            total = db.execute("SELECT COUNT(*) FROM allruns").fetchone()[0]
        return Choices(models, hashes, tools, total)

    def by_run_id(self, run_id: str) -> list[RunRow]:
        """Every indexed trace of the run ``run_id`` (normally one)."""
        with _closing(self._query()) as db:
            rows = db.execute("SELECT * FROM allruns WHERE run_id = ?", (run_id,)).fetchall()
        return [_row(r) for r in rows]

    def descendants(self, run_id: str) -> list[RunRow]:
        """Replays, forks and resumes of ``run_id``, newest first."""
        with _closing(self._query()) as db:
            rows = db.execute(
                "SELECT * FROM allruns WHERE parent_run = ? ORDER BY created DESC", (run_id,)
            ).fetchall()
        return [_row(r) for r in rows]


class _closing:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, *_: object) -> None:
        self.db.close()


def _attach_children(
    db: sqlite3.Connection, matching: str, args: list[Any], roots: list[RunRow]
) -> None:
    """Put each matching replay or fork under its parent, down to five levels."""
    level = roots
    for _ in range(5):
        if not level:
            return
        ids = {r.run_id: r for r in level}
        marks = ",".join("?" * len(ids))
        rows = db.execute(
            matching + f"SELECT * FROM m WHERE parent_run IN ({marks}) ORDER BY created DESC",
            [*args, *ids],
        ).fetchall()
        level = []
        for raw in rows:
            child = _row(raw)
            ids[child.parent_run or ""].children.append(child)
            level.append(child)


def _row(raw: sqlite3.Row) -> RunRow:
    data = dict(raw)
    for key in ("mtime_ns", "size", "error"):
        data.pop(key, None)
    data["tools"] = [t for t in (data["tools"] or "").strip(",").split(",") if t]
    return RunRow(**data)


def _index_file(folder: Path, beside_traces: bool) -> Path:
    """``FOLDER/.agentloop-index.sqlite``, or a file in the temporary folder if FOLDER is not
    writable (a folder someone shared read-only) or the index must not go there."""
    if beside_traces and os.access(folder, os.W_OK):
        return folder / INDEX_FILE
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"agentloop-index-{digest}.sqlite"


def _connect(index_file: Path) -> sqlite3.Connection:
    return sqlite3.connect(index_file, timeout=10)


def _ensure_schema(db: sqlite3.Connection) -> None:
    db.executescript(_CREATE)
    found = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if found is None or found[0] != str(SCHEMA):
        db.executescript("DROP TABLE IF EXISTS runs;" + _CREATE)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA),))
    db.commit()


def trace_files(folder: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every ``*.jsonl`` file under ``folder`` (hidden names skipped) that really lies inside
    it, as a relative path and its stat; a symbolic link out of the folder is left out.

    ``os.scandir`` rather than ``pathlib``: a refresh stats every file each time, and for
    10,000 traces the difference is most of a second.
    """
    pending = [("", str(folder))]
    while pending:
        prefix, top = pending.pop()
        try:
            entries = sorted(os.scandir(top), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                pending.append((rel + "/", entry.path))
            elif entry.name.endswith(".jsonl"):
                if entry.is_symlink() and not Path(entry.path).resolve().is_relative_to(folder):
                    continue
                try:
                    yield rel, entry.stat()
                except OSError:
                    continue


def _sync_folder(folder: Path, index_file: Path) -> None:
    with _closing(_connect(index_file)) as db:
        known = {
            path: (mtime, size)
            for path, mtime, size in db.execute("SELECT path, mtime_ns, size FROM runs")
        }
        seen: set[str] = set()
        changed: list[tuple[Any, ...]] = []
        for rel, stat in trace_files(folder):
            seen.add(rel)
            if known.get(rel) != (stat.st_mtime_ns, stat.st_size):
                facts = summarize_trace(folder / rel)
                facts.update(path=rel, mtime_ns=stat.st_mtime_ns, size=stat.st_size)
                changed.append(tuple(facts.get(c) for c in _COLUMNS))
        gone = [(p,) for p in known.keys() - seen]
        if changed or gone:
            marks = ",".join("?" * len(_COLUMNS))
            db.executemany(f"INSERT OR REPLACE INTO runs VALUES ({marks})", changed)
            db.executemany("DELETE FROM runs WHERE path = ?", gone)
            db.commit()


def summarize_trace(path: Path) -> dict[str, Any]:
    """What the index keeps of one trace file; ``{"error": ...}`` if it is not a trace.

    Only the header, the tool calls, the terminal event and the annotations are parsed; other
    lines are only counted, which keeps a long trace cheap to index.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {"error": f"cannot read: {exc.strerror}"}
    lines = data.split(b"\n")
    if any(len(line) > trace_module.MAX_LINE_BYTES for line in lines):
        return {"error": "a line longer than a trace line may be"}
    try:
        header = parse_header(path, lines[0])
    except TraceError as exc:
        return {"error": str(exc)}
    model = header.agent.get("model")
    parent = header.parent or {}
    facts: dict[str, Any] = {
        "run_id": header.run_id,
        "created": header.created,
        "task": header.task,
        "model": str(model.get("name", "?")) if isinstance(model, dict) else str(model or "?"),
        "config_hash": header.config_hash,
        "status": "incomplete",
        "steps": 0,
        "tool_calls": 0,
        "feedback": 0,
        "critiques": 0,
        "scores": 0,
        "scores_passed": 0,
        "parent_run": parent.get("run_id"),
        "parent_kind": parent.get("kind"),
        "parent_step": parent.get("step"),
    }
    tools: list[str] = []
    last_kind = ""
    body = lines[1:-1] if lines[-1] == b"" else lines[1:]
    for number, line in enumerate(body):
        found = _TYPE.search(line, 0, 400)
        kind = found.group(1).decode() if found else ""
        if kind not in _KNOWN:
            if number == len(body) - 1 and lines[-1] != b"":
                break  # a torn last line: the writer is mid-line, or died there
            return {"error": f"line {number + 2} is not a trace event"}
        if kind == "model_response":
            facts["steps"] += 1
        elif kind == "tool_call":
            facts["tool_calls"] += 1
            name = _tool_name(line)
            if isinstance(name, str) and name not in tools:
                tools.append(name.replace(",", " "))
        elif kind in TERMINAL_TYPES or kind in ANNOTATION_TYPES:
            _read_end(line, facts)
        if kind and kind not in ANNOTATION_TYPES:
            last_kind = kind
    if last_kind not in TERMINAL_TYPES:
        facts["status"] = "incomplete"
    facts["tools"] = "," + ",".join(tools) + ","
    return facts


def _tool_name(line: bytes) -> Any:
    """The ``name`` of a ``tool_call`` line (read by pattern, else by parsing the line)."""
    found = _NAME.search(line, 0, 600)
    try:
        if found:
            return json.loads(b'"' + found.group(1) + b'"')
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value.get("name") if isinstance(value, dict) else None


def _read_end(line: bytes, facts: dict[str, Any]) -> None:
    """Fold a terminal event or an annotation into ``facts``; a broken line is skipped."""
    try:
        event = EventAdapter.validate_json(line)
    except ValidationError:
        return
    if isinstance(event, RunFinished | RunFailed | RunCancelled):
        facts["status"] = _STATUS[event.type]
        if isinstance(event, RunFinished):
            facts["reason"], facts["output"] = None, event.output
        elif isinstance(event, RunFailed):
            facts["reason"], facts["output"] = event.reason, event.message
        else:
            facts["reason"], facts["output"] = event.reason, None
        facts["input_tokens"] = event.usage.input_tokens
        facts["output_tokens"] = event.usage.output_tokens
        facts["duration_s"] = event.duration_s
    elif isinstance(event, FeedbackRecorded):
        facts["feedback"] += 1
        if event.rating is not None:
            facts["rating"] = event.rating
    elif isinstance(event, ScoreRecorded):
        facts["scores"] += 1
        facts["scores_passed"] += event.passed
    elif event.type == "critique":
        facts["critiques"] += 1
