"""`llmserve pull` and `llmserve models` against a fake hub on 127.0.0.1, then `serve` offline.

The fake hub answers the way huggingface.co does for the calls `snapshot_download` makes: the
revision's metadata (`/api/models/{repo}/revision/{rev}`), its file tree
(`/api/models/{repo}/tree/{commit}`) and each file (`/{repo}/resolve/{rev}/{file}` with ETag and
X-Repo-Commit headers). It serves the built-in tiny-chat model's files under a made-up name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow
REPO = "llmserve-test/tiny-chat-mirror"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
ROUTE = re.compile(
    r"^/(?:api/models/(?P<api_repo>[^/]+/[^/]+)/(?P<kind>revision|tree)/(?P<api_rev>[^/?]+)"
    r"|(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>[^?]+))"
)


class FakeHub(ThreadingHTTPServer):
    """Serves one repository's files at revisions `main` and COMMIT; records every path asked."""

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.files = files
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class HubHandler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads `server.requests` instead."""

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def _answer(self, *, with_body: bool) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        match = ROUTE.match(self.path)
        repo = match and (match["api_repo"] or match["repo"])
        revision = match and (match["api_rev"] or match["rev"])
        if not match or repo != REPO or revision not in ("main", COMMIT):
            return self._send(
                404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"}
            )
        if match["kind"] == "revision":
            siblings = [{"rfilename": name} for name in self.server.files]
            info = {
                "id": REPO,
                "modelId": REPO,
                "sha": COMMIT,
                "private": False,
                "siblings": siblings,
            }
            return self._send(200, json.dumps(info).encode(), {}, with_body)
        if match["kind"] == "tree":
            tree = [
                {"type": "file", "path": name, "size": len(data), "oid": _oid(data)}
                for name, data in self.server.files.items()
            ]
            return self._send(200, json.dumps(tree).encode(), {}, with_body)
        data = self.server.files.get(match["file"])
        if data is None:
            return self._send(404, b"Entry not found", {"X-Error-Code": "EntryNotFound"})
        headers = {"ETag": f'"{_oid(data)}"', "X-Repo-Commit": COMMIT}
        self._send(200, data, headers, with_body, "application/octet-stream")

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str],
        with_body: bool = True,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Type": content_type}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)


def _oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture(scope="module")
def hub(tiny_chat_path: Path) -> Iterator[FakeHub]:
    files = {p.name: p.read_bytes() for p in tiny_chat_path.iterdir() if p.is_file()}
    server = FakeHub(files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def hub_env(hf_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, "HF_HOME": str(hf_home), **extra}


def llmserve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "llmserve", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_pull_downloads_into_hf_home_and_serve_uses_it_offline(
    hub: FakeHub, tmp_path: Path, tiny_chat_path: Path
) -> None:
    hf_home = tmp_path / "hf"
    pulled = llmserve("pull", REPO, env=hub_env(hf_home, HF_ENDPOINT=hub.url))
    assert pulled.returncode == 0, pulled.stderr
    snapshot = hf_home / "hub" / "models--llmserve-test--tiny-chat-mirror" / "snapshots" / COMMIT
    assert pulled.stdout.startswith(f"{REPO} is in the cache: {snapshot} (")
    assert "100%" in pulled.stderr  # the progress bar ran to the end
    for name, data in hub.files.items():
        assert (snapshot / name).read_bytes() == data
    assert any(r.startswith(f"GET /{REPO}/resolve/") for r in hub.requests)

    listing = llmserve("models", "--base-url", "http://127.0.0.1:9", env=hub_env(hf_home))
    assert re.search(rf"^  {re.escape(REPO)} +\d+\.\d (kB|MB)  main$", listing.stdout, re.M)
    assert "served (http://127.0.0.1:9): no server answers there" in listing.stdout

    offline = hub_env(hf_home, HF_HUB_OFFLINE="1", LLMSERVE_HOME=str(tmp_path / "home"))
    command = [sys.executable, "-m", "llmserve", "serve", "--model", REPO, "--port", "0"]
    with subprocess.Popen(
        command, env=offline, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as server:
        try:
            assert server.stdout is not None
            match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", server.stdout.readline())
            assert match, "serve printed no URL"
            body = {"model": REPO, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
            reply = httpx.post(f"{match.group(1)}/chat/completions", json=body, timeout=120)
            assert reply.status_code == 200, reply.text
            assert reply.json()["usage"]["completion_tokens"] == 4
        finally:
            server.terminate()
            server.wait(timeout=30)


@pytest.mark.parametrize(
    ("extra_env", "reason"),
    [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE=1 forbids downloads"),
        ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "the hub at http://127.0.0.1:9 cannot be reached"),
    ],
)
def test_pull_offline_says_the_model_is_not_cached(
    tmp_path: Path, extra_env: dict[str, str], reason: str
) -> None:
    done = llmserve("pull", REPO, env=hub_env(tmp_path / "hf", **extra_env))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1  # one line, no traceback
    assert done.stderr.startswith(
        f"llmserve pull: model {REPO} is not in the Hugging Face cache ({tmp_path}/hf/hub) "
        f"and {reason}; bring it with `llmserve pull {REPO}` where the hub is reachable"
    )


def test_pull_names_a_missing_model(hub: FakeHub, tmp_path: Path) -> None:
    env = hub_env(tmp_path / "hf", HF_ENDPOINT=hub.url)
    done = llmserve("pull", "llmserve-test/no-such-model", env=env)
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"llmserve pull: no model llmserve-test/no-such-model on {hub.url} that this token may read"
    )
