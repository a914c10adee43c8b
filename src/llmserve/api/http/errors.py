"""The one place where exceptions become OpenAI error responses."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from llmserve.errors import (
    InvalidRequestError,
    LlmserveError,
    MethodNotAllowedError,
    NotFoundError,
    OverloadedError,
    RateLimitError,
    ServerError,
)
from llmserve.serving.request_body import from_pydantic as from_pydantic
from llmserve.serving.request_body import validation_error

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


def error_response(error: LlmserveError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The HTTP response for a domain error."""
    return JSONResponse(
        error.to_body(),
        status_code=error.status_code,
        headers={**retry_headers(error), **(headers or {})},
    )


def server_error(request_id: str) -> ServerError:
    """A 500 whose message carries the request id (never a traceback)."""
    return ServerError(
        "The server had an error while processing your request. "
        f"Please retry; if the error persists, report request id {request_id}."
    )


def client_error(error: LlmserveError, request_id: str) -> LlmserveError:
    """The error as the client may see it: a 500's details go to the log, never to the client."""
    if not isinstance(error, ServerError):
        return error
    logger.error("request %s failed: %s", request_id, error.message)
    return server_error(request_id)


def request_id_of_scope(request: Request) -> str:
    """The id the request-id middleware gave this request ("" outside it)."""
    return str(getattr(request.state, "request_id", ""))


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """The `Allow` header of a 405: the methods some route serves at this path.

    NOTE: Starlette's own header names only the first route that matched the path; GET and
    POST /admin/keys are two routes.
    """
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


async def _on_llmserve_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LlmserveError)
    return error_response(client_error(exc, request_id_of_scope(request)))


async def _on_request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(validation_error(exc.errors(), drop_prefix="body"))


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    route = f"{request.method} {request.url.path}"
    error: LlmserveError
    headers: dict[str, str] = {}
    if exc.status_code == 404:
        error = NotFoundError(f"Invalid URL ({route}).")
    elif exc.status_code == 405:
        headers["allow"] = allowed_methods(request)
        error = MethodNotAllowedError(
            f"Method not allowed ({route}). This URL accepts: {headers['allow']}."
        )
    elif exc.status_code >= 500:
        logger.error("request %s failed: %s", request_id_of_scope(request), exc.detail)
        error = server_error(request_id_of_scope(request))
    else:
        error = InvalidRequestError(str(exc.detail))
        error.status_code = exc.status_code
    return error_response(error, headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the exception handlers (unexpected errors: see the request-id middleware)."""
    app.add_exception_handler(LlmserveError, _on_llmserve_error)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
