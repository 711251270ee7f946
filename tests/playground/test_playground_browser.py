"""The playground page in a real browser: Playwright driving Debian's chromium against a real
``polyfuse serve`` whose presets point at the fake upstream on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playground_helpers import (
    ANSWERS,
    API_KEY,
    FUSED,
    UPSTREAM_SECRET,
    XSS_ANSWERS,
    XSS_TRIGGER,
    Served,
    wait_until,
)
from playwright.sync_api import Browser, Page, expect, sync_playwright

from polyfuse.testing import FakeOpenAIServer, LatencyModel

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DONE_TIMEOUT_MS = 60_000
SCREENSHOT_ENV = "POLYFUSE_UPDATE_SCREENSHOT"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "playground.png"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope: Playwright's sync API keeps an event loop running in this thread until it
    # stops, and async tests in later modules need the thread free of it.
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip(
            "Debian's chromium is not installed (apt-get install -y chromium; .ci/run "
            "installs it when it can reach the Debian mirror)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Watched:
    """A page plus everything it said: dialogs opened, script errors, console errors."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", self._console)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message: Any) -> None:
        # A refused request (401 on purpose) is logged by the browser itself; not a page bug.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.errors.append(f"console: {message.text}")


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(DONE_TIMEOUT_MS)
    watched = Watched(page)
    yield watched
    context.close()
    assert watched.dialogs == [], "the page opened a dialog"
    assert watched.errors == [], "the page logged errors (a CSP violation or a script error)"


def open_playground(watched: Watched, server: Served, key: str = API_KEY) -> Page:
    page = watched.page
    page.goto(server.root_url + "/")
    page.fill("#api-key", key)
    page.click("#reload-presets")
    expect(page.locator("#preset-a option[value='fusion/panel']")).to_have_count(1)
    return page


def ask(page: Page, preset: str, prompt: str, *, system: str = "") -> None:
    page.select_option("#preset-a", preset)
    if system:
        page.fill("#system", system)
    page.fill("#prompt", prompt)
    page.click("#send")


def wait_done(page: Page, panes: int = 1) -> None:
    states = page.get_by_test_id("run-state")
    expect(states).to_have_count(panes)
    for i in range(panes):
        expect(states.nth(i)).to_have_text("done", timeout=DONE_TIMEOUT_MS)
    expect(page.locator("#send")).to_be_enabled()


def candidate(page: Page, index: int, pane: int = 0) -> Any:
    return (
        page.get_by_test_id("pane")
        .nth(pane)
        .locator(f"[data-testid=candidate][data-index='{index}']")
    )


def test_the_page_lists_presets_streams_candidates_and_the_fused_answer(
    watched: Watched, server: Served, upstream: FakeOpenAIServer
) -> None:
    upstream.latency = LatencyModel(tokens_per_s=12)  # slow enough to watch the streams
    page = open_playground(watched, server)
    options = page.locator("#preset-a option").all_text_contents()
    assert {"fusion/panel", "fusion/vote", "fusion/failing", "fusion/quorum"} <= set(options)

    ask(page, "fusion/panel", "Why is the sky blue?", system="Answer in plain words.")
    # While candidates stream, a column is running with part of its text.
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid=candidate][data-status=running]')]
              .some(c => c.querySelector('[data-testid=cand-text]').textContent.length > 0)"""
    )
    # The fused answer streams too, before the run is done.
    page.wait_for_function(
        """() => document.querySelector('[data-testid=fused]').textContent.length > 0
              && document.querySelector('[data-testid=run-state]').textContent !== 'done'"""
    )
    wait_done(page)

    for index, model in enumerate(["alpha", "beta", "gamma"]):
        column = candidate(page, index)
        expect(column.get_by_test_id("cand-status")).to_have_text("ok")
        expect(column.get_by_test_id("cand-model")).to_have_text(model)
        expect(column.get_by_test_id("cand-text")).to_have_text(ANSWERS[model])
        tokens = column.get_by_test_id("cand-tokens").text_content() or ""
        assert tokens == str(len(ANSWERS[model].split()))  # the fake counts words as tokens
        assert re.fullmatch(
            r"\d+\.\d\d s", column.get_by_test_id("cand-latency").text_content() or ""
        )
        assert re.fullmatch(r"\d+\.\d\d s", column.get_by_test_id("cand-ttft").text_content() or "")

    passages = page.get_by_test_id("passage")
    expect(passages).to_have_count(3)
    sources = page.get_by_test_id("passage-sources").all_text_contents()
    assert sources == ["#0", "#1", "#2"]
    words = [p.evaluate("n => n.firstChild.textContent") for p in passages.all()]
    assert " ".join(words) == FUSED

    expect(page.get_by_test_id("agg-method")).to_have_text("fuse")
    expect(page.get_by_test_id("fallback")).to_have_text("none")
    expect(page.get_by_test_id("contribution-row")).to_have_count(3)
    expect(page.get_by_test_id("contributions").locator("meter")).to_have_count(3)
    total = page.get_by_test_id("usage-total").locator("td")
    expect(total.first).to_have_text("4")  # 3 candidates + the fusor
    expect(page.get_by_test_id("usage-aggregator").locator("td").first).to_have_text("1")

    sent = [r for r in upstream.requests if r["model"] == "alpha"][-1]
    assert sent["messages"][0] == {"role": "system", "content": "Answer in plain words."}


def test_multi_turn_history_and_storage(
    watched: Watched, server: Served, upstream: FakeOpenAIServer
) -> None:
    page = open_playground(watched, server)
    ask(page, "fusion/panel", "Why is the sky blue?")
    wait_done(page)
    expect(page.get_by_test_id("transcript")).to_have_text("user: Why is the sky blue?")
    page.fill("#prompt", "And why are sunsets red?")
    page.click("#send")
    wait_done(page)
    expect(page.get_by_test_id("transcript")).to_have_text(
        f"user: Why is the sky blue?assistant: {FUSED}user: And why are sunsets red?"
    )
    second = [r for r in upstream.requests if r["model"] == "beta"][-1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == FUSED

    stored = json.loads(page.evaluate("localStorage.getItem('polyfuse.playground.runs')"))
    assert len(stored) == 2
    assert page.evaluate("sessionStorage.getItem('polyfuse.playground.apiKey')") == API_KEY
    all_local = page.evaluate("JSON.stringify(Object.assign({}, localStorage))")
    assert API_KEY not in all_local  # the key never goes to local storage

    page.reload()
    items = page.locator("#history-list button")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("sunsets")
    items.last.click()
    wait_done(page)
    expect(candidate(page, 1).get_by_test_id("cand-text")).to_have_text(ANSWERS["beta"])
    expect(page.get_by_test_id("passage")).to_have_count(3)


def test_a_failing_candidate_shows_its_error(
    watched: Watched, server: Served, upstream: FakeOpenAIServer
) -> None:
    page = open_playground(watched, server)
    ask(page, "fusion/failing", "Why is the sky blue?")
    wait_done(page)
    broken = candidate(page, 1)
    expect(broken.get_by_test_id("cand-status")).to_have_text("failed")
    expect(broken.get_by_test_id("cand-error")).to_have_text(
        "ServerError: [broken] HTTP 500: the endpoint failed (server error)"
    )
    expect(candidate(page, 0).get_by_test_id("cand-status")).to_have_text("ok")
    assert UPSTREAM_SECRET not in page.content()


def test_a_fallback_shows_its_reason_and_the_candidate_it_returned(
    watched: Watched, server: Served, upstream: FakeOpenAIServer
) -> None:
    page = open_playground(watched, server)
    ask(page, "fusion/badfusor", "Why is the sky blue?")
    wait_done(page)
    expect(page.get_by_test_id("fallback")).to_have_text(
        "AggregationError: the fusor broken failed: [broken] HTTP 500: the endpoint failed "
        "(server error); returned candidate #0 instead"
    )
    expect(page.get_by_test_id("contribution-row").first).to_contain_text("selected")
    expect(page.get_by_test_id("passage-sources").first).to_have_text("#0")
    assert UPSTREAM_SECRET not in page.content()


def test_a_straggler_cancelled_by_the_quorum_shows_as_cancelled(
    watched: Watched, server: Served, upstream: FakeOpenAIServer
) -> None:
    page = open_playground(watched, server)
    ask(page, "fusion/quorum", "Why is the sky blue?")
    wait_done(page)
    slow = candidate(page, 2)
    expect(slow.get_by_test_id("cand-status")).to_have_text("cancelled (quorum)")
    expect(slow.get_by_test_id("cand-error")).to_have_text("cancelled: quorum of 2 reached")
    assert slow.get_attribute("data-status") == "cancelled"


def test_model_output_is_shown_as_text_and_runs_nothing(
    watched: Watched, server: Served, upstream: FakeOpenAIServer
) -> None:
    page = open_playground(watched, server)
    ask(page, "fusion/panel", f"Reply with {XSS_TRIGGER}")
    wait_done(page)
    for index, model in enumerate(["alpha", "beta", "gamma"]):
        expect(candidate(page, index).get_by_test_id("cand-text")).to_have_text(XSS_ANSWERS[model])
    expect(page.get_by_test_id("fused")).to_contain_text("<img src=x onerror=alert(1)>")
    expect(page.get_by_test_id("fused")).to_contain_text("<script>alert(2)</script>")
    panes = page.locator("#panes")
    expect(panes.locator("img")).to_have_count(0)
    expect(panes.locator("script")).to_have_count(0)
    expect(panes.locator("a")).to_have_count(0)
    page.reload()  # a stored run is drawn from local storage: still text
    page.locator("#history-list button").first.click()
    wait_done(page)
    expect(page.locator("#panes img")).to_have_count(0)
    expect(page.locator("#panes script")).to_have_count(0)
    # the fixture asserts that no dialog opened


def test_a_wrong_api_key_shows_the_servers_401_message(
    watched: Watched, server: Served, upstream: FakeOpenAIServer
) -> None:
    page = open_playground(watched, server)
    page.select_option("#preset-a", "fusion/panel")
    page.fill("#api-key", "not-the-key")
    page.fill("#prompt", "Why is the sky blue?")
    page.click("#send")
    expect(page.get_by_test_id("pane-error")).to_have_text("401: Incorrect API key provided")
    expect(page.locator("#status")).to_have_text("401: Incorrect API key provided")
    page.click("#reload-presets")
    expect(page.locator("#status")).to_have_text("401: Incorrect API key provided")
    assert not [r for r in upstream.requests]  # nothing reached the upstream


def test_stop_cancels_the_run_and_its_upstream_calls(
    watched: Watched, server: Served, upstream: FakeOpenAIServer
) -> None:
    page = open_playground(watched, server)
    ask(page, "fusion/stuck", "Why is the sky blue?")
    expect(candidate(page, 0).get_by_test_id("cand-status")).to_have_text("running")
    assert wait_until(lambda: upstream.active == 1)
    page.click("#stop")
    expect(page.get_by_test_id("pane-error")).to_have_text("stopped")
    assert wait_until(lambda: upstream.active == 0 and upstream.disconnects == 1)
    expect(page.locator("#send")).to_be_enabled()


def test_compare_mode_runs_two_presets_at_once(
    watched: Watched, server: Served, upstream: FakeOpenAIServer
) -> None:
    upstream.latency = LatencyModel(tokens_per_s=12)
    page = open_playground(watched, server)
    page.check("#compare")
    page.select_option("#preset-b", "fusion/vote")
    ask(page, "fusion/panel", "Why is the sky blue?")
    # Both panes have candidates streaming at the same moment.
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid=pane]')].filter(
              p => p.querySelector('[data-testid=candidate][data-status=running]')).length === 2"""
    )
    wait_done(page, panes=2)
    methods = page.get_by_test_id("agg-method").all_text_contents()
    assert methods == ["fuse", "vote"]
    for pane in range(2):
        for index in range(3):
            expect(candidate(page, index, pane).get_by_test_id("cand-status")).to_have_text("ok")
    expect(page.get_by_test_id("pane").nth(1).get_by_test_id("fused")).to_have_text(
        re.compile(re.escape(ANSWERS["alpha"][:40]))
    )


def test_screenshot(
    watched: Watched, server: Served, upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    """Draws a run with every candidate state, attribution and cost; with
    POLYFUSE_UPDATE_SCREENSHOT=1 it also updates docs/playground.png."""
    page = open_playground(watched, server)
    page.locator("details summary").click()
    page.fill(
        "#prices", "alpha=0.5/1.5\nbeta=0.5/1.5\ngamma=0.5/1.5\nbroken=1/2\nslow=1/2\nfusor=2.5/10"
    )
    ask(page, "fusion/showcase", "Why is the sky blue?", system="Answer in plain words.")
    wait_done(page)
    statuses = page.get_by_test_id("cand-status").all_text_contents()
    assert statuses == ["ok", "ok", "ok", "failed", "cancelled (deadline)"]
    expect(page.get_by_test_id("usage-total").locator("td").last).to_have_text(re.compile(r"^\$"))
    target = tmp_path / "playground.png"
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
    if os.environ.get(SCREENSHOT_ENV) == "1":
        shutil.copyfile(target, DOCS_SCREENSHOT)
