"""Strict input: OpenAI's JSON types and ranges, JSON bodies only, `Allow` on 405, generic 500s."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.fake import FakeBackend
from llmserve.errors import ServerError
from llmserve.types import GenerateOutput, GenerateRequest

from .conftest import FAKE_MODEL, fake_config

USER = [{"role": "user", "content": "Hi"}]
CHAT = {"model": FAKE_MODEL, "messages": USER, "max_tokens": 3}


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_tokens", True, "Input should be a valid integer"),
        ("max_tokens", "5", "Input should be a valid integer"),
        ("max_tokens", 5.0, "Input should be a valid integer"),
        ("n", True, "Input should be a valid integer"),
        ("stream", "yes", "Input should be a valid boolean"),
        ("stream", 1, "Input should be a valid boolean"),
        ("logprobs", "true", "Input should be a valid boolean"),
        ("temperature", "0.5", "Input should be a valid number"),
        ("temperature", False, "Input should be a valid number"),
        ("model", 7, "Input should be a valid string"),
    ],
)
async def test_values_of_the_wrong_json_type_are_refused(
    client: httpx.AsyncClient, field: str, value: object, message: str
) -> None:
    response = await client.post("/v1/chat/completions", json={**CHAT, field: value})
    error = error_of(response, 400)
    assert error["param"] == field
    assert error["message"] == f"Invalid value for '{field}': {message}."


async def test_floats_accept_integers(client: httpx.AsyncClient) -> None:
    body = {**CHAT, "temperature": 1, "top_p": 1, "presence_penalty": -2, "repetition_penalty": 1}
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 2.5),
        ("temperature", -0.1),
        ("top_p", 0),
        ("top_p", 1.01),
        ("presence_penalty", 2.5),
        ("frequency_penalty", -3),
        ("n", 0),
        ("n", 129),
        ("max_tokens", 0),
        ("max_completion_tokens", 0),
        ("top_logprobs", 21),
        ("top_logprobs", -1),
        ("seed", 2**63),
        ("seed", 2**70),
        ("seed", -(2**63) - 1),
        ("repetition_penalty", 5e-324),
        ("repetition_penalty", 0),
        ("repetition_penalty", 1000),
        ("min_p", 1.5),
        ("top_k", -2),
        ("top_k", 2**31),
    ],
)
async def test_values_out_of_range_are_400_naming_the_field(
    client: httpx.AsyncClient, field: str, value: float
) -> None:
    error = error_of(await client.post("/v1/chat/completions", json={**CHAT, field: value}), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == field
    assert error["message"].startswith(f"Invalid value for '{field}': Input should be ")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", 2**63 - 1),
        ("seed", -(2**63)),
        ("top_k", -1),
        ("repetition_penalty", 0.01),
        ("temperature", 0),
        ("top_logprobs", 20),
    ],
)
async def test_values_at_the_bounds_are_served(
    client: httpx.AsyncClient, field: str, value: float
) -> None:
    body = {**CHAT, field: value, "logprobs": True}
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
async def test_non_finite_numbers_are_refused(client: httpx.AsyncClient, number: bytes) -> None:
    raw = b'{"model": "%s", "messages": [{"role": "user", "content": "x"}], "temperature": %s}'
    response = await client.post(
        "/v1/chat/completions",
        content=raw % (FAKE_MODEL.encode(), number),
        headers={"content-type": "application/json"},
    )
    error = error_of(response, 400)
    assert error["param"] == "temperature"
    assert error["message"] == "Invalid value for 'temperature': Input should be a finite number."


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", {"model": FAKE_MODEL, "prompt": []}, "prompt"),
        ("/v1/chat/completions", {"model": FAKE_MODEL, "messages": []}, "messages"),
        ("/v1/responses", {"model": FAKE_MODEL, "input": []}, "input"),
        ("/tokenize", {"model": FAKE_MODEL, "messages": []}, "messages"),
    ],
)
async def test_empty_lists_are_refused(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], param: str
) -> None:
    error = error_of(await client.post(path, json=body), 400)
    assert error["param"] == param
    assert error["message"] == (
        f"Invalid value for '{param}': List should have at least 1 item after validation, not 0."
    )


ITEM_KINDS = (
    "Input items are objects of type message (with role and content), function_call, "
    "function_call_output, compaction or item_reference."
)


@pytest.mark.parametrize(
    ("item", "param", "message"),
    [
        ({"role": "user", "content": 7}, "input.0.content", "Input should be a valid string."),
        (
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": 5}]},
            "input.0.content.0.text",
            "Input should be a valid string.",
        ),
        ({"type": "bogus"}, "input.0", ITEM_KINDS),
        (7, "input.0", ITEM_KINDS),
    ],
)
async def test_a_bad_responses_item_is_named_by_its_own_type(
    client: httpx.AsyncClient, item: Any, param: str, message: str
) -> None:
    """The 400 comes from the member the item's `type` names (a message without `type` too),
    never from another member of the union (it said `input.0.FunctionCallItem.type`)."""
    body = {"model": FAKE_MODEL, "input": [item]}
    error = error_of(await client.post("/v1/responses", json=body), 400)
    assert error["param"] == param
    assert error["message"] == f"Invalid value for '{param}': {message}"


async def test_a_function_call_item_missing_a_field_names_it(client: httpx.AsyncClient) -> None:
    item = {"type": "function_call", "call_id": "c1", "name": "lookup"}
    body = {"model": FAKE_MODEL, "input": [item]}
    error = error_of(await client.post("/v1/responses", json=body), 400)
    assert error["message"] == "Missing required parameter: 'input.0.arguments'."


@pytest.mark.parametrize(
    ("content_type", "sent"),
    [
        ("text/plain", "Content-Type 'text/plain'"),
        ("application/x-www-form-urlencoded", "Content-Type 'application/x-www-form-urlencoded'"),
        (None, "no Content-Type header"),
    ],
)
async def test_a_body_not_sent_as_json_is_refused(
    client: httpx.AsyncClient, content_type: str | None, sent: str
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = await client.post(
        "/v1/chat/completions", content=json.dumps(CHAT).encode(), headers=headers
    )
    error = error_of(response, 400)
    assert error["code"] == "unsupported_content_type"
    assert error["message"] == (
        "Unsupported content type: this endpoint accepts only 'application/json' bodies, but the "
        f"request has {sent}. Send the JSON body with the header 'Content-Type: application/json'."
    )


async def test_json_with_a_charset_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions",
        content=json.dumps(CHAT).encode(),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/chat/completions", "POST"),
        ("DELETE", "/v1/models", "GET"),
        ("PUT", "/admin/keys", "GET, POST"),
        ("DELETE", "/admin/keys", "GET, POST"),
        ("POST", "/admin/keys/alice", "DELETE, PATCH"),
        ("POST", "/health", "GET"),
    ],
)
async def test_405_names_the_allowed_methods(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    error = error_of(response, 405)
    assert response.headers["allow"] == allow
    assert error["message"] == f"Method not allowed ({method} {path}). This URL accepts: {allow}."


class LeakyBackend(FakeBackend):
    """A backend whose failure message holds internals a client must never see."""

    async def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        async for output in super().generate(request):
            yield output
            raise ServerError(f"request {request.request_id} failed: RuntimeError('/secret/path')")


@pytest.mark.parametrize("stream", [False, True])
async def test_server_errors_show_a_generic_message_and_the_request_id(stream: bool) -> None:
    app = create_app(fake_config(FAKE_MODEL), {FAKE_MODEL: LeakyBackend()}, OpenGatekeeper())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    request_id = response.headers["x-request-id"]
    if stream:
        error_line = next(line for line in response.text.splitlines() if '"error"' in line)
        error = json.loads(error_line.removeprefix("data: "))["error"]
    else:
        error = error_of(response, 500)
    assert error["message"] == (
        "The server had an error while processing your request. "
        f"Please retry; if the error persists, report request id {request_id}."
    )
    assert "secret" not in response.text and "RuntimeError" not in response.text


async def test_openapi_describes_every_request_body(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    bodies = {
        path: operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for path, item in document["paths"].items()
        for operation in item.values()
        if "requestBody" in operation
    }
    assert bodies == {
        "/v1/chat/completions": "#/components/schemas/ChatCompletionRequest",
        "/v1/completions": "#/components/schemas/CompletionRequest",
        "/v1/conversations": "#/components/schemas/ConversationCreateRequest",
        "/v1/conversations/{conversation_id}": "#/components/schemas/ConversationUpdateRequest",
        "/v1/conversations/{conversation_id}/items": (
            "#/components/schemas/ConversationItemsRequest"
        ),
        "/v1/responses/compact": "#/components/schemas/CompactRequest",
        "/v1/responses/input_tokens": "#/components/schemas/InputTokensRequest",
        "/v1/embeddings": "#/components/schemas/EmbeddingRequest",
        "/v1/responses": "#/components/schemas/ResponseCreateRequest",
        "/v1/batches": "#/components/schemas/BatchCreateRequest",
        "/tokenize": "#/components/schemas/TokenizeRequest",
        "/detokenize": "#/components/schemas/DetokenizeRequest",
        "/admin/keys": "#/components/schemas/CreateKeyRequest",
        "/admin/keys/{name}": "#/components/schemas/UpdateLimitsRequest",
        "/admin/models/{model}/variants": "#/components/schemas/SetVariantsRequest",
    }
    assert all(ref.removeprefix("#/components/schemas/") in schemas for ref in bodies.values())
    chat = schemas["ChatCompletionRequest"]
    assert chat["required"] == ["model", "messages"]
    assert chat["properties"]["messages"]["items"] == {"$ref": "#/components/schemas/Message"}
    assert chat["properties"]["seed"]["anyOf"][0]["maximum"] == 2**63 - 1
    assert "422" not in json.dumps(document["paths"])  # this server answers 400, never 422
    for item in document["paths"].values():
        for operation in item.values():
            error = operation["responses"]["default"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorResponse"}


async def test_no_docs_ui_is_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 404
    assert (await client.get("/redoc")).status_code == 404
