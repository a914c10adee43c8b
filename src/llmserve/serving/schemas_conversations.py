"""OpenAI Conversations API request bodies."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from llmserve.serving.schemas_responses import InputItem
from llmserve.serving.strict import StrictModel

Metadata = Annotated[dict[str, str], Field(max_length=16)]


class ConversationCreateRequest(StrictModel):
    """POST /v1/conversations: optional first items and metadata."""

    items: Annotated[list[InputItem], Field(max_length=20)] | None = None
    metadata: Metadata | None = None


class ConversationUpdateRequest(StrictModel):
    """POST /v1/conversations/{id}: new metadata."""

    metadata: Metadata


class ConversationItemsRequest(StrictModel):
    """POST /v1/conversations/{id}/items: items to add at the end."""

    items: Annotated[list[InputItem], Field(min_length=1, max_length=20)]
