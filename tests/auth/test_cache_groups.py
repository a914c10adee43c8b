"""Cache groups through the admin API, and which prefix-cache namespace each caller gets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from auth_live_server import MODEL, auth, fake_server_config, serve_in_process

from llmserve.api.app import create_app
from llmserve.auth.base import ANONYMOUS_KEY_ID, Principal
from llmserve.auth.factory import build_gatekeeper
from llmserve.backends.fake import FakeBackend
from llmserve.config import AuthConfig
from llmserve.serving.cache_namespace import namespace_kind
from llmserve.serving.context import ServingContext

ADMIN_KEY = "admin-secret-for-tests-0123456789"


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    config = fake_server_config(tmp_path, AuthConfig(admin_key=ADMIN_KEY))
    app = create_app(config, {MODEL: FakeBackend(MODEL)}, build_gatekeeper(config))
    async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def test_admin_api_sets_and_lists_the_cache_group(admin: httpx.AsyncClient) -> None:
    headers = auth(ADMIN_KEY)
    created = await admin.post(
        "/admin/keys", json={"name": "t1", "cache_group": "team"}, headers=headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["cache_group"] == "team"
    plain = await admin.post("/admin/keys", json={"name": "p"}, headers=headers)
    assert plain.json()["cache_group"] is None
    listed = (await admin.get("/admin/keys", headers=headers)).json()["data"]
    assert {k["name"]: k["cache_group"] for k in listed} == {"t1": "team", "p": None}
    for group in ("", "team|salt:x"):  # "|" would let a group pass for another's salt
        bad = await admin.post(
            "/admin/keys", json={"name": "x", "cache_group": group}, headers=headers
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "cache_group"


def test_namespaces_of_keys_groups_salts_and_anonymous_callers() -> None:
    key = Principal("key_1", "a")
    grouped = Principal("key_2", "b", cache_group="team")
    anonymous = Principal(ANONYMOUS_KEY_ID, "anonymous")
    assert (key.cache_namespace, grouped.cache_namespace) == ("key:key_1", "group:team")
    assert anonymous.cache_namespace == "anonymous"
    context = ServingContext(
        "req_1", "key_2", MODEL, FakeBackend(MODEL), cache_namespace="group:team"
    )
    assert context.request_namespace(None) == "group:team"
    assert context.request_namespace("s") == "group:team|salt:s"
    assert namespace_kind(context.request_namespace("s")) == "salt"
    job = ServingContext("req_2", "key_1", MODEL, FakeBackend(MODEL))  # a batch line: its key's
    assert job.request_namespace(None) == "key:key_1"
    assert (
        ServingContext("req_3", "", MODEL, FakeBackend(MODEL)).request_namespace(None)
        == "anonymous"
    )
    assert [namespace_kind(n) for n in ("key:k", "group:g", "anonymous")] == [
        "key",
        "group",
        "anonymous",
    ]
