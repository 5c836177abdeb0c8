"""The viewer in a real browser: Debian's headless Chromium, driven by Playwright, against the
real ``agentloop view`` command serving a folder of real traces on 127.0.0.1.

``make test`` installs Chromium first (``make chromium``); Playwright never downloads a browser
here. Screenshots land in ``test-output/viewer/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from agentloop import read_trace
from viewer_corpus import (
    HOSTILE,
    eval_run,
    failed_run,
    fork_of,
    hostile_run,
    synthetic_trace,
    weather_run,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
]  # Chromium starts slowly on a busy machine

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-output" / "viewer"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("viewer") / "traces"
    folder.mkdir()
    weather = weather_run(folder)
    live = synthetic_trace(
        folder / "live.jsonl",
        run_id="live-run",
        created="2020-01-01T00:00:00Z",
        steps=3,
        finished=False,
    )
    evals = folder.parent / "evals"
    eval_run(evals / "old", {"word0", "word1"})
    eval_run(evals / "new", {f"word{i}" for i in range(6)})
    return {
        "folder": folder,
        "evals": evals,
        "weather": weather,
        "sunny": weather_run(folder, answer="Sunny and warm!", task="Weather in Oslo today?"),
        "failed": failed_run(folder),
        "hostile": hostile_run(folder),
        "replay": fork_of(weather, folder),
        "live": live,
    }


@pytest.fixture(scope="module")
def server(corpus: dict[str, Path]) -> Iterator[str]:
    """``agentloop view TRACES EVALS --port 0``, the real command, until the module's tests
    end; the port the system gave is read from what the command announces."""
    folder = corpus["folder"]
    command = [sys.executable, "-m", "agentloop.cli", "view", str(folder), str(corpus["evals"])]
    log_path = folder.parent / "view.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([*command, "--port", "0"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", log_path.read_text())
        try:
            if found:
                base = found.group(0).rstrip("/")
                with urllib.request.urlopen(base + "/static/viewer.css", timeout=2):
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError(f"agentloop view did not start: {log_path.read_text()}")
        time.sleep(0.1)
    yield base
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Browser]:
    """Started after the corpus and the server: Playwright's sync API keeps an event loop
    running in this thread, where ``Agent.run_sync`` refuses to run."""
    assert os.path.exists(CHROMIUM), "run `make chromium` (Debian's chromium package)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    context.close()


def shot(page: Page, name: str, *, full_page: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / name, full_page=full_page)


def test_list_filter_open_expand_and_give_feedback(
    page: Page, server: str, corpus: dict[str, Path]
) -> None:
    page.goto(server + "/")
    assert page.locator("tr.run").count() == 6 + 12  # and the two evals' traces
    shot(page, "runs.png")

    page.select_option("select[name=status]", "failed")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/?*status=failed*")
    assert page.locator("tr.run").count() == 1
    assert "Weather everywhere?" in page.locator("tr.run").inner_text()
    page.get_by_role("link", name="clear").click()

    page.get_by_role("link", name="Weather in Oslo?").first.click()
    page.wait_for_selector("#step-0")
    result = page.locator("#step-0 details.fold.tool-result")
    assert not result.locator("pre.full").is_visible()
    result.locator("summary").click()
    full = result.locator("pre.full")
    assert full.is_visible() and "END-OF-REPORT" in full.inner_text()
    shot(page, "run.png")

    form = page.locator("#feedback form.feedback-form")
    form.locator("textarea[name=correction]").fill("18 C, cloudy, and windy from the west.")
    form.locator("textarea[name=comment]").fill("forgot the wind")
    form.get_by_role("button", name="▼ Bad").click()
    page.wait_for_selector("#saved")
    assert "forgot the wind" in page.locator("#feedback").inner_text()
    events = read_trace(corpus["weather"]).feedback()
    assert [(e.rating, e.correction, e.comment, e.source) for e in events] == [
        ("down", "18 C, cloudy, and windy from the west.", "forgot the wind", "viewer")
    ]
    shot(page, "feedback.png")

    step = page.locator("#step-0 details.step-feedback")
    step.locator("summary").click()
    step.locator("textarea[name=comment]").fill("the right tool, at once")
    step.get_by_role("button", name="▲ Good").click()
    page.wait_for_selector("#saved")
    assert "the right tool, at once" in page.locator("#step-0 .feedback-list").inner_text()
    last = read_trace(corpus["weather"]).feedback()[-1]
    assert (last.rating, last.comment, last.about_step) == ("up", "the right tool, at once", 0)
    page.evaluate("window.scrollTo(0, 0)")
    page.set_viewport_size({"width": 1100, "height": 1300})
    shot(page, "readme-run.png")  # the picture in README.md (copied to docs/viewer-run.png)


def test_compare_two_runs(page: Page, server: str, corpus: dict[str, Path]) -> None:
    page.goto(server + "/")
    for key in ("weather", "sunny"):
        run_id = read_trace(corpus[key]).run_id
        page.locator(f'tr[data-run-id="{run_id}"] input[type=checkbox]').check()
    page.get_by_role("button", name="Compare two chosen runs").click()
    page.wait_for_selector("#verdict")
    first = page.locator("tr.first-difference")
    assert first.count() == 1 and first.get_attribute("id") == "diff-step-1"
    assert "Sunny and warm!" in first.inner_text()
    assert "First difference at step 1" in page.locator("#verdict").inner_text()
    shot(page, "diff.png", full_page=True)


def test_evaluations_plot_and_compare(page: Page, server: str) -> None:
    page.goto(server + "/evals")
    assert page.locator("svg#plot rect.bar").count() == 6  # 3 metrics x 2 agent versions
    page.locator('input[name=a][value="1/old"]').check()
    page.locator('input[name=b][value="1/new"]').check()
    page.get_by_role("button", name="Compare A and B").click()
    page.wait_for_selector("#deltas")
    assert "mcnemar_exact" in page.locator("#deltas").inner_text()
    assert page.locator("tr.change-better").count() == 4
    shot(page, "compare.png", full_page=True)
    page.locator("tr.change-better a", has_text="diff").first.click()
    page.wait_for_selector("#verdict")
    assert "First difference at step 0" in page.locator("#verdict").inner_text()


def test_hostile_traces_stay_text(page: Page, server: str, corpus: dict[str, Path]) -> None:
    requests: list[str] = []
    console: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: console.append(message.text))
    run_url = server + "/runs/0/" + corpus["hostile"].name
    for url in (server + "/", run_url):
        page.goto(url)
        page.wait_for_load_state("load")
        for summary in page.locator("details > summary").all():
            summary.click()
        page.wait_for_timeout(300)
        assert page.evaluate("typeof window.__pwned") == "undefined", url
        assert page.locator("a[href^='javascript:'], img, #evil, style").count() == 0
        assert page.locator("main").is_visible()
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(251, 252, 253)"
    shown = page.locator("pre", has_text="<script>window.__pwned").first
    assert shown.is_visible()
    assert page.get_by_text(HOSTILE["link"]).first.is_visible()
    assert all(url.startswith(server + "/") for url in requests), requests
    assert not [m for m in console if "Content Security Policy" in m], console
    shot(page, "hostile.png", full_page=True)


def test_live_mode_follows_a_trace_being_written(
    page: Page, server: str, corpus: dict[str, Path]
) -> None:
    path = corpus["live"]
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:5]) + "\n")  # header and step 0 so far
    page.goto(server + "/runs/0/live.jsonl?live=1")
    assert page.locator("#live").is_visible()
    assert page.locator("#step-1").count() == 0
    full = synthetic_trace(
        path.with_name("done.tmp"), run_id="live-run", created="2020-01-01T00:00:00Z", steps=3
    )
    lines = full.read_text().splitlines()
    full.unlink()
    path.write_text("\n".join(lines[:9]) + "\n")
    page.wait_for_selector("#step-1", timeout=30_000)
    path.write_text("\n".join(lines) + "\n")
    page.wait_for_selector("#outcome", timeout=30_000)
    assert "done after 3 steps" in page.locator("#outcome").inner_text()
    assert page.locator("#live").count() == 0
