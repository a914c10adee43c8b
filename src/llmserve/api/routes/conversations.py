"""OpenAI Conversations API: a durable list of items that `/v1/responses` reads and extends
(`conversation` on a response). Each conversation is its key's alone: another key's id answers
404 with exactly the body of an unknown one."""

from __future__ import annotations

from fastapi import APIRouter, Request

from llmserve.api.access.jobs_access import JsonBody, jobs_of, list_body
from llmserve.api.access.list_pages import list_page
from llmserve.api.admission import server_state
from llmserve.api.http.json_body import parse_json_body
from llmserve.api.http.openapi import request_body
from llmserve.errors import NotFoundError
from llmserve.ids import new_conversation_id
from llmserve.jobs.store import Page
from llmserve.serving.response_items import stored_items
from llmserve.serving.schemas_conversations import (
    ConversationCreateRequest,
    ConversationItemsRequest,
    ConversationUpdateRequest,
)

router = APIRouter()


async def owner_of(request: Request) -> str:
    """The caller's key id (401 without a valid key on a server with keys)."""
    gatekeeper = server_state(request).gatekeeper
    principal = await gatekeeper.authenticate(request.headers.get("authorization"))
    return principal.key_id


def not_found(conversation_id: str) -> NotFoundError:
    return NotFoundError(
        f"Conversation with id '{conversation_id}' not found.", param="conversation_id"
    )


@router.post("/v1/conversations", openapi_extra=request_body(ConversationCreateRequest))
async def create_conversation(request: Request) -> JsonBody:
    owner = await owner_of(request)
    body = await parse_json_body(request, ConversationCreateRequest)
    items = stored_items(body.items or [], "items")
    jobs = jobs_of(request)
    conversation_id = new_conversation_id()
    return await jobs.call(
        jobs.store.create_conversation, owner, conversation_id, body.metadata or {}, items
    )


@router.get("/v1/conversations/{conversation_id}", response_model=None)
async def retrieve_conversation(conversation_id: str, request: Request) -> JsonBody:
    owner = await owner_of(request)
    jobs = jobs_of(request)
    found = await jobs.call(jobs.store.get_conversation, owner, conversation_id)
    if found is None:
        raise not_found(conversation_id)
    return found


@router.post(
    "/v1/conversations/{conversation_id}", openapi_extra=request_body(ConversationUpdateRequest)
)
async def update_conversation(conversation_id: str, request: Request) -> JsonBody:
    owner = await owner_of(request)
    body = await parse_json_body(request, ConversationUpdateRequest)
    jobs = jobs_of(request)
    found = await jobs.call(jobs.store.update_conversation, owner, conversation_id, body.metadata)
    if found is None:
        raise not_found(conversation_id)
    return found


@router.delete("/v1/conversations/{conversation_id}", response_model=None)
async def delete_conversation(conversation_id: str, request: Request) -> JsonBody:
    owner = await owner_of(request)
    jobs = jobs_of(request)
    if not await jobs.call(jobs.store.delete_conversation, owner, conversation_id):
        raise not_found(conversation_id)
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


@router.get("/v1/conversations/{conversation_id}/items", response_model=None)
async def list_items(conversation_id: str, request: Request) -> JsonBody:
    owner = await owner_of(request)
    jobs = jobs_of(request)
    items = await jobs.call(jobs.store.conversation_items, owner, conversation_id)
    if items is None:
        raise not_found(conversation_id)
    return list_page(items, request)


@router.post(
    "/v1/conversations/{conversation_id}/items",
    openapi_extra=request_body(ConversationItemsRequest),
)
async def create_items(conversation_id: str, request: Request) -> JsonBody:
    owner = await owner_of(request)
    body = await parse_json_body(request, ConversationItemsRequest)
    items = stored_items(body.items, "items")
    jobs = jobs_of(request)
    if not await jobs.call(jobs.store.add_conversation_items, owner, conversation_id, items):
        raise not_found(conversation_id)
    return list_body(Page(items, has_more=False), dict)


@router.get("/v1/conversations/{conversation_id}/items/{item_id}", response_model=None)
async def retrieve_item(conversation_id: str, item_id: str, request: Request) -> JsonBody:
    owner = await owner_of(request)
    jobs = jobs_of(request)
    items = await jobs.call(jobs.store.conversation_items, owner, conversation_id)
    if items is None:
        raise not_found(conversation_id)
    for item in items:
        if item["id"] == item_id:
            return item
    raise NotFoundError(f"Item with id '{item_id}' not found.", param="item_id")


@router.delete("/v1/conversations/{conversation_id}/items/{item_id}", response_model=None)
async def delete_item(conversation_id: str, item_id: str, request: Request) -> JsonBody:
    owner = await owner_of(request)
    jobs = jobs_of(request)
    store = jobs.store
    found = await jobs.call(store.get_conversation, owner, conversation_id)
    if found is None:
        raise not_found(conversation_id)
    if not await jobs.call(store.delete_conversation_item, owner, conversation_id, item_id):
        raise NotFoundError(f"Item with id '{item_id}' not found.", param="item_id")
    return found
