"""The playground in a real headless browser (Debian's chromium, driven by Playwright).

Against a real `llmserve serve` with an API key: the page loads without console errors, picks the
built-in model, streams a reply in increments, stops a long reply (the server's running count
returns to 0), and shows the server's error for a wrong key. With LLMSERVE_UPDATE_SCREENSHOTS=1 it
saves the screenshot the README shows (docs/screenshots/playground.png).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from web_helpers import KeyedServer

from llmserve.config import BUILTIN_CHAT_MODEL

pytestmark = [pytest.mark.slow, pytest.mark.browser]
# NOTE: the screenshot in the docs is refreshed only on request (LLMSERVE_UPDATE_SCREENSHOTS=1),
# so a test run never leaves the checkout modified.
DOCS_SCREENSHOT = Path(__file__).parents[2] / "docs" / "screenshots" / "playground.png"
# Records the text of the last reply every time the page changes it.
WATCH_REPLY = """() => {
  window.replyLengths = [];
  new MutationObserver(() => {
    const replies = document.querySelectorAll(".message.assistant .content");
    if (replies.length) window.replyLengths.push(replies[replies.length - 1].textContent.length);
  }).observe(document.getElementById("messages"),
             {childList: true, subtree: true, characterData: true});
}"""


def chromium_path() -> str:
    """Debian's chromium (scripts/install-services.sh installs it); CI must not skip."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/install-services.sh installs it")
        pytest.skip("chromium is not installed (run scripts/install-services.sh)")
    return path


# NOTE: Playwright's default 5 s per expectation is a bet on this machine's speed; a slow CPU
# still satisfies every expectation, just later.
expect.set_options(timeout=60_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1200, "height": 820})
    yield page
    page.close()


def console_errors(page: Page) -> list[str]:
    """A list that fills with the page's console errors and uncaught exceptions."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def num_running(server: KeyedServer) -> int:
    """Requests the server is generating for the built-in model (GET /health)."""
    health = httpx.get(f"{server.url}/health", timeout=10).json()
    return int(health["models"][BUILTIN_CHAT_MODEL]["num_running"])


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


def open_playground(page: Page, server: KeyedServer) -> None:
    """From the server's start page to the playground, with the key entered and the model picked."""
    page.goto(server.url + "/")
    page.get_by_role("link", name="Playground").click()
    expect(page).to_have_title("llmserve playground")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")  # the script ran
    page.get_by_label("API key").fill(server.key)
    page.get_by_label("API key").press("Tab")  # change event: the model list reloads
    expect(page.get_by_label("Model").locator("option")).to_have_text([BUILTIN_CHAT_MODEL])
    page.get_by_label("Model").select_option(BUILTIN_CHAT_MODEL)
    page.get_by_label("Temperature").fill("0")  # greedy: the long reply below never ends early


def send(page: Page, text: str) -> None:
    prompt = page.get_by_label("Message")
    prompt.fill(text)
    prompt.press("Enter")


def test_playground_streams_stops_and_shows_errors(
    page: Page, keyed_server: KeyedServer, tmp_path: Path
) -> None:
    errors = console_errors(page)
    open_playground(page, keyed_server)
    page.get_by_label("System prompt").fill("Answer in one short paragraph.")
    page.get_by_label("Max tokens").fill("48")
    page.evaluate(WATCH_REPLY)
    send(page, "Hello! Who are you?")

    stats = page.locator(".message.assistant .stats").last
    expect(stats).to_have_text(re.compile(r"^TTFT \d+ ms · [\d.]+ tokens/s · 48 tokens$"))
    lengths: list[int] = page.evaluate("window.replyLengths")
    increments = sorted(set(lengths))
    assert len(increments) >= 3, f"the reply did not stream: lengths seen {lengths}"
    assert lengths[-1] == increments[-1]  # it only grew
    expect(page.locator(".message.user .content")).to_have_text("Hello! Who are you?")

    page.get_by_label("Max tokens").fill("")  # up to the model's context: a long reply
    send(page, "Now tell me a very long story.")
    expect(page.locator(".message.assistant")).to_have_count(2)  # the long reply's own box
    reply = page.locator(".message.assistant .content").nth(1)
    wait_until(lambda: len(reply.text_content() or "") > 20, "the long reply streams")
    stop = page.get_by_role("button", name="Stop")
    stop_box = stop.bounding_box()
    wait_until(lambda: len(reply.text_content() or "") > 400, "the long reply outgrows its pane")
    # The conversation scrolls in its own pane: the Stop button stays where the user aims.
    assert stop.bounding_box() == stop_box
    expect(stop).to_be_in_viewport(ratio=1)
    assert page.evaluate("document.scrollingElement.scrollTop") == 0
    assert num_running(keyed_server) == 1  # still generating: stopping it has work to do
    stop.click()
    expect(page.locator(".message.assistant .stats").last).to_have_text(
        re.compile(r"^stopped · TTFT \d+ ms$")
    )
    wait_until(lambda: num_running(keyed_server) == 0, "the server frees the stopped request")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    assert errors == []
    screenshot = (
        DOCS_SCREENSHOT if os.environ.get("LLMSERVE_UPDATE_SCREENSHOTS") else tmp_path / "p.png"
    )
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank one

    page.get_by_label("API key").fill("lls-not-a-key")
    send(page, "Am I allowed?")
    expect(page.get_by_role("alert")).to_have_text(
        "401 (invalid_api_key): Incorrect API key provided: lls-no********-key."
    )
    assert page.locator(".message.assistant").count() == 2  # the failed request made no reply
    assert all("401" in error for error in errors)  # only chromium's log of the failed request


def test_regenerate_replaces_the_reply_and_clear_empties(
    page: Page, keyed_server: KeyedServer
) -> None:
    errors = console_errors(page)
    open_playground(page, keyed_server)
    page.get_by_label("Max tokens").fill("8")
    page.get_by_label("Seed").fill("7")
    send(page, "Hi")
    stats = page.locator(".message.assistant .stats")
    expect(stats).to_have_text([re.compile(r"· 8 tokens$")])
    first = page.locator(".message.assistant .content").text_content()
    page.get_by_role("button", name="Regenerate").click()
    expect(stats).to_have_text([re.compile(r"· 8 tokens$")])
    assert page.locator(".message.assistant .content").text_content() == first  # same greedy text
    page.get_by_role("button", name="Clear").click()
    expect(page.locator(".message")).to_have_count(0)
    assert errors == []


def test_replies_render_markdown_without_running_html(
    page: Page, keyed_server: KeyedServer
) -> None:
    page.goto(keyed_server.url + "/playground")
    html = page.evaluate(
        """async (text) => {
            const { renderMarkdown } = await import("/playground/markdown.js");
            const box = document.createElement("div");
            box.append(renderMarkdown(text));
            return box.innerHTML;
        }""",
        "# Title\n**bold** and `x<y`\n\n```python\nprint('<b>')\n```\n"
        "<img src=x onerror=alert(1)> [ok](https://example.org) [bad](javascript:alert(1))",
    )
    assert html == (
        "<h1>Title</h1><p><strong>bold</strong> and <code>x&lt;y</code></p>"
        "<pre><code class=\"language-python\">print('&lt;b&gt;')</code></pre>"
        "<p>&lt;img src=x onerror=alert(1)&gt; "
        '<a href="https://example.org" target="_blank" rel="noopener noreferrer">ok</a> '
        "[bad](javascript:alert(1))</p>"
    )


def test_playground_fits_a_phone_screen(browser: Browser, keyed_server: KeyedServer) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    page.goto(keyed_server.url + "/playground")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")  # settings folded
    expect(page.get_by_role("button", name="Send")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.get_by_text("Settings").click()  # folded on a phone; opens on tap
    expect(page.get_by_label("Model")).to_be_visible()
    page.close()
