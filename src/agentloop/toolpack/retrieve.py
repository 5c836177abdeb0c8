"""retrieve: search a folder of local Markdown and text documents with BM25 (grounding).

The folder is split into passages (chunks of paragraphs, a Markdown heading starts a new one)
and indexed with ``bm25s`` (from the ``tools`` extra) the first time the tool is called. Every
passage has a stable source id, ``<path relative to the folder>#<chunk number>``, for example
``notes/otters.md#3``: the same files always give the same ids.

How an agent cites: results come back as ``[source: notes/otters.md#3]`` followed by the
passage. Tell the agent (in its instructions) to answer only from retrieved passages and to put
the ``[source: ...]`` tag of each passage it used after the sentence that uses it; a scorer can
then find every cited id in the final answer with the pattern ``CITATION`` and check it against
the ids the run's ``search_docs`` results returned.

``make_retrieve_tool(folder)`` builds the tool for any folder; the module-level
``search_docs`` (what ``--tools tools/`` loads) indexes the folder named by the
``AGENTLOOP_DOCS_ROOT`` environment variable, or else ``./docs``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from agentloop import Tool, ToolRetry, tool
from agentloop.errors import UserError

DOCS_ENV = "AGENTLOOP_DOCS_ROOT"
SUFFIXES = frozenset({".md", ".markdown", ".txt", ".text"})
CHUNK_CHARS = 1200
"""Passages are cut near this many characters (at paragraph, then word, boundaries)."""
MAX_FILE_BYTES = 2_000_000
CITATION = re.compile(r"\[source: ([^\]\s]+#\d+)\]")
"""Finds cited source ids in an answer: ``CITATION.findall(answer)``."""

_HEADING = re.compile(r"^#{1,6}\s")


class Passage(NamedTuple):
    # A NamedTuple, not a dataclass: dataclasses need the module in sys.modules, and a tool
    # module loaded by path (``--tools tools/``) may not be there.
    source_id: str
    """``<relative path>#<chunk number>``, stable for the same files."""
    text: str
    score: float = 0.0

    def cite(self) -> str:
        return f"[source: {self.source_id}]"


def chunk_text(text: str, chunk_chars: int = CHUNK_CHARS) -> list[str]:
    """Split ``text`` into passages of about ``chunk_chars`` characters; a Markdown heading
    always starts a new passage, and a paragraph is only split when it alone is too long."""
    chunks: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            chunks.append("\n\n".join(current))
            current.clear()

    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not paragraph:
            continue
        size = sum(len(p) + 2 for p in current)
        if _HEADING.match(paragraph) or size + len(paragraph) > chunk_chars:
            flush()
        for piece in _split_long(paragraph, chunk_chars):
            if current and sum(len(p) + 2 for p in current) + len(piece) > chunk_chars:
                flush()
            current.append(piece)
    flush()
    return chunks


def _split_long(paragraph: str, limit: int) -> Iterator[str]:
    while len(paragraph) > limit:
        cut = paragraph.rfind(" ", 0, limit)
        cut = cut if cut > limit // 2 else limit
        yield paragraph[:cut].strip()
        paragraph = paragraph[cut:].strip()
    if paragraph:
        yield paragraph


def iter_documents(folder: Path) -> Iterator[tuple[str, str]]:
    """``(relative path, text)`` of every Markdown or text file under ``folder``, sorted by
    path; hidden entries, links leading outside the folder, big and non-UTF-8 files skipped."""
    found: list[Path] = []
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        found += (
            Path(directory, name)
            for name in files
            if not name.startswith(".") and Path(name).suffix.lower() in SUFFIXES
        )
    for path in sorted(found, key=lambda p: p.relative_to(folder).as_posix()):
        try:
            if not path.resolve().is_relative_to(folder) or path.stat().st_size > MAX_FILE_BYTES:
                continue
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        yield path.relative_to(folder).as_posix(), text


class DocumentIndex:
    """BM25 over the passages of a folder's documents."""

    def __init__(self, passages: list[Passage]) -> None:
        import bm25s  # imported here: loading the tool pack does not pay for numpy
        from bm25s.tokenization import Tokenizer

        self.passages = passages
        self._tokenizer = Tokenizer(stopwords="en")
        self._bm25: Any = bm25s.BM25()
        tokens = self._tokenizer.tokenize(
            [f"{p.source_id}\n{p.text}" for p in passages], show_progress=False
        )
        self._bm25.index(tokens, show_progress=False)

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike[str], chunk_chars: int = CHUNK_CHARS
    ) -> DocumentIndex:
        base = Path(folder).resolve()
        if not base.is_dir():
            raise UserError(f"the documents folder {str(folder)!r} is not a directory")
        passages = [
            Passage(source_id=f"{path}#{number}", text=chunk)
            for path, text in iter_documents(base)
            for number, chunk in enumerate(chunk_text(text, chunk_chars), start=1)
        ]
        if not passages:
            raise UserError(f"the documents folder {str(folder)!r} has no Markdown or text files")
        return cls(passages)

    def search(self, query: str, k: int = 5) -> list[Passage]:
        """The best ``k`` passages for ``query`` with a positive score, best first."""
        tokens = self._tokenizer.tokenize([query], update_vocab=False, show_progress=False)
        k = min(k, len(self.passages))
        indices, scores = self._bm25.retrieve(tokens, k=k, show_progress=False)
        return [
            Passage(self.passages[int(i)].source_id, self.passages[int(i)].text, float(s))
            for i, s in zip(indices[0], scores[0], strict=True)
            if s > 0
        ]


def format_passages(passages: list[Passage]) -> str:
    return "\n\n".join(f"{p.cite()} (score {p.score:.2f})\n{p.text}" for p in passages)


def make_retrieve_tool(
    folder: str | os.PathLike[str], *, chunk_chars: int = CHUNK_CHARS, name: str = "search_docs"
) -> Tool:
    """A tool searching ``folder``'s documents, indexed on its first call."""
    lock = threading.Lock()
    built: list[DocumentIndex] = []

    def index() -> DocumentIndex:
        with lock:
            if not built:
                built.append(DocumentIndex.from_folder(folder, chunk_chars))
            return built[0]

    @tool(name=name, idempotent=True)
    def search_docs(query: str, max_passages: int = 5) -> str:
        """Search the local documents; returns passages, each after its [source: <id>] tag.

        Answer from these passages only, and cite each one you use by copying its tag right
        after the sentence that uses it, e.g. "<your sentence> [source: <file>#<n>]".

        Args:
            query: Words to look for.
            max_passages: How many passages to return (1 to 10).
        """
        if not query.strip():
            raise ToolRetry("the query is empty; say what to look for")
        found = index().search(query, k=min(max(max_passages, 1), 10))
        if not found:
            return f"No passages match {query!r}; try other words."
        return format_passages(found)

    return search_docs


search_docs = make_retrieve_tool(os.environ.get(DOCS_ENV) or "docs")
