"""Issue 18, done-when 6: an open server (no keys) is for this machine only.

A foreign `Host` (DNS rebinding) gets 400; a page of another origin, served by a second local
HTTP server and loaded in a real browser (Debian chromium via Playwright), cannot upload a file:
the multipart POST, which needs no CORS preflight, is answered 403 and nothing is stored. The
same page works once its origin is listed in `cors_origins`, so the browser check can fail.
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright
from server_process import serve, write_config

pytestmark = pytest.mark.slow
MODELS = """
models:
  - {name: crawl-chat, source: fake, backend: fake}
"""
ATTACK = """<!doctype html><html><body><script>
async function attack(target, mode) {
  const form = new FormData();
  form.append("purpose", "batch");
  form.append("file", new Blob(["x".repeat(1 << 20)]), "stolen.jsonl");
  try {
    const answer = await fetch(target + "/v1/files", {method: "POST", body: form, mode: mode});
    return answer.status;
  } catch (error) {
    return "blocked";
  }
}
</script></body></html>"""


def chromium_path() -> str:
    """Debian's chromium (scripts/install-services.sh installs it); CI must not skip."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/install-services.sh installs it")
        pytest.skip("chromium is not installed (run scripts/install-services.sh)")
    return path


@contextmanager
def attacker_site(folder: Path) -> Iterator[str]:
    """A second local HTTP server (another port: another origin) serving the attack page."""
    (folder / "index.html").write_text(ATTACK, encoding="utf-8")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}"
    finally:
        site.shutdown()
        site.server_close()


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield browser.new_page()
        browser.close()


def attack_from(page: Page, site: str, server: str) -> int | str:
    """Load the attack page and let it upload to `server`; the status the server answered."""
    page.goto(site + "/index.html")
    with page.expect_response(lambda answer: answer.url == server + "/v1/files") as answered:
        page.evaluate("(target) => attack(target, 'no-cors')", server)  # the page need not read
    return answered.value.status


def stored_files(server: str) -> list[str]:
    listing = httpx.get(server + "/v1/files", timeout=30).json()
    return [item["filename"] for item in listing["data"]]


def test_foreign_host_is_a_400(tmp_path: Path) -> None:
    with serve(write_config(tmp_path, MODELS)) as (_, base_url):
        server = base_url.removesuffix("/v1")
        port = server.rsplit(":", 1)[1]
        rebound = httpx.get(server + "/v1/models", headers={"Host": "attacker.example"})
        assert rebound.status_code == 400
        assert rebound.json()["error"]["code"] == "invalid_host"
        assert "allowed_hosts" in rebound.json()["error"]["message"]
        upload = httpx.post(
            server + "/v1/files",
            headers={"Host": f"attacker.example:{port}"},
            files={"file": ("a.jsonl", b"{}\n")},
            data={"purpose": "batch"},
        )
        assert upload.status_code == 400
        assert stored_files(server) == []
        assert httpx.get(server + "/v1/models", headers={"Host": f"localhost:{port}"}).is_success
        foreign = httpx.get(server + "/v1/models", headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403
        assert foreign.json()["error"]["code"] == "origin_not_allowed"


def test_cross_origin_upload_from_a_browser_is_refused(tmp_path: Path, page: Page) -> None:
    (tmp_path / "site").mkdir()
    with (
        attacker_site(tmp_path / "site") as site,
        serve(write_config(tmp_path, MODELS)) as (
            _,
            base_url,
        ),
    ):
        server = base_url.removesuffix("/v1")
        assert attack_from(page, site, server) == 403
        assert stored_files(server) == []
        assert not any((tmp_path / "home" / "files").glob("*"))


def test_listed_origin_may_upload(tmp_path: Path, page: Page) -> None:
    """The control: with the page's origin in `cors_origins`, the same upload is stored."""
    (tmp_path / "site").mkdir()
    with attacker_site(tmp_path / "site") as site:
        config = write_config(tmp_path, MODELS + f"cors_origins: ['{site}']\n")
        with serve(config) as (_, base_url):
            server = base_url.removesuffix("/v1")
            assert attack_from(page, site, server) == 200
            readable = page.evaluate("(target) => attack(target, 'cors')", server)
            assert readable == 200  # the CORS headers let the listed origin read the answer
            assert stored_files(server) == ["stolen.jsonl", "stolen.jsonl"]
