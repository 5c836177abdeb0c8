"""The viewer over HTTP, through its ASGI app (Starlette's TestClient): every route, the session
token and Origin checks on feedback, loopback-only Host, path confinement, escaping."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from agentloop import read_trace
from agentloop import trace as trace_module
from agentloop.cli import main
from agentloop.events import CritiqueRecorded, ScoreRecorded, ToolResultRecorded
from agentloop.feedback import add_feedback, dpo_export
from agentloop.feedback.export import read_traces
from agentloop.replay import diff_traces
from agentloop.terminal import escape
from agentloop.trace import annotate
from agentloop.viewer import create_app
from agentloop.viewer.security import CSP
from test_cli_hostile import corpus as hostile_corpus
from viewer_corpus import (
    LONG_RESULT,
    eval_run,
    failed_run,
    fork_of,
    hostile_run,
    synthetic_trace,
    weather_run,
)

BASE = "http://127.0.0.1:8765"
TOKEN = "session-token-for-tests"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    traces = tmp_path / "traces"
    traces.mkdir()
    return traces


@pytest.fixture
def runs(folder: Path) -> dict[str, Path]:
    weather = weather_run(folder)
    return {
        "weather": weather,
        "failed": failed_run(folder),
        "hostile": hostile_run(folder),
        "replay": fork_of(weather, folder),
    }


def client(*folders: Path, read_only: bool = False) -> TestClient:
    return TestClient(create_app(list(folders), read_only=read_only, token=TOKEN), base_url=BASE)


def ref(folder: Path, path: Path) -> str:
    return "0/" + path.relative_to(folder).as_posix()


def listed(html: str) -> list[str]:
    return re.findall(r'data-run-id="([^"]+)"', html)


def post_feedback(http: TestClient, run_ref: str, origin: str | None = BASE, **form: str) -> object:
    headers = {"origin": origin} if origin is not None else {}
    return http.post(
        f"/runs/{run_ref}/feedback",
        data={"token": TOKEN, **form},
        headers=headers,
        follow_redirects=False,
    )


def test_runs_are_listed_newest_first_by_creation_time_not_file_time(folder: Path) -> None:
    for name, created in (("b", "2026-03-01"), ("a", "2026-05-01"), ("c", "2026-01-01")):
        synthetic_trace(
            folder / f"{name}.jsonl", run_id=name, created=created + "T00:00:00Z", steps=1
        )
    os.utime(folder / "c.jsonl", (2_000_000_000, 2_000_000_000))  # newest file, oldest run
    response = client(folder).get("/")
    assert response.status_code == 200
    assert listed(response.text) == ["a", "b", "c"]
    assert "3</strong> of 3 runs" in response.text


def test_replays_are_grouped_under_their_parent(folder: Path, runs: dict[str, Path]) -> None:
    html = client(folder).get("/").text
    ids = listed(html)
    parent, child = read_trace(runs["weather"]).run_id, read_trace(runs["replay"]).run_id
    assert ids.index(child) == ids.index(parent) + 1
    row = re.search(rf'<tr class="run depth-(\d)[^"]*" data-run-id="{child}"', html)
    assert row is not None and row.group(1) == "1"
    assert "↳ replay" in html


def test_filters_narrow_the_list(folder: Path, runs: dict[str, Path]) -> None:
    http = client(folder)
    ids = {k: read_trace(p).run_id for k, p in runs.items()}
    assert listed(http.get("/", params={"status": "failed"}).text) == [ids["failed"]]
    assert listed(http.get("/", params={"tool": "lookup"}).text) == [ids["hostile"]]
    assert set(listed(http.get("/", params={"text": "cloudy 18"}).text)) == {
        ids["weather"],
        ids["replay"],
    }
    version = read_trace(runs["failed"]).header.config_hash
    assert listed(http.get("/", params={"config_hash": version}).text) == [ids["failed"]]
    assert listed(http.get("/", params={"model": "nope"}).text) == []
    assert listed(http.get("/", params={"date_to": "2000-01-01"}).text) == []
    assert len(listed(http.get("/", params={"date_from": "2000-01-01"}).text)) == 4
    add_feedback(runs["failed"], rating="down")
    http.app.state.viewer.index.refresh(force=True)  # type: ignore[attr-defined]
    assert listed(http.get("/", params={"rating": "down"}).text) == [ids["failed"]]
    assert ids["failed"] not in listed(http.get("/", params={"rating": "none"}).text)


def test_pages_of_fifty(folder: Path) -> None:
    for i in range(60):
        synthetic_trace(
            folder / f"r{i:02d}.jsonl",
            run_id=f"r{i:02d}",
            created=f"2026-01-01T00:{i:02d}:00Z",
            steps=0,
        )
    http = client(folder)
    first = http.get("/")
    assert listed(first.text) == [f"r{i:02d}" for i in range(59, 9, -1)]
    assert "page 1 of 2" in first.text and 'rel="next" href="/?page=2"' in first.text
    second = http.get("/", params={"page": "2", "model": "synthetic-model"})
    assert listed(second.text) == [f"r{i:02d}" for i in range(9, -1, -1)]


def test_a_run_page_shows_the_timeline(folder: Path, runs: dict[str, Path]) -> None:
    page = client(folder).get(f"/runs/{ref(folder, runs['weather'])}")
    assert page.status_code == 200
    html = page.text
    assert "Weather in Oslo?" in html and "Be brief." in html
    step0 = html.split('id="step-0"')[1].split('id="step-1"')[0]
    assert "Tool call <code>weather</code>" in step0
    assert "&#34;city&#34;: &#34;Oslo&#34;" in step0  # arguments, pretty-printed, escaped
    assert '<details class="fold tool-result">' in step0  # the long result is folded
    assert "END-OF-REPORT" in step0 and len(LONG_RESULT) > 600
    assert "18 C and cloudy." in html.split('id="outcome"')[1]
    trace = read_trace(runs["weather"])
    assert trace.header.config_hash in html


def test_annotations_show_at_the_step_they_name(folder: Path, runs: dict[str, Path]) -> None:
    path = runs["weather"]
    add_feedback(path, comment="step zero was slow", step=0)
    add_feedback(path, rating="up", comment="good overall")
    annotate(path, ScoreRecorded, scorer="contains", value=1.0, passed=True, explanation="ok")
    annotate(
        path,
        CritiqueRecorded,
        judge={"name": "judge"},
        rubric={"name": "default"},
        prompt_hash="h",
        critique={
            "verdict": "acceptable",
            "summary": "fine",
            "scores": [{"principle": "helpful", "score": 4, "rationale": "answers"}],
            "problems": [{"step": 1, "problem": "did not mention wind", "fix": "say it"}],
        },
    )
    html = client(folder).get(f"/runs/{ref(folder, path)}").text
    step0 = html.split('id="step-0"')[1].split('id="step-1"')[0]
    step1 = html.split('id="step-1"')[1]
    assert "step zero was slow" in step0 and "step zero was slow" not in step1
    assert "did not mention wind" in step1 and "did not mention wind" not in step0
    run_level = html.split('id="feedback"')[1].split('id="step-0"')[0]
    assert "good overall" in run_level and "▲ up" in run_level
    annotations = html.split('id="annotations"')[1]
    assert "contains" in annotations and "acceptable" in annotations


def test_annotations_of_any_shape_do_not_break_the_page(folder: Path) -> None:
    path = synthetic_trace(folder / "x.jsonl", run_id="x", created="2026-01-01", steps=1)
    for critique in ({"scores": 7, "problems": "x"}, {"scores": ["a", {"principle": "p"}]}, {}):
        annotate(path, CritiqueRecorded, judge={}, rubric={}, prompt_hash="h", critique=critique)
    page = client(folder).get("/runs/0/x.jsonl")
    assert page.status_code == 200 and page.text.count('class="critique"') == 3


def test_approval_error_duration_and_tokens_are_shown(folder: Path) -> None:
    path = synthetic_trace(folder / "x.jsonl", run_id="x", created="2026-01-01T00:00:00Z", steps=1)
    lines = path.read_text().splitlines()
    denied = ToolResultRecorded(
        run_id="x",
        step=0,
        seq=3,
        ts=1.0,
        call_id="c0",
        name="count",
        content="not approved",
        error="denied",
        approval="denied",
        duration_ms=12.5,
    )
    lines[4] = denied.model_dump_json()
    path.write_text("\n".join(lines) + "\n")
    html = client(folder).get("/runs/0/x.jsonl").text
    step0 = html.split('id="step-0"')[1].split('id="step-1"')[0]
    assert "approval: denied" in step0 and "error: denied" in step0 and "12.5 ms" in step0
    assert "1 in / 1 out tokens" in html


def test_a_long_trace_opens_one_page_of_steps(folder: Path) -> None:
    """(10,000 steps: tests/test_viewer_index.py and ``make bench``.)"""
    synthetic_trace(folder / "big.jsonl", run_id="big", created="2026-01-01T00:00:00Z", steps=1_000)
    http = client(folder)
    first = http.get("/runs/0/big.jsonl").text
    assert 'id="step-0"' in first and 'id="step-49"' in first and 'id="step-50"' not in first
    assert "page 1 of 21" in first and 'rel="next" href="/runs/0/big.jsonl?page=2"' in first
    middle = http.get("/runs/0/big.jsonl", params={"page": "2"}).text
    assert 'id="step-50"' in middle and 'id="step-49"' not in middle
    last = http.get("/runs/0/big.jsonl", params={"page": "21"}).text
    assert 'id="step-1000"' in last and "done after 1000 steps" in last
    assert http.get("/runs/0/big.jsonl", params={"page": "999"}).text == last


def test_trace_text_is_escaped(folder: Path, runs: dict[str, Path]) -> None:
    for url in ("/", f"/runs/{ref(folder, runs['hostile'])}"):
        html = client(folder).get(url).text
        assert "<script>window" not in html and "<img src" not in html
        assert "<style>" not in html and 'onerror="window' not in html and "<svg onload" not in html
        assert 'href="javascript:' not in html and 'id="evil"' not in html
        assert "&lt;script&gt;window.__pwned" in html
    # the one script tag is the viewer's own file, and nothing is inline
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/viewer.js" defer>']
    assert re.search(r"<[a-z]+[^<>]*\sstyle=", html) is None  # no inline style either


def test_hostile_headers_and_file_names_are_escaped(folder: Path) -> None:
    evil = '"><img src=x onerror="window.__pwned=1">'
    name = f"{evil}.jsonl"
    synthetic_trace(
        folder / name,
        run_id=f"run{evil}",
        created="2026-01-01T00:00:00Z",
        steps=1,
        model=f"model{evil}",
        config_hash=f"hash{evil}",
        tool_name=f"tool{evil}",
    )
    http = client(folder)
    listing = http.get("/")
    assert listing.status_code == 200
    page = http.get("/runs/0/" + quote(name))
    assert page.status_code == 200
    for html in (listing.text, page.text):
        assert "<img" not in html and 'onerror="window' not in html
        assert "&#34;&gt;&lt;img src=x onerror=&#34;window.__pwned=1&#34;&gt;" in html
    assert (
        'href="/runs/0/%22%3E%3Cimg%20src%3Dx%20onerror%3D%22window.__pwned%3D1%22%3E.jsonl"'
        in (listing.text)
    )


def test_every_response_carries_the_security_headers(folder: Path, runs: dict[str, Path]) -> None:
    http = client(folder)
    for url in ("/", "/static/viewer.css", "/runs/0/nope.jsonl", "/evals", "/no-such-route"):
        headers = http.get(url).headers
        assert headers["content-security-policy"] == CSP, url
        assert headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in CSP and "'unsafe-inline'" not in CSP
    assert "form-action 'self'" in CSP and "frame-ancestors 'none'" in CSP


def test_feedback_is_written_with_add_feedback(folder: Path, runs: dict[str, Path]) -> None:
    http = client(folder)
    run_ref = ref(folder, runs["weather"])
    response = post_feedback(
        http, run_ref, rating="down", correction="18 C, cloudy, windy.", step="1"
    )
    assert response.status_code == 303  # type: ignore[attr-defined]
    assert response.headers["location"].endswith("saved=1#step-1")  # type: ignore[attr-defined]
    [event] = read_trace(runs["weather"]).feedback()
    assert (event.rating, event.correction, event.about_step, event.source) == (
        "down",
        "18 C, cloudy, windy.",
        1,
        "viewer",
    )
    page = http.get(response.headers["location"]).text  # type: ignore[attr-defined]
    assert "Feedback saved" in page and "18 C, cloudy, windy." in page.split('id="step-1"')[1]
    post_feedback(http, run_ref, correction="It is 18 C and cloudy in Oslo.")
    [example] = dpo_export(read_traces([runs["weather"]])).examples  # export reads it at once
    assert example["chosen"] == [{"role": "assistant", "content": "It is 18 C and cloudy in Oslo."}]
    bad = post_feedback(http, run_ref, step="7", rating="up")
    assert bad.status_code == 400 and "step 7 is not a step" in bad.text  # type: ignore[attr-defined]
    assert post_feedback(http, run_ref).status_code == 400  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("origin", "token"),
    [
        (None, TOKEN),
        ("http://evil.example", TOKEN),
        ("http://127.0.0.1:9999", TOKEN),
        ("null", TOKEN),
        (BASE, "wrong"),
        (BASE, ""),
    ],
)
def test_feedback_needs_the_token_and_the_own_origin(
    folder: Path, runs: dict[str, Path], origin: str | None, token: str
) -> None:
    headers = {"origin": origin} if origin else {}
    response = client(folder).post(
        f"/runs/{ref(folder, runs['weather'])}/feedback",
        data={"token": token, "rating": "down"},
        headers=headers,
    )
    assert response.status_code == 403
    assert read_trace(runs["weather"]).feedback() == []


def test_read_only_takes_no_feedback(folder: Path, runs: dict[str, Path]) -> None:
    http = client(folder, read_only=True)
    page = http.get(f"/runs/{ref(folder, runs['weather'])}").text
    assert "feedback-form" not in page and "read-only" in page
    assert post_feedback(http, ref(folder, runs["weather"]), rating="up").status_code == 403  # type: ignore[attr-defined]
    assert read_trace(runs["weather"]).feedback() == []
    assert not (folder / ".agentloop-index.sqlite").exists()  # it writes nothing there


def test_only_loopback_host_names_are_served(folder: Path) -> None:
    http = client(folder)
    assert http.get("/", headers={"host": "evil.example:8765"}).status_code == 400
    assert http.get("/", headers={"host": "localhost:8765"}).status_code == 200


def test_paths_are_confined_to_the_folders(
    folder: Path, runs: dict[str, Path], tmp_path: Path
) -> None:
    outside = tmp_path / "secret.jsonl"
    outside.write_text(runs["weather"].read_text())
    (folder / "link.jsonl").symlink_to(outside)
    (folder / "notes.txt").write_text("x")
    http = client(folder)
    forbidden = [
        "/runs/0/%2e%2e/secret.jsonl",
        "/runs/0/..%2Fsecret.jsonl",
        "/runs/0/%2Fetc%2Fpasswd.jsonl",
        "/runs/0/link.jsonl",
        "/runs/0/link.jsonl/state",
        "/evals/0/%2e%2e",
        "/diff?a=0/../secret.jsonl&b=0/../secret.jsonl",
    ]
    for url in forbidden:
        response = http.get(url)
        assert response.status_code == 403, url
        assert "Oslo" not in response.text
    for url in ("/runs/1/x.jsonl", "/runs/0/notes.txt", "/runs/0/missing.jsonl", "/runs/x/y"):
        assert http.get(url).status_code == 404, url
    post = post_feedback(http, "0/%2e%2e/secret.jsonl", rating="down")
    assert post.status_code == 403  # type: ignore[attr-defined]
    assert read_trace(outside).feedback() == []
    assert "link.jsonl" not in client(folder).get("/").text  # a link out is not even listed


def test_live_state_follows_a_growing_trace(folder: Path) -> None:
    path = synthetic_trace(
        folder / "live.jsonl",
        run_id="live",
        created="2026-01-01T00:00:00Z",
        steps=3,
        finished=False,
    )
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:5]) + "\n")
    http = client(folder)
    page = http.get("/runs/0/live.jsonl", params={"live": "1"}).text
    assert 'data-live-state="/runs/0/live.jsonl/state"' in page and 'data-live-lines="5"' in page
    assert http.get("/runs/0/live.jsonl/state").json() == {"lines": 5, "finished": False}
    path.write_text("\n".join(lines) + "\n")
    assert http.get("/runs/0/live.jsonl/state").json()["lines"] == len(lines)
    finished = synthetic_trace(folder / "done.jsonl", run_id="d", created="2026-01-01", steps=1)
    assert http.get("/runs/0/done.jsonl/state").json()["finished"] is True
    done_page = http.get("/runs/0/done.jsonl", params={"live": "1"}).text
    assert "data-live-state" not in done_page
    assert finished.exists()


def test_diff_uses_the_traces_diff_alignment(folder: Path) -> None:
    a = weather_run(folder, answer="18 C and cloudy.")
    b = weather_run(folder, answer="Sunny!")
    expected = diff_traces(read_trace(a), read_trace(b))
    assert expected.first_difference == 1
    html = client(folder).get("/diff", params={"a": ref(folder, a), "b": ref(folder, b)}).text
    assert 'class="differs first-difference" ' not in html
    row = re.search(r'<tr id="diff-step-(\d+)" class="differs first-difference">', html)
    assert row is not None and int(row.group(1)) == expected.first_difference
    assert "answer: Sunny!" in html and "First difference at" in html
    same = client(folder).get("/diff", params=[("run", ref(folder, a)), ("run", ref(folder, a))])
    assert "Same steps." in same.text
    assert client(folder).get("/diff", params={"a": ref(folder, a)}).status_code == 400


def test_evaluations_pages(folder: Path) -> None:
    eval_run(folder / "evals" / "old", {"word0", "word1"})
    eval_run(folder / "evals" / "new", {f"word{i}" for i in range(6)})
    http = client(folder)
    listing = http.get("/evals").text
    assert "old" in listing and "new" in listing and "<svg" in listing
    assert len(re.findall(r'<rect [^>]*class="bar', listing)) == 6  # 3 metrics x 2 versions
    assert "33%" in listing and "100%" in listing
    one = http.get("/evals/0/evals/old")
    assert one.status_code == 200
    assert len(re.findall(r'<tr class="(?:passed|not-passed)">', one.text)) == 6
    assert 'href="/runs/0/evals/old/traces/' in one.text  # each case links to its trace
    compared = http.get("/compare", params={"a": "0/evals/old", "b": "0/evals/new"}).text
    assert "4 better, 0 worse" in compared
    assert "mcnemar" in compared.lower() and re.search(r'class="num p-value">0\.\d{4}', compared)
    assert http.get("/evals/0/nothing").status_code == 404
    # the eval's traces are runs too
    assert len(listed(http.get("/").text)) == 12


def test_the_view_extra_loads_only_for_the_view_command() -> None:
    code = (
        "import sys, agentloop, agentloop.cli, agentloop.trace; "
        "print(sorted(m for m in ('starlette', 'jinja2', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    missing = (
        "import sys; sys.modules['starlette'] = None; from agentloop.cli import main; "
        "sys.exit(main(['view', '.']))"
    )
    run = subprocess.run([sys.executable, "-c", missing], capture_output=True, text=True)
    assert run.returncode == 2
    assert "needs the view extra (starlette is not installed)" in run.stderr


def test_the_view_command_names_what_to_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["view", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["view", str(tmp_path), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_every_route_over_hostile_and_broken_traces(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's hostile corpus (tests/test_cli_hostile.py): control sequences everywhere, deep
    nesting, huge, torn, non-UTF-8 and newer-format files. Valid ones show; broken ones are
    left out of the list and answer a clear 4xx, never a server error."""
    monkeypatch.setattr(trace_module, "MAX_LINE_BYTES", 4096)
    valid, bad = hostile_corpus(folder)
    http = client(folder)
    listing = http.get("/")
    assert listing.status_code == 200
    readable = [*valid, *(folder / "made").glob("*.jsonl")]  # the corpus's sources too
    expected = sorted(escape(read_trace(p).run_id) for p in readable)  # written out, as below
    assert sorted(listed(listing.text)) == expected
    assert "\u202e" not in listing.text and "\x1b" not in listing.text
    for path in valid:
        name = "/runs/0/" + quote(path.name)
        page = http.get(name)
        assert page.status_code == 200
        assert "\u202e" not in page.text and "\x1b" not in page.text and "\r" not in page.text
        assert "\\u202eevil" in page.text and "\\x1b[31mred" in page.text  # shown, not obeyed
        assert http.get(name + "/state").json()["finished"] is True
        assert (
            http.get("/diff", params={"a": "0/" + path.name, "b": "0/" + path.name}).status_code
            == 200
        )
    for path in bad:
        response = http.get("/runs/0/" + quote(path.name))
        assert response.status_code in (404, 422), path.name
        assert "Traceback" not in response.text
