"""The web playground: static files shipped in `llmserve/web`, and the chat models it offers.

`GET /` is a small start page that links to the playground; `GET /playground` is the page itself;
`GET /playground/models` lists the chat models the caller may use (what `/v1/models` lists for the
same key, without embedding models), so that the page's picker never offers a model that cannot
chat. The page talks to the real `/v1/chat/completions`; nothing here generates text.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from llmserve.api.access.model_cards import ModelCard, visible_models
from llmserve.api.access.web_files import CONTENT_SECURITY_POLICY as CONTENT_SECURITY_POLICY
from llmserve.api.access.web_files import web_file
from llmserve.api.admission import server_state

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def start_page() -> Response:
    """A start page for people who open the server's root in a browser."""
    return web_file("index.html")


@router.get("/playground", response_class=HTMLResponse)
async def playground() -> Response:
    """The playground page."""
    return web_file("playground.html")


class ChatModelCard(ModelCard):
    max_model_len: int


class ChatModelList(TypedDict):
    object: Literal["list"]
    data: list[ChatModelCard]


@router.get("/playground/models", response_model=None)
async def chat_models(request: Request) -> ChatModelList:
    """The chat models of `/v1/models` for this caller, with their context length."""
    state = server_state(request)
    listing = await visible_models(request)
    data: list[ChatModelCard] = []
    for card in listing["data"]:
        info = state.backends[card["id"]].info
        if info.kind == "chat":
            data.append({**card, "max_model_len": info.max_model_len})
    return {"object": "list", "data": data}


@router.get("/playground/{name}")
async def playground_file(name: str) -> Response:
    """The page's scripts and styles."""
    return web_file(name)
