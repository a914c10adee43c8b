"""Domain exceptions. Each one knows its OpenAI error body; `api/http/errors.py` maps them."""

from __future__ import annotations


class LlmserveError(Exception):
    """Base of every error a client may see. Carries OpenAI's error fields."""

    status_code = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, dict[str, str | None]]:
        """The OpenAI error body: {"error": {message, type, param, code}}."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(LlmserveError):
    """400: the request is malformed; `param` names the field to fix."""

    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceededError(InvalidRequestError):
    """400: prompt plus requested tokens do not fit the model's context."""

    code = "context_length_exceeded"


class AuthenticationError(LlmserveError):
    """401: missing, unknown, revoked or expired API key."""

    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDeniedError(LlmserveError):
    """403: the key is valid but may not do this (admin routes)."""

    status_code = 403
    error_type = "invalid_request_error"
    code = "insufficient_permissions"


class NotFoundError(LlmserveError):
    """404: an unknown route or object."""

    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    """404: the model does not exist or this key may not use it."""

    code = "model_not_found"

    def __init__(self, model: str, *, param: str | None = "model") -> None:
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.", param=param
        )


class MethodNotAllowedError(LlmserveError):
    """405: the route exists but not with this HTTP method."""

    status_code = 405
    error_type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTooLargeError(LlmserveError):
    """413: the request body is over `limits.max_request_body_mb`; it was not read."""

    status_code = 413
    error_type = "invalid_request_error"
    code = "request_too_large"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"The request body is larger than this server's limit of {max_bytes} bytes "
            f"({max_bytes / 2**20:g} MB). Send a smaller request (split the input, or upload "
            "large inputs as files)."
        )


class BodyTimeoutError(LlmserveError):
    """408: the client sent headers but its body did not arrive within `limits.body_timeout_s`."""

    status_code = 408
    error_type = "invalid_request_error"
    code = "request_timeout"

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"The request body did not arrive within {timeout_s:g} seconds. Send the whole body "
            "right after the headers."
        )


class RateLimitError(LlmserveError):
    """429: over a per-key limit. `retry_after_s` becomes Retry-After and retry-after-ms."""

    status_code = 429
    error_type = "requests"
    code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, param=param)
        self.retry_after_s = retry_after_s
        self.headers = headers or {}


class OverloadedError(LlmserveError):
    """503: the waiting queue is full or the server is draining."""

    status_code = 503
    error_type = "server_error"
    code = "server_is_overloaded"

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ReplicaFailedError(OverloadedError):
    """503: the engine replica running the request died (Ray runtime); a retry goes elsewhere."""

    code = "replica_failed"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The replica of model {model} running this request stopped before it finished. "
            "Retry the request: new requests go to healthy replicas."
        )


class ServerError(LlmserveError):
    """500: an unexpected failure; the message carries the request id, never a traceback."""


class RequestTimeoutError(LlmserveError):
    """504: the request ran longer than `limits.request_timeout_s`; its generation was aborted."""

    status_code = 504
    error_type = "server_error"
    code = "timeout"

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"The request timed out after {timeout_s:g} seconds; the generation was stopped. "
            "Ask for fewer tokens (max_tokens) or retry later."
        )
        self.timeout_s = timeout_s


class UnsupportedOperationError(Exception):
    """Raised by a backend asked for work its model kind cannot do (embed on a chat model)."""


class DrainingError(OverloadedError):
    """503: the server is shutting down (draining) and admits no new request."""

    def __init__(self) -> None:
        super().__init__(
            "The server is shutting down and accepts no new requests; please retry "
            "(another replica will answer)."
        )


class ShutdownCutoffError(OverloadedError):
    """503: the request was still running when the server's shutdown timeout ran out."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"The server is shutting down and stopped this request after waiting {timeout_s:g} "
            "seconds for it to finish; please retry."
        )


class ModelRefusedError(Exception):
    """A model the engine cannot compute exactly as transformers does: refused at start-up."""
