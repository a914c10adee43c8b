"""Reading a JSON request body: `Content-Type: application/json`, valid JSON, the schema's types."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel

from llmserve.errors import InvalidRequestError
from llmserve.serving.request_body import parse_body

B = TypeVar("B", bound=BaseModel)


def is_json_media_type(content_type: str) -> bool:
    """True for application/json (any parameters) and the `+json` types."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def check_json_content_type(content_type: str | None) -> None:
    """400 unless the body is declared as JSON (a form or text body is never parsed as JSON)."""
    if content_type is not None and is_json_media_type(content_type):
        return
    sent = "no Content-Type header" if content_type is None else f"Content-Type '{content_type}'"
    raise InvalidRequestError(
        f"Unsupported content type: this endpoint accepts only 'application/json' bodies, but "
        f"the request has {sent}. Send the JSON body with the header "
        "'Content-Type: application/json'.",
        code="unsupported_content_type",
    )


async def parse_json_body(request: Request, schema: type[B]) -> B:
    """The JSON body validated against `schema`; a 400 naming the field otherwise."""
    check_json_content_type(request.headers.get("content-type"))
    raw = await request.body()
    if not raw:
        raise InvalidRequestError("The request body must be a JSON object.")
    return parse_body(schema, raw)
