"""The retrieve tool: a folder of Markdown and text documents, chunked, searched with BM25,
with stable source ids an answer can cite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agentloop import Agent, ModelResponse, ToolRetry, read_trace
from agentloop.errors import UserError
from agentloop.testing import ScriptedModel
from toolpack import load

DOCS = Path(__file__).resolve().parent / "data" / "docs"


retrieve = load("retrieve")


@pytest.fixture(scope="module")
def index() -> object:
    return retrieve.DocumentIndex.from_folder(DOCS)


def test_documents_are_chunked_with_stable_ids(index: object) -> None:
    ids = [p.source_id for p in index.passages]  # type: ignore[attr-defined]
    assert ids == [
        "guides/kelp.md#1",
        "otters.md#1",
        "otters.md#2",
        "otters.md#3",
        "rivers.txt#1",
    ]
    again = retrieve.DocumentIndex.from_folder(DOCS)
    assert [(p.source_id, p.text) for p in again.passages] == [
        (p.source_id, p.text)
        for p in index.passages  # type: ignore[attr-defined]
    ]


def test_hidden_and_other_files_are_not_indexed(index: object) -> None:
    texts = " ".join(p.text for p in index.passages)  # type: ignore[attr-defined]
    assert "secret passage" not in texts and "binary-ish" not in texts


def test_search_finds_the_passage_that_answers(index: object) -> None:
    found = index.search("do otters hold hands while sleeping", k=3)  # type: ignore[attr-defined]
    assert found[0].source_id == "otters.md#2"
    assert "hold hands" in found[0].text
    assert [p.score for p in found] == sorted((p.score for p in found), reverse=True)
    assert all(p.score > 0 for p in found)
    assert index.search("longest river Nile")[0].source_id == "rivers.txt#1"  # type: ignore[attr-defined]


def test_the_tool_returns_citable_passages() -> None:
    search_docs = retrieve.make_retrieve_tool(DOCS)
    text = search_docs(query="kelp growth per day", max_passages=1)
    assert text.startswith("[source: guides/kelp.md#1] (score ")
    assert "half a metre in a single day" in text
    answer = f"Kelp grows up to half a metre a day {text.split(' (score')[0]}."
    assert retrieve.CITATION.findall(answer) == ["guides/kelp.md#1"]


def test_no_match_and_empty_queries() -> None:
    search_docs = retrieve.make_retrieve_tool(DOCS)
    assert search_docs(query="quantum chromodynamics") == (
        "No passages match 'quantum chromodynamics'; try other words."
    )
    with pytest.raises(ToolRetry, match="query is empty"):
        search_docs(query=" ")


def test_chunking_starts_at_headings_and_bounds_long_paragraphs() -> None:
    text = "# One\n\nshort para\n\n## Two\n\n" + "word " * 100 + "\n\nafter"
    chunks = retrieve.chunk_text(text, chunk_chars=120)
    assert chunks[0] == "# One\n\nshort para"
    assert chunks[1].startswith("## Two")
    assert all(len(c) <= 120 for c in chunks)
    assert " ".join(chunks).count("word") == 100
    assert chunks[-1].endswith("after")


def test_links_leading_outside_the_folder_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    shutil.copytree(DOCS, folder)
    (tmp_path / "private.md").write_text("# Private\n\nThe vault code is 1234.")
    (folder / "leak.md").symlink_to(tmp_path / "private.md")
    index = retrieve.DocumentIndex.from_folder(folder)
    assert all("vault" not in p.text for p in index.passages)


def test_a_missing_or_empty_folder_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a directory"):
        retrieve.DocumentIndex.from_folder(tmp_path / "missing")
    with pytest.raises(UserError, match="no Markdown or text files"):
        retrieve.DocumentIndex.from_folder(tmp_path)


async def test_an_agent_answers_with_a_citation_found_in_its_retrieval(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            ModelResponse.tool_call("search_docs", {"query": "otters sleeping hands"}),
            "Sea otters hold hands while they sleep [source: otters.md#2].",
        ]
    )
    tool = retrieve.make_retrieve_tool(DOCS)
    result = await Agent(model, tools=[tool], trace_dir=tmp_path).run("Why hold hands?")
    assert result.trace_path is not None
    [tool_result] = read_trace(result.trace_path).tool_results()
    retrieved = set(retrieve.CITATION.findall(tool_result.content))
    cited = set(retrieve.CITATION.findall(result.output))
    assert cited == {"otters.md#2"} and cited <= retrieved


def test_the_module_tool_reads_its_folder_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTLOOP_DOCS_ROOT", str(DOCS))
    module = load("retrieve")
    assert module.search_docs(query="Amazon river water").startswith("[source: rivers.txt#1]")
