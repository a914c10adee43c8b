"""The web playground: static files shipped in `llmserve/web`, and the chat models it offers.

`GET /` is a small start page that links to the playground; `GET /playground` is the page itself;
`GET /playground/models` lists the chat models the caller may use (what `/v1/models` lists for the
same key, without embedding models), so that the page's picker never offers a model that cannot
chat. The page talks to the real `/v1/chat/completions`; nothing here generates text.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal, TypedDict

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from llmserve.api.admission import server_state
from llmserve.api.routes.models import ModelCard, list_models
from llmserve.errors import NotFoundError

router = APIRouter()

# NOTE: the page runs only its own files: no inline script, nothing from another origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@cache
def web_files() -> dict[str, bytes]:
    """The shipped static files by name (read once; the package does not change at run time)."""
    folder = resources.files("llmserve") / "web"
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and any(entry.name.endswith(s) for s in MEDIA_TYPES)
    }


def web_file(name: str) -> Response:
    """One shipped file with its media type and the page's security headers; 404 otherwise."""
    body = web_files().get(name)
    if body is None:
        raise NotFoundError(f"No playground file named `{name}`.")
    suffix = name[name.rfind(".") :]
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",  # a new llmserve version must not run an old script
    }
    return Response(body, media_type=MEDIA_TYPES[suffix], headers=headers)


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
    listing = await list_models(request)
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
