"""What the job routes (files, batches, background responses) share: the store and who may see.

Jobs belong to the API key that made them; another key gets 404, the admin key sees them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, Literal, TypedDict, TypeVar

from fastapi import Request
from starlette.requests import HTTPConnection

from llmserve.api.admission import server_state
from llmserve.errors import AuthenticationError, InvalidRequestError, LlmserveError
from llmserve.jobs.service import Jobs
from llmserve.jobs.store import Page

MAX_PAGE = 100
T = TypeVar("T")
ObjectT = TypeVar("ObjectT", bound=Mapping[str, Any])
JsonBody = Mapping[str, Any]  # a route's JSON object, sent as it is (FastAPI's response model)


class ListObject(TypedDict, Generic[ObjectT]):
    """OpenAI's cursor-paginated list."""

    object: Literal["list"]
    data: list[ObjectT]
    first_id: str | None
    last_id: str | None
    has_more: bool


def jobs_of(request: HTTPConnection) -> Jobs:
    """The app's jobs service (store, files home, config)."""
    jobs: Jobs = request.app.state.jobs
    return jobs


async def job_owner(request: Request) -> str | None:
    """The caller's key id, or None for the admin key (which sees every key's jobs)."""
    gatekeeper = server_state(request).gatekeeper
    authorization = request.headers.get("authorization")
    try:
        principal = await gatekeeper.authenticate(authorization)
    except AuthenticationError as unknown_key:
        try:
            await gatekeeper.authenticate_admin(authorization)
        except LlmserveError:
            raise unknown_key from None
        return None
    return principal.key_id


async def refuse_while_draining(request: Request) -> None:
    """503 `draining` once the server is shutting down, as chat answers: no new jobs then."""
    server_state(request).drain.check_admitting()


async def storage_quota_mb(request: Request, owner: str | None) -> float | None:
    """MB of files the caller may keep: its key's `max_storage_mb`, else the config's default;
    None (no quota) for the admin key."""
    if owner is None:
        return None
    gatekeeper = server_state(request).gatekeeper
    principal = await gatekeeper.authenticate(request.headers.get("authorization"))
    if principal.max_storage_mb is not None:
        return float(principal.max_storage_mb)
    return jobs_of(request).config.max_storage_mb_per_key


def page_limit(request: Request, *, default: int = 20, maximum: int = MAX_PAGE) -> int:
    """The `limit` query parameter, 1 to `maximum`."""
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not raw.isdecimal() or not 1 <= int(raw) <= maximum:
        raise InvalidRequestError(
            f"`limit` must be an integer from 1 to {maximum}; got {raw!r}.", param="limit"
        )
    return int(raw)


def list_body(page: Page[T], to_object: Callable[[T], ObjectT]) -> ListObject[ObjectT]:
    """OpenAI's cursor-paginated list: data, first_id, last_id, has_more."""
    data = [to_object(item) for item in page.items]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": page.has_more,
    }
