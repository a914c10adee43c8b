"""The admin console in a real headless browser (Debian's chromium, driven by Playwright).

Against a real `llmserve serve` (a canary model of two fake variants and a slow fake model) with
an admin key: a key made in the form works with the secret the page showed, shows its stream in
flight, takes new limits and gets 401 once revoked in the page; two keys' usage is plotted per
hour and day and equals `llmserve keys usage`, and the CSV holds the same numbers; a batch of
another key is listed with its owner and cancelled; the canary slider at 100 % for v2 sends every
key's new requests to v2. Throughout: no console error, the admin key in no URL, no log line and
not in localStorage, and every admin endpoint the page added answers 401 without the key. With
LLMSERVE_UPDATE_SCREENSHOTS=1 it saves the README's screenshot (docs/screenshots/admin.png).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

pytestmark = [pytest.mark.slow, pytest.mark.browser]
ADMIN_KEY = "adm-console-test-secret-7f3a"
CANARY = "chat-canary"
SLOW = "slow-fake"
DOCS_SCREENSHOT = Path(__file__).parents[2] / "docs" / "screenshots" / "admin.png"
CONFIG = f"""
models:
  - name: {CANARY}
    backend: fake
    fake_token_delay_s: 0.02
    variants:
      - {{name: v1, source: fake, weight: 50}}
      - {{name: v2, source: fake, weight: 50}}
  - name: {SLOW}
    source: fake
    backend: fake
    fake_token_delay_s: 0.2
"""
expect.set_options(timeout=60_000)  # NOTE: a slow CPU meets every expectation, just later


@dataclass(frozen=True)
class AdminServer:
    url: str
    log: Path
    env: dict[str, str]


def chromium_path() -> str:
    """Debian's chromium (scripts/install-services.sh installs it); CI must not skip."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/install-services.sh installs it")
        pytest.skip("chromium is not installed (run scripts/install-services.sh)")
    return path


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminServer]:
    """`llmserve serve --config` with the admin key in the environment; its log in a file."""
    home = tmp_path_factory.mktemp("admin-home")
    (home / "llmserve.yaml").write_text(CONFIG, encoding="utf-8")
    env = {**os.environ, "LLMSERVE_HOME": str(home), "LLMSERVE_ADMIN_KEY": ADMIN_KEY}
    log = home / "server.log"
    command = [sys.executable, "-m", "llmserve", "serve", "--port", "0"]
    command += ["--config", str(home / "llmserve.yaml")]
    with log.open("w") as out, subprocess.Popen(command, env=env, stdout=out, stderr=out) as proc:
        try:
            found: list[str] = []

            def listening() -> bool:
                found[:] = re.findall(r"(http://127\.0\.0\.1:\d+)/v1", log.read_text())
                return bool(found) or proc.poll() is not None

            wait_until(listening, "the server listens", timeout_s=120)
            assert found, log.read_text()
            yield AdminServer(found[0], log, env)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield browser
        browser.close()


@dataclass
class Watched:
    """What a page did: its console errors and every URL it requested."""

    errors: list[str]
    urls: list[str]


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1200, "height": 800}, accept_downloads=True)
    yield page
    page.close()


def watch(page: Page) -> Watched:
    watched = Watched([], [])
    page.on("console", lambda m: watched.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    page.on("request", lambda request: watched.urls.append(request.url))
    return watched


def sign_in(page: Page, server: AdminServer) -> None:
    """From the start page to the console, signed in with the admin key."""
    page.goto(server.url + "/")
    page.get_by_role("link", name="Admin console").click()
    expect(page).to_have_title("llmserve admin")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.get_by_label("Admin key").fill(ADMIN_KEY)
    page.get_by_label("Admin key").press("Enter")  # keyboard: the form submits
    expect(page.locator("#console")).to_be_visible()


def check_key_kept_secret(page: Page, watched: Watched) -> None:
    """The admin key is in sessionStorage only: no URL, no localStorage; no console error."""
    assert watched.errors == []
    assert not any(ADMIN_KEY in url for url in watched.urls)
    assert ADMIN_KEY not in page.evaluate("JSON.stringify(localStorage)")
    assert page.evaluate("sessionStorage.getItem('llmserve.adminKey')") == ADMIN_KEY


def admin(server: AdminServer) -> httpx.Client:
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    return httpx.Client(base_url=server.url, headers=auth, timeout=60)


def make_key(server: AdminServer, name: str, **limits: Any) -> str:
    with admin(server) as client:
        response = client.post("/admin/keys", json={"name": name, **limits})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def chat(
    server: AdminServer, secret: str, model: str = CANARY, max_tokens: int = 3
) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {secret}"}
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        json={**body, "max_tokens": max_tokens},
        headers=headers,
        timeout=60,
    )


def key_row(page: Page, name: str) -> Any:
    return page.locator(f'#keys-table tr[data-key="{name}"]')


def stream_in_background(
    server: AdminServer, secret: str, stop: threading.Event
) -> tuple[threading.Thread, list[str]]:
    """A stream of the slow model (up to 40 s) read until `stop` is set; then the client hangs
    up. The list gets each line as it arrives."""
    lines: list[str] = []
    body = {"model": SLOW, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    body |= {"max_tokens": 200, "ignore_eos": True}

    def run() -> None:
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx.stream(
            "POST", f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=120
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                lines.append(line)
                if stop.is_set():
                    return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, lines


def test_a_key_made_in_the_form_works_streams_takes_limits_and_is_revoked(
    page: Page, server: AdminServer
) -> None:
    watched = watch(page)
    sign_in(page, server)
    page.get_by_label("Key name").fill("alice")
    page.get_by_label("Max concurrency", exact=True).fill("2")
    page.get_by_label("Requests per minute", exact=True).fill("100")
    page.get_by_label("Tokens per minute", exact=True).fill("100000")
    page.get_by_label("Allowed models").fill(f"{CANARY}, {SLOW}")
    page.get_by_label("Expires in").fill("30d")
    page.get_by_role("button", name="Create key").click()
    secret_box = page.get_by_label("New key's secret")
    expect(secret_box).to_have_value(re.compile(r"^lls-"))
    secret = secret_box.input_value()
    page.get_by_role("button", name="Copy secret").click()
    row = key_row(page, "alice")
    expect(row).to_contain_text("2 at once · 100 rpm · 100000 tpm")
    expect(row.locator("td").nth(2)).to_have_text(secret[-4:])
    expect(row).to_contain_text(f"{CANARY}, {SLOW}")
    expect(row).to_contain_text("active")

    assert chat(server, secret).status_code == 200  # the secret the page showed works

    stop = threading.Event()
    thread, lines = stream_in_background(server, secret, stop)
    wait_until(lambda: len(lines) > 2, "the stream sends its first tokens")
    expect(row.locator("td.in-flight")).to_have_text("1")  # while it streams
    slots = page.locator('#slots-table tr[data-key="alice"] td.slots')
    expect(slots).to_contain_text("1 / 2")
    assert not any(line == "data: [DONE]" for line in lines)  # seen while it still streamed
    stop.set()
    thread.join(timeout=120)
    expect(row.locator("td.in-flight")).to_have_text("0")  # the hang-up freed the slot

    page.get_by_role("button", name="Edit limits of alice").click()
    page.get_by_label("New max concurrency").fill("5")
    page.get_by_label("New requests per minute").fill("")
    page.get_by_role("button", name="Save limits").click()
    expect(row).to_contain_text("5 at once · no rpm limit · 100000 tpm")
    with admin(server) as client:
        listed = {k["name"]: k for k in client.get("/admin/keys").json()["data"]}
    assert (listed["alice"]["max_concurrency"], listed["alice"]["rpm"]) == (5, None)

    page.get_by_role("button", name="Revoke alice").click()
    expect(page.locator("#revoke-dialog")).to_contain_text('Revoke the key "alice"')
    page.get_by_role("button", name="Confirm revoke").click()
    expect(row).to_contain_text("revoked")
    expect(page.get_by_role("button", name="Revoke alice")).to_have_count(0)
    revoked = chat(server, secret)
    assert revoked.status_code == 401
    assert "this key was revoked" in revoked.json()["error"]["message"]
    check_key_kept_secret(page, watched)


def cli_usage(server: AdminServer) -> dict[tuple[str, str], dict[str, int]]:
    command = [sys.executable, "-m", "llmserve", "keys", "usage", "--json"]
    out = subprocess.run(command, env=server.env, capture_output=True, text=True, check=True)
    fields = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors")
    return {
        (row["key_name"], row["model"]): {f: row[f] for f in (*fields, "rejections")}
        for row in json.loads(out.stdout)
    }


def page_usage(page: Page) -> dict[tuple[str, str], dict[str, int]]:
    """The usage table's totals per key and model."""
    classes = ("requests", "prompt", "completion", "total", "errors", "rejections")
    names = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors")
    table: dict[tuple[str, str], dict[str, int]] = {}
    for row in page.locator("#usage-table tbody tr").all():
        key = (row.get_attribute("data-key") or "", row.get_attribute("data-model") or "")
        values = [int(row.locator(f"td.{c}").inner_text()) for c in classes]
        table[key] = dict(zip((*names, "rejections"), values, strict=True))
    return table


def plotted(page: Page, key: str) -> int:
    """The sum of the plotted bars of `key`."""
    bars = page.locator(f'#usage-plot rect[data-key="{key}"]')
    return sum(int(bar.get_attribute("data-value") or 0) for bar in bars.all())


def test_two_keys_usage_is_plotted_per_hour_and_day_and_equals_the_cli(
    page: Page, server: AdminServer, tmp_path: Path
) -> None:
    one = make_key(server, "u-one")
    two = make_key(server, "u-two", rpm=2)
    for _ in range(3):
        assert chat(server, one, max_tokens=5).status_code == 200
    assert chat(server, two, max_tokens=9).status_code == 200
    assert chat(server, two, max_tokens=9).status_code == 200
    assert chat(server, two).status_code == 429  # rpm 2: counted as a 429 of u-two
    cli = cli_usage(server)

    watched = watch(page)
    sign_in(page, server)
    page.get_by_label("Bucket").select_option("hour")
    page.get_by_role("button", name="Show usage").click()
    expect(page.locator('#usage-plot rect[data-key="u-two"]').first).to_be_attached()
    assert page_usage(page) == cli
    for key in ("u-one", "u-two"):
        tokens = sum(v["total_tokens"] for (name, _), v in cli.items() if name == key)
        assert tokens > 0 and plotted(page, key) == tokens
    expect(page.locator("#usage-caption")).to_contain_text("Total tokens per hour and key")
    expect(page.locator("#usage-legend")).to_contain_text("u-one")

    page.get_by_label("Plotted value").select_option("rejections")
    assert plotted(page, "u-two") == 1
    page.get_by_label("Plotted value").select_option("total_tokens")

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download CSV").click()
    path = tmp_path / "usage.csv"
    download_info.value.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    for (key, model), totals in cli.items():
        mine = [r for r in rows if (r["key_name"], r["model"]) == (key, model)]
        assert sum(int(r["total_tokens"]) for r in mine) == totals["total_tokens"]
        assert sum(int(r["rejections"]) for r in mine) == totals["rejections"]

    page.get_by_label("Bucket").select_option("day")
    expect(page.locator("#usage-caption")).to_contain_text("per day and key")
    assert page_usage(page) == cli
    assert plotted(page, "u-one") == sum(
        v["total_tokens"] for (name, _), v in cli.items() if name == "u-one"
    )
    check_key_kept_secret(page, watched)


def upload_batch(server: AdminServer, secret: str, num_lines: int) -> str:
    """A batch of `num_lines` slow chats for the key `secret`; its id."""
    line = {"method": "POST", "url": "/v1/chat/completions"}
    body = {"model": SLOW, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 30}
    text = "".join(
        json.dumps({"custom_id": f"line-{i}", **line, "body": {**body, "ignore_eos": True}}) + "\n"
        for i in range(num_lines)
    )
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        files = {"file": ("batch.jsonl", text.encode(), "application/jsonl")}
        uploaded = client.post("/v1/files", data={"purpose": "batch"}, files=files)
        assert uploaded.status_code == 200, uploaded.text
        created = client.post(
            "/v1/batches",
            json={
                "input_file_id": uploaded.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


def test_jobs_of_every_key_are_listed_with_their_owner_and_cancelled(
    page: Page, server: AdminServer
) -> None:
    owner = make_key(server, "batch-owner")
    batch_id = upload_batch(server, owner, num_lines=20)
    watched = watch(page)
    sign_in(page, server)
    row = page.locator(f'#jobs-table tr[data-batch="{batch_id}"]')
    expect(row).to_contain_text("batch-owner")
    expect(row.get_by_label(f"Progress of {batch_id}")).to_be_attached()
    page.get_by_role("button", name=f"Cancel batch {batch_id}").click()
    expect(row.locator("td.batch-status")).to_have_text(re.compile(r"^cancell(ing|ed)$"))
    with httpx.Client(base_url=server.url, timeout=60) as client:
        got = client.get(f"/v1/batches/{batch_id}", headers={"Authorization": f"Bearer {owner}"})
    assert got.json()["status"] in ("cancelling", "cancelled")
    check_key_kept_secret(page, watched)


def test_the_canary_slider_at_100_percent_sends_every_key_to_v2(
    page: Page, server: AdminServer
) -> None:
    secrets = [make_key(server, f"canary-user-{i}") for i in range(8)]
    before = {chat(server, s).headers["x-llmserve-variant"] for s in secrets}
    assert before == {"v1", "v2"}  # 50/50: some keys meet each variant

    watched = watch(page)
    sign_in(page, server)
    v2 = page.get_by_label(f"Weight of v2 in {CANARY}")
    expect(v2).to_have_value("50")
    v2.focus()
    page.keyboard.press("End")  # keyboard: a range input goes to its maximum
    expect(v2).to_have_value("100")
    expect(page.get_by_label(f"Weight of v1 in {CANARY}")).to_have_value("0")
    page.get_by_role("button", name=f"Apply weights of {CANARY}").click()
    expect(page.locator("#status")).to_contain_text("v1 0 %, v2 100 %")
    with admin(server) as client:
        weights = client.get(f"/admin/models/{CANARY}/variants").json()["variants"]
    assert {v["name"]: v["weight"] for v in weights} == {"v1": 0.0, "v2": 100.0}

    after = [chat(server, s).headers["x-llmserve-variant"] for s in secrets * 2]
    assert set(after) == {"v2"}
    check_key_kept_secret(page, watched)

    if os.environ.get("LLMSERVE_UPDATE_SCREENSHOTS"):
        page.locator("#usage-form button[type=submit]").click()
        page.screenshot(path=str(DOCS_SCREENSHOT), full_page=True)


def test_the_console_fits_a_phone_screen(browser: Browser, server: AdminServer) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    watched = watch(page)
    sign_in(page, server)
    expect(page.get_by_role("button", name="Create key")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    check_key_kept_secret(page, watched)
    page.close()


NEW_ENDPOINTS = [
    ("GET", "/admin/usage?bucket=hour&since=24h"),
    ("GET", "/admin/usage?bucket=day"),
    ("GET", "/admin/load"),
    ("GET", "/admin/batches"),
    ("POST", "/admin/batches/batch_x/cancel"),
    ("PATCH", "/admin/keys/u-one"),
]


def test_no_data_without_the_admin_key(page: Page, server: AdminServer) -> None:
    ordinary = make_key(server, "not-admin")
    for method, path in NEW_ENDPOINTS:
        for headers, status in (({}, 401), ({"Authorization": "Bearer wrong"}, 401)):
            response = httpx.request(method, server.url + path, headers=headers, json={})
            assert response.status_code == status, (method, path, response.text)
            assert set(response.json()) == {"error"}
        as_user = httpx.request(
            method, server.url + path, headers={"Authorization": f"Bearer {ordinary}"}, json={}
        )
        assert as_user.status_code == 403, (method, path)

    watched = watch(page)
    page.goto(server.url + "/admin/ui")
    page.get_by_label("Admin key").fill("lls-wrong-admin-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Sign-in failed: Incorrect admin key")
    expect(page.locator("#console")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    assert all("401" in error for error in watched.errors)  # only chromium's log of the 401


def test_the_admin_key_is_in_no_log_line(server: AdminServer) -> None:
    log = server.log.read_text()
    assert "/admin/keys" in log  # the log is the server's request log
    assert ADMIN_KEY not in log
