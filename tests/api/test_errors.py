"""Every error is an OpenAI error body with the right status; never a 422 or a traceback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.fake import FakeBackend

from .conftest import FAKE_MODEL, fake_config

USER = [{"role": "user", "content": "Hi"}]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["x-request-id"]
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"model": FAKE_MODEL, "messages": [{"role": "bogus", "content": "x"}]}, "messages.0.role"),
        ({"model": FAKE_MODEL}, "messages"),
        ({"model": FAKE_MODEL, "messages": USER, "temperature": 3}, "temperature"),
        ({"model": FAKE_MODEL, "messages": USER, "n": 0}, "n"),
        ({"model": FAKE_MODEL, "messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"messages": USER}, "model"),
    ],
)
async def test_invalid_body_is_400_naming_the_field(
    client: httpx.AsyncClient, payload: dict[str, Any], param: str
) -> None:
    error = error_of(await client.post("/v1/chat/completions", json=payload), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert param in error["message"]


async def test_missing_field_message(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json={"model": FAKE_MODEL})
    assert error_of(response, 400)["message"] == "Missing required parameter: 'messages'."


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert "could not parse the JSON body" in error_of(response, 400)["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("functions", [{"name": "f"}]),
        ("logit_bias", {"50256": -100}),
    ],
)
async def test_unsupported_answer_changing_field_is_400(
    client: httpx.AsyncClient, field: str, value: object
) -> None:
    payload = {"model": FAKE_MODEL, "messages": USER, field: value}
    error = error_of(await client.post("/v1/chat/completions", json=payload), 400)
    assert error["param"] == field


async def test_text_response_format_is_accepted(client: httpx.AsyncClient) -> None:
    payload = {"model": FAKE_MODEL, "messages": USER, "response_format": {"type": "text"}}
    assert (await client.post("/v1/chat/completions", json=payload)).status_code == 200


async def test_unknown_model_is_404_model_not_found(client: httpx.AsyncClient) -> None:
    payload = {"model": "nope", "messages": USER}
    error = error_of(await client.post("/v1/chat/completions", json=payload), 404)
    assert error["code"] == "model_not_found"
    assert error["message"] == "The model `nope` does not exist or you do not have access to it."
    assert error["param"] == "model"


async def test_prompt_longer_than_context_is_400_context_length_exceeded() -> None:
    backend = FakeBackend(FAKE_MODEL, max_model_len=32)
    app = create_app(fake_config(FAKE_MODEL), {FAKE_MODEL: backend}, OpenGatekeeper())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        long_prompt = await c.post(
            "/v1/completions", json={"model": FAKE_MODEL, "prompt": "x" * 40}
        )
        too_many = await c.post(
            "/v1/completions", json={"model": FAKE_MODEL, "prompt": "x" * 9, "max_tokens": 30}
        )
    error = error_of(long_prompt, 400)
    assert error["code"] == "context_length_exceeded"
    assert error["message"].startswith("This model's maximum context length is 32 tokens.")
    assert "your prompt resulted in 41 tokens" in error["message"]
    error = error_of(too_many, 400)
    assert "you requested 40 tokens (10 in the prompt, 30 in the completion)" in error["message"]


async def test_unknown_route_and_method_are_openai_shaped(client: httpx.AsyncClient) -> None:
    error = error_of(await client.get("/v1/nothing"), 404)
    assert error["message"] == "Invalid URL (GET /v1/nothing)."
    error = error_of(await client.get("/v1/chat/completions"), 405)
    assert error["code"] == "method_not_allowed"


async def test_client_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models", headers={"x-request-id": "my-id-1"})
    assert response.headers["x-request-id"] == "my-id-1"


async def test_backend_failure_is_500_with_request_id_and_no_traceback() -> None:
    gatekeeper = OpenGatekeeper()
    backend = FakeBackend(FAKE_MODEL, fail_after_tokens=1)
    app = create_app(fake_config(FAKE_MODEL), {FAKE_MODEL: backend}, gatekeeper)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.post(
            "/v1/chat/completions", json={"model": FAKE_MODEL, "messages": USER}
        )
    error = error_of(response, 500)
    assert error["type"] == "server_error"
    assert response.headers["x-request-id"] in error["message"]
    assert "Traceback" not in response.text
    assert gatekeeper.usage[-1].is_error
    assert gatekeeper.num_in_flight == 0


@pytest.mark.parametrize(
    ("payload", "param", "message"),
    [
        (
            {
                "model": FAKE_MODEL,
                "messages": [{"role": "user", "content": [{"type": "image_url"}]}],
            },
            "messages.0.content.0.type",
            "Invalid value for 'messages.0.content.0.type': Input should be 'text'.",
        ),
        (
            {"model": FAKE_MODEL, "prompt": [1, 2]},
            "prompt.0",
            "Invalid value for 'prompt.0': Input should be a valid string.",
        ),
    ],
)
async def test_union_errors_name_the_field_not_the_type(
    client: httpx.AsyncClient, payload: dict[str, Any], param: str, message: str
) -> None:
    path = "/v1/completions" if "prompt" in payload else "/v1/chat/completions"
    error = error_of(await client.post(path, json=payload), 400)
    assert (error["param"], error["message"]) == (param, message)
