"""The playground's routes: the page and its files with their security headers, the chat models."""

from __future__ import annotations

import httpx

from llmserve.api.routes.playground import CONTENT_SECURITY_POLICY


async def test_start_page_links_to_the_playground(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<a href="/playground">Playground</a>' in page.text


async def test_playground_files_carry_a_strict_content_security_policy(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/playground")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert '<script type="module" src="/playground/playground.js"></script>' in page.text
    script = await client.get("/playground/playground.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "/v1/chat/completions" in script.text


async def test_unknown_playground_file_is_an_openai_404(client: httpx.AsyncClient) -> None:
    missing = await client.get("/playground/secrets.txt")
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "message": "No playground file named `secrets.txt`.",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }


async def test_playground_models_are_the_chat_models_with_their_context(
    client: httpx.AsyncClient,
) -> None:
    listing = (await client.get("/playground/models")).json()
    assert [(m["id"], m["max_model_len"]) for m in listing["data"]] == [("fake-model", 256)]
