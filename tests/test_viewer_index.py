"""The viewer's SQLite index: what it keeps of each trace, incremental refresh, scale."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agentloop import read_trace
from agentloop.feedback import add_feedback
from agentloop.viewer import index as index_module
from agentloop.viewer.index import INDEX_FILE, RunFilters, TraceIndex, summarize_trace
from agentloop.viewer.runpage import load_run_page
from viewer_corpus import failed_run, fork_of, many_runs, synthetic_trace, weather_run


def test_a_trace_is_summarized_from_header_tool_calls_and_ending(tmp_path: Path) -> None:
    path = weather_run(tmp_path)
    add_feedback(path, rating="up")
    add_feedback(path, rating="down", comment="second thoughts")
    facts = summarize_trace(path)
    trace = read_trace(path)
    assert facts["run_id"] == trace.run_id and facts["created"] == trace.header.created
    assert (facts["status"], facts["steps"], facts["tool_calls"]) == ("finished", 2, 1)
    assert facts["tools"] == ",weather," and facts["output"] == "18 C and cloudy."
    assert (facts["rating"], facts["feedback"]) == ("down", 2)  # the latest rating counts
    failed = summarize_trace(failed_run(tmp_path))
    assert (failed["status"], failed["reason"]) == ("failed", "max_steps")
    replay = summarize_trace(fork_of(path, tmp_path))
    assert (replay["parent_run"], replay["parent_kind"]) == (trace.run_id, "replay")


def test_not_a_trace_and_torn_traces(tmp_path: Path) -> None:
    (tmp_path / "results.jsonl").write_text('{"case_id": "x"}\n')
    assert "format" in summarize_trace(tmp_path / "results.jsonl")["error"]
    path = synthetic_trace(tmp_path / "t.jsonl", run_id="t", created="2026-01-01", steps=2)
    text = path.read_text()
    path.write_text(text[: text.rindex('{"run_id"') + 30])  # killed mid-line, no terminal
    facts = summarize_trace(path)
    assert facts["status"] == "incomplete" and facts["steps"] == 3
    index = TraceIndex([tmp_path])
    index.refresh(force=True)
    assert [r.run_id for r in index.listing(RunFilters()).runs] == ["t"]


def test_refresh_reads_only_new_and_changed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    many_runs(tmp_path, 5)
    read: list[str] = []
    real = index_module.summarize_trace

    def counting(path: Path) -> dict[str, object]:
        read.append(path.name)
        return real(path)

    monkeypatch.setattr(index_module, "summarize_trace", counting)
    index = TraceIndex([tmp_path])
    index.refresh(force=True)
    assert sorted(read) == [f"run{i:05d}.jsonl" for i in range(5)]
    assert (tmp_path / INDEX_FILE).is_file()
    read.clear()
    index.refresh(force=True)
    assert read == []
    add_feedback(tmp_path / "run00003.jsonl", rating="down")
    (tmp_path / "run00001.jsonl").unlink()
    index.refresh(force=True)
    assert read == ["run00003.jsonl"]
    listing = index.listing(RunFilters())
    assert {r.run_id for r in listing.runs} == {"run00000", "run00002", "run00003", "run00004"}
    assert [r.run_id for r in index.listing(RunFilters(rating="down")).runs] == ["run00003"]
    index.refresh()  # within a second of the last: skipped
    assert read == ["run00003.jsonl"]


def test_a_new_schema_rebuilds_the_index(tmp_path: Path) -> None:
    many_runs(tmp_path, 2)
    TraceIndex([tmp_path]).refresh(force=True)
    with sqlite3.connect(tmp_path / INDEX_FILE) as db:
        db.execute("UPDATE meta SET value = '0' WHERE key = 'schema'")
        db.execute("UPDATE runs SET task = 'stale'")
    index = TraceIndex([tmp_path])
    index.refresh(force=True)
    assert {r.task for r in index.listing(RunFilters()).runs} == {"count the files"}


def test_several_folders_list_as_one(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    synthetic_trace(first / "x.jsonl", run_id="x", created="2026-01-02", steps=1)
    synthetic_trace(second / "y.jsonl", run_id="y", created="2026-01-03", steps=1)
    index = TraceIndex([first, second])
    index.refresh(force=True)
    assert [(r.folder, r.run_id) for r in index.listing(RunFilters()).runs] == [(1, "y"), (0, "x")]
    assert index.choices().total == 2


def test_search_words_are_matched_literally(tmp_path: Path) -> None:
    synthetic_trace(tmp_path / "a.jsonl", run_id="a", created="2026-01-01", steps=0, task="50% off")
    synthetic_trace(tmp_path / "b.jsonl", run_id="b", created="2026-01-01", steps=0, task="500 off")
    index = TraceIndex([tmp_path])
    index.refresh(force=True)
    assert [r.run_id for r in index.listing(RunFilters(text="50%")).runs] == ["a"]
    assert [r.run_id for r in index.listing(RunFilters(text="5_0")).runs] == []


def test_bad_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="does not exist"):
        TraceIndex([tmp_path / "nope"])
    with pytest.raises(Exception, match="at most 10 folders"):
        TraceIndex([tmp_path] * 11)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ten_thousand_runs_and_a_ten_thousand_step_trace(tmp_path: Path) -> None:
    """Scale, checked for correctness here; ``make bench`` times it against the 1 s targets."""
    many_runs(tmp_path, 10_000)
    synthetic_trace(
        tmp_path / "long" / "big.jsonl", run_id="big", created="2027-01-01", steps=10_000
    )
    index = TraceIndex([tmp_path])
    index.refresh(force=True)
    listing = index.listing(RunFilters(), page=1, per_page=50)
    assert (listing.matched, listing.groups, listing.pages) == (10_001, 10_001, 201)
    assert listing.runs[0].run_id == "big" and listing.runs[0].steps == 10_001
    versions = index.listing(RunFilters(config_hash="beef0002"))
    assert versions.matched == 5_000
    page = load_run_page(tmp_path / "long" / "big.jsonl")
    assert [s.index for s in page.steps] == list(range(50))
    assert page.step_count == 10_001 and page.pages == 201


@pytest.mark.slow
def test_the_viewer_bench_runs_at_tiny_sizes() -> None:
    """``make bench`` times the viewer; here it runs small so it cannot rot (no timing)."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(root / "bench" / "viewer.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "| runs list, 201 runs |" in out.stdout
    assert "| run page 1 of a 200-step trace |" in out.stdout
