"""Key settings are checked before they are stored: admin API 400s and `keys create` errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from auth_live_server import MODEL, auth, fake_server_config, serve_in_process

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper, open_key_store
from llmserve.backends.fake import FakeBackend
from llmserve.cli import main
from llmserve.config import AuthConfig

ADMIN_KEY = "admin-secret-for-tests-0123456789"
ADMIN = auth(ADMIN_KEY)
MAX_LIMIT = 2**31 - 1


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a live server whose admin key is ADMIN_KEY."""
    config = fake_server_config(tmp_path, AuthConfig(admin_key=ADMIN_KEY))
    app = create_app(config, {MODEL: FakeBackend(MODEL)}, build_gatekeeper(config))
    async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"name": "a\x00b"}, "name", "name must contain only printable characters"),
        ({"name": "tab\there"}, "name", "name must contain only printable characters"),
        ({"name": "zero\u200bwidth"}, "name", "name must contain only printable characters"),
        ({"name": " alice"}, "name", "name must not start or end with a space"),
        ({"name": "x", "models": ["ok", "bad\n"]}, "models", "models must contain only printable"),
    ],
)
async def test_names_that_cannot_be_shown_or_typed_are_refused(
    admin: httpx.AsyncClient, body: dict[str, Any], param: str, message: str
) -> None:
    response = await admin.post("/admin/keys", json=body, headers=ADMIN)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert message in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "x" * 129}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x", "max_concurrency": 0}, "max_concurrency"),
        ({"name": "x", "max_concurrency": 2**63}, "max_concurrency"),
        ({"name": "x", "max_concurrency": MAX_LIMIT + 1}, "max_concurrency"),
        ({"name": "x", "rpm": 2**70}, "rpm"),
        ({"name": "x", "tpm": -1}, "tpm"),
        ({"name": "x", "max_concurrency": True}, "max_concurrency"),
        ({"name": "x", "rpm": "60"}, "rpm"),
        ({"name": "x", "models": []}, "models"),
        ({"name": "x", "models": [""]}, "models.0"),
        ({"name": "x", "expires": "0d"}, "expires"),
        ({"name": "x", "expires": "soon"}, "expires"),
        ({"name": "x", "expires": "99999w"}, "expires"),
        ({"name": "x", "expires": "9" * 5000 + "d"}, "expires"),
        ({"name": "x", "admin": True}, "admin"),
        ({"max_concurrency": 3}, "name"),
    ],
)
async def test_out_of_bounds_settings_are_400_naming_the_field(
    admin: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    response = await admin.post("/admin/keys", json=body, headers=ADMIN)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    listed = (await admin.get("/admin/keys", headers=ADMIN)).json()["data"]
    assert listed == []


async def test_an_empty_model_list_never_means_every_model(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/admin/keys", json={"name": "x", "models": []}, headers=ADMIN)
    assert response.json()["error"]["message"] == (
        "Invalid value for 'models': List should have at least 1 item after validation, not 0."
    )


async def test_limits_at_the_bounds_are_stored(admin: httpx.AsyncClient) -> None:
    body = {"name": "big", "max_concurrency": MAX_LIMIT, "rpm": 1, "tpm": MAX_LIMIT}
    created = await admin.post("/admin/keys", json={**body, "expires": "520w"}, headers=ADMIN)
    assert created.status_code == 201, created.text
    key = created.json()
    assert (key["max_concurrency"], key["rpm"], key["tpm"]) == (MAX_LIMIT, 1, MAX_LIMIT)


async def test_a_key_name_with_a_slash_can_be_revoked(admin: httpx.AsyncClient) -> None:
    created = await admin.post("/admin/keys", json={"name": "team/alice"}, headers=ADMIN)
    assert created.status_code == 201
    revoked = await admin.delete("/admin/keys/team%2Falice", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["name"] == "team/alice"


async def test_a_body_not_sent_as_json_is_refused(admin: httpx.AsyncClient) -> None:
    response = await admin.post(
        "/admin/keys", content=b'{"name": "x"}', headers={**ADMIN, "content-type": "text/plain"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_content_type"


def create(home: Path, *flags: str) -> int:
    return main(["keys", "--home", str(home), "create", "--name", "k", *flags])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--models", ""), "--models: must name at least one model (leave it out"),
        (("--models", " , "), "--models: must name at least one model (leave it out"),
        (("--max-concurrency", "0"), "--max-concurrency: must be at least 1 and at most"),
        (("--max-concurrency", str(2**63)), "--max-concurrency: must be at least 1 and at most"),
        (("--rpm", "0"), "--rpm: must be at least 1 and at most 2147483647"),
        (("--tpm", str(2**70)), "--tpm: must be at least 1 and at most 2147483647"),
        (("--expires", "99999w"), "--expires: must be a positive duration of at most 10 years"),
        (("--expires", "soon"), "--expires: invalid duration 'soon'"),
    ],
)
def test_cli_refuses_bad_values_in_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], message: str
) -> None:
    assert create(tmp_path, *flags) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"llmserve keys create: error: {message}")
    store = open_key_store(tmp_path)
    try:
        assert store.list_keys() == []
    finally:
        store.close()


@pytest.mark.parametrize("name", ["bell\x07", " padded", "x" * 129])
def test_cli_refuses_bad_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert main(["keys", "--home", str(tmp_path), "create", "--name", name]) == 2
    assert capsys.readouterr().err.startswith("llmserve keys create: error: --name: must ")


def test_cli_models_list_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert create(tmp_path, "--models", "a, b", "--max-concurrency", "1") == 0
    store = open_key_store(tmp_path)
    try:
        [key] = store.list_keys()
    finally:
        store.close()
    assert (key.allowed_models, key.max_concurrency) == (frozenset({"a", "b"}), 1)
