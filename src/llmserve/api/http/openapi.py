"""The OpenAPI description served at /openapi.json, with the real request and error schemas.

Routes parse their bodies by hand (authentication comes first, and a bad body is a 400, not
FastAPI's 422), so FastAPI cannot see their schemas. Each route declares its body with
`openapi_extra=request_body(Schema)`; `DescribedApp.openapi` moves the schemas it carries into
`components` and documents the OpenAI error body as every operation's `default` response.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict

REF_PREFIX = "#/components/schemas/"
_CARRIED_SCHEMAS = "x-llmserve-schemas"  # moved into components by `openapi_schema`
_FASTAPI_422_SCHEMAS = ("HTTPValidationError", "ValidationError")  # this server never sends 422


class ErrorDetail(BaseModel):
    """OpenAI's error fields."""

    model_config = ConfigDict(extra="forbid")

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """The body of every error answer: {"error": {message, type, param, code}}."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


def request_body(schema: type[BaseModel], *, streams: bool = False) -> dict[str, Any]:
    """`openapi_extra` for a route that reads `schema` from a JSON body.

    `streams`: with `"stream": true` the 200 is a `text/event-stream` of server-sent events.
    """
    definitions = _definitions(schema)
    extra: dict[str, Any] = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF_PREFIX + schema.__name__}}},
        },
        _CARRIED_SCHEMAS: definitions,
    }
    if streams:
        content: dict[str, Any] = {"application/json": {}, "text/event-stream": {}}
        extra["responses"] = {"200": {"description": "Successful Response", "content": content}}
    return extra


class DescribedApp(FastAPI):
    """A FastAPI app whose OpenAPI document carries the bodies its routes read by hand."""

    def openapi(self) -> dict[str, Any]:
        """The document, made on first use (routes are all in by then)."""
        if not self.openapi_schema:
            self.openapi_schema = openapi_schema(self)
        return self.openapi_schema


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of `app`."""
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_422_SCHEMAS:
        components.pop(name, None)
    _merge(components, _definitions(ErrorResponse))
    for path_item in document["paths"].values():
        for operation in path_item.values():
            _merge(components, operation.pop(_CARRIED_SCHEMAS, {}))
            _document_errors(operation["responses"])
    return document


def _definitions(schema: type[BaseModel]) -> dict[str, Any]:
    """`schema` and every model it uses, as components (references point into components)."""
    top = schema.model_json_schema(ref_template=REF_PREFIX + "{model}")
    nested: dict[str, Any] = top.pop("$defs", {})
    return {**nested, schema.__name__: top}


def _merge(components: dict[str, Any], definitions: dict[str, Any]) -> None:
    """Add `definitions`; two different models of one name would make references ambiguous."""
    for name, definition in definitions.items():
        if components.setdefault(name, definition) != definition:
            raise ValueError(f"two request schemas are named {name!r}; rename one")


def _document_errors(responses: dict[str, Any]) -> None:
    """Every operation may answer the OpenAI error body (400, 401, 404, 429, 503, ...)."""
    responses.pop("422", None)
    responses["default"] = {
        "description": "An OpenAI error body; `param` names the field to fix.",
        "content": {"application/json": {"schema": {"$ref": REF_PREFIX + "ErrorResponse"}}},
    }
