"""What the admin routes share (keys, console, a guarded /metrics): the admin check and the
shapes of a key's limits and of a key with its requests in flight."""

from __future__ import annotations

from typing import Annotated

from fastapi import Request
from pydantic import Field

from llmserve.api.admission import server_state
from llmserve.auth.gatekeeper import KeyGatekeeper
from llmserve.auth.keys import MAX_LIMIT, KeyObject
from llmserve.errors import PermissionDeniedError

Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT)]


class KeyInFlight(KeyObject):
    in_flight: int


async def require_admin(request: Request) -> KeyGatekeeper:
    """The key gatekeeper, once it accepted the caller as the admin (401 / 403 otherwise)."""
    gatekeeper = server_state(request).gatekeeper
    await gatekeeper.authenticate_admin(request.headers.get("authorization"))
    if not isinstance(gatekeeper, KeyGatekeeper):  # NOTE: only a key store has keys to manage
        raise PermissionDeniedError("This server has no key store to administer.")
    return gatekeeper
