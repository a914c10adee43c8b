"""The admin API: keys and usage over HTTP, guarded by the admin key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from auth_live_server import MODEL, auth, chat_body, fake_server_config, serve_in_process

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper
from llmserve.backends.fake import FakeBackend
from llmserve.config import AuthConfig

ADMIN_KEY = "admin-secret-for-tests-0123456789"


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a live server whose admin key is ADMIN_KEY (no Authorization set)."""
    config = fake_server_config(tmp_path, AuthConfig(admin_key=ADMIN_KEY))
    app = create_app(config, {MODEL: FakeBackend(MODEL)}, build_gatekeeper(config))
    async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def test_admin_creates_lists_and_revokes_keys(admin: httpx.AsyncClient) -> None:
    body = {"name": "alice", "max_concurrency": 3, "models": [MODEL], "rpm": 60, "expires": "30d"}
    created = await admin.post("/admin/keys", json=body, headers=auth(ADMIN_KEY))
    assert created.status_code == 201
    key = created.json()
    assert key["key"].startswith("lls-") and key["status"] == "active"
    assert (key["max_concurrency"], key["rpm"], key["tpm"], key["models"]) == (3, 60, None, [MODEL])
    chat = await admin.post(
        "/v1/chat/completions", json=chat_body(stream=False), headers=auth(key["key"])
    )
    assert chat.status_code == 200
    assert chat.headers["x-ratelimit-limit-requests"] == "60"
    assert chat.headers["x-ratelimit-remaining-requests"] == "59"
    listed = (await admin.get("/admin/keys", headers=auth(ADMIN_KEY))).json()["data"]
    assert [(k["name"], k["in_flight"]) for k in listed] == [("alice", 0)]
    assert "key" not in listed[0] and key["key"] not in str(listed)
    revoked = await admin.delete("/admin/keys/alice", headers=auth(ADMIN_KEY))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    after = await admin.post(
        "/v1/chat/completions", json=chat_body(stream=False), headers=auth(key["key"])
    )
    assert after.status_code == 401 and after.json()["error"]["code"] == "invalid_api_key"
    again = await admin.delete("/admin/keys/alice", headers=auth(ADMIN_KEY))
    assert again.status_code == 404


async def test_admin_usage_counts_requests_tokens_and_rejections(admin: httpx.AsyncClient) -> None:
    created = await admin.post(
        "/admin/keys", json={"name": "bob", "rpm": 2}, headers=auth(ADMIN_KEY)
    )
    secret = created.json()["key"]
    statuses = []
    for _ in range(3):
        response = await admin.post(
            "/v1/chat/completions", json=chat_body(stream=False), headers=auth(secret)
        )
        statuses.append(response.status_code)
    assert statuses == [200, 200, 429]
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    usage = (await admin.get("/admin/usage", params={"key": "bob"}, headers=auth(ADMIN_KEY))).json()
    [row] = usage["data"]
    assert (row["key_name"], row["model"], row["requests"], row["rejections"]) == (
        "bob",
        MODEL,
        2,
        1,
    )
    assert (
        row["completion_tokens"] > 0
        and row["total_tokens"] == row["prompt_tokens"] + row["completion_tokens"]
    )


async def test_admin_api_needs_the_admin_key(admin: httpx.AsyncClient) -> None:
    created = await admin.post("/admin/keys", json={"name": "carol"}, headers=auth(ADMIN_KEY))
    user_key = created.json()["key"]
    missing = await admin.get("/admin/keys")
    wrong = await admin.get("/admin/keys", headers=auth("not-the-admin-key"))
    user = await admin.get("/admin/keys", headers=auth(user_key))
    assert (missing.status_code, wrong.status_code, user.status_code) == (401, 401, 403)
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert user.json()["error"]["code"] == "insufficient_permissions"


async def test_admin_api_validates_bodies(admin: httpx.AsyncClient) -> None:
    bad = await admin.post(
        "/admin/keys", json={"name": "x", "expires": "soon"}, headers=auth(ADMIN_KEY)
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "expires"
    zero = await admin.post(
        "/admin/keys", json={"name": "x", "max_concurrency": 0}, headers=auth(ADMIN_KEY)
    )
    assert zero.status_code == 400 and zero.json()["error"]["param"] == "max_concurrency"
    await admin.post("/admin/keys", json={"name": "dup"}, headers=auth(ADMIN_KEY))
    dup = await admin.post("/admin/keys", json={"name": "dup"}, headers=auth(ADMIN_KEY))
    assert dup.status_code == 400 and "already exists" in dup.json()["error"]["message"]


async def test_admin_api_is_disabled_without_an_admin_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMSERVE_ADMIN_KEY", raising=False)
    config = fake_server_config(tmp_path)
    app = create_app(config, {MODEL: FakeBackend(MODEL)}, build_gatekeeper(config))
    async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/admin/keys", headers=auth("anything"))
    assert response.status_code == 403
    assert "LLMSERVE_ADMIN_KEY" in response.json()["error"]["message"]
