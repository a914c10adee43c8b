"""`max_storage_mb` of keys through the admin API (issue 18): set, listed, checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from auth_live_server import MODEL, auth, fake_server_config, serve_in_process

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper
from llmserve.backends.fake import FakeBackend
from llmserve.config import AuthConfig

ADMIN_KEY = "admin-secret-for-tests-0123456789"


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    config = fake_server_config(tmp_path, AuthConfig(admin_key=ADMIN_KEY))
    app = create_app(config, {MODEL: FakeBackend(MODEL)}, build_gatekeeper(config))
    async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def test_admin_api_sets_lists_and_enforces_max_storage_mb(admin: httpx.AsyncClient) -> None:
    headers = auth(ADMIN_KEY)
    created = await admin.post(
        "/admin/keys", json={"name": "small", "max_storage_mb": 1}, headers=headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["max_storage_mb"] == 1
    plain = await admin.post("/admin/keys", json={"name": "plain"}, headers=headers)
    assert plain.json()["max_storage_mb"] is None  # the server's jobs.max_storage_mb_per_key
    listed = (await admin.get("/admin/keys", headers=headers)).json()["data"]
    assert {k["name"]: k["max_storage_mb"] for k in listed} == {"small": 1, "plain": None}
    bad = await admin.post("/admin/keys", json={"name": "x", "max_storage_mb": 0}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "max_storage_mb"
    key = auth(created.json()["key"])
    files = {"file": ("a.bin", b"x" * (700 * 1024))}
    first = await admin.post("/v1/files", files=files, data={"purpose": "user_data"}, headers=key)
    assert first.status_code == 200, first.text
    second = await admin.post("/v1/files", files=files, data={"purpose": "user_data"}, headers=key)
    assert second.status_code == 400
    assert second.json()["error"]["code"] == "storage_quota_exceeded"
    assert "storage quota of 1 MB" in second.json()["error"]["message"]
