"""The one place where exceptions become OpenAI error responses."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmserve.errors import (
    InvalidRequestError,
    LlmserveError,
    MethodNotAllowedError,
    NotFoundError,
    OverloadedError,
    RateLimitError,
    ServerError,
)

logger = logging.getLogger(__name__)


def retry_headers(error: LlmserveError) -> dict[str, str]:
    """Retry-After (whole seconds) and retry-after-ms for 429 and 503, plus any limit headers."""
    if isinstance(error, RateLimitError):
        seconds = error.retry_after_s
        extra: Mapping[str, str] = error.headers
    elif isinstance(error, OverloadedError):
        seconds, extra = error.retry_after_s, {}
    else:
        return {}
    return {
        **extra,
        "retry-after": str(max(1, math.ceil(seconds))),
        "retry-after-ms": str(max(1, round(seconds * 1000))),
    }


def error_response(error: LlmserveError) -> JSONResponse:
    """The HTTP response for a domain error."""
    return JSONResponse(
        error.to_body(), status_code=error.status_code, headers=retry_headers(error)
    )


def server_error(request_id: str) -> ServerError:
    """A 500 whose message carries the request id (never a traceback)."""
    return ServerError(
        "The server had an error while processing your request. "
        f"Please retry; if the error persists, report request id {request_id}."
    )


def validation_error(
    errors: Sequence[Any], *, drop_prefix: str | None = None
) -> InvalidRequestError:
    """A 400 for the first pydantic error, with `param` as a dotted field path (messages.0.role)."""
    first = _most_specific(errors)
    loc = [str(part) for part in first.get("loc", ()) if not _is_union_tag(part)]
    if drop_prefix is not None and loc[:1] == [drop_prefix]:
        loc = loc[1:]
    param = ".".join(loc) or None
    if first.get("type") == "missing":
        return InvalidRequestError(f"Missing required parameter: '{param}'.", param=param)
    if first.get("type") == "json_invalid":
        return InvalidRequestError(
            "We could not parse the JSON body of your request. The body must be valid JSON."
        )
    where = f" for '{param}'" if param else ""
    return InvalidRequestError(f"Invalid value{where}: {first.get('msg', '')}.", param=param)


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "dict", "list"})


def _is_union_tag(part: object) -> bool:
    """Pydantic names the union member in `loc` ("str", "list[TextPart]"); it is no field."""
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part or "-" in part)


def _most_specific(errors: Sequence[Any]) -> Any:
    """The deepest error of the first field that failed (the union member that got furthest)."""
    if not errors:
        return {"loc": (), "msg": "Invalid request body", "type": ""}
    field = tuple(errors[0].get("loc", ()))[:1]
    same_field = [e for e in errors if tuple(e.get("loc", ()))[:1] == field]
    return max(same_field, key=lambda e: len(e.get("loc", ())))


def from_pydantic(exc: ValidationError) -> InvalidRequestError:
    """A 400 for a body that failed schema validation."""
    return validation_error(exc.errors(include_url=False))


async def _on_llmserve_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LlmserveError)
    return error_response(exc)


async def _on_request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(validation_error(exc.errors(), drop_prefix="body"))


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    route = f"{request.method} {request.url.path}"
    error: LlmserveError
    if exc.status_code == 404:
        error = NotFoundError(f"Invalid URL ({route}).")
    elif exc.status_code == 405:
        error = MethodNotAllowedError(f"Method not allowed ({route}).")
    elif exc.status_code >= 500:
        error = server_error(str(getattr(request.state, "request_id", "")))
    else:
        error = InvalidRequestError(str(exc.detail))
        error.status_code = exc.status_code
    return error_response(error)


def install_error_handlers(app: FastAPI) -> None:
    """Register the exception handlers (unexpected errors: see the request-id middleware)."""
    app.add_exception_handler(LlmserveError, _on_llmserve_error)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
