"""Talking to a running OpenAI-compatible server (llmserve, vLLM, llama.cpp's server).

Shared by `llmserve chat`, `bench` and `models`: every `--base-url` may be the server's root or
its `/v1` URL; keys come from `--api-key`, else `LLMSERVE_API_KEY`, else `OPENAI_API_KEY`.
"""

from __future__ import annotations

import json
import os

import httpx

DEFAULT_BASE_URL = "http://127.0.0.1:8000"


class RemoteError(Exception):
    """The server could not be reached or refused; the message says what happened."""


def server_root(base_url: str) -> str:
    """The root URL from a root or `/v1` URL: `http://h:8000/v1/` gives `http://h:8000`."""
    url = base_url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url.removesuffix("/v1")


def api_key_from(explicit: str | None) -> str | None:
    """The key to send: the flag, else LLMSERVE_API_KEY, else OPENAI_API_KEY, else none."""
    return explicit or os.environ.get("LLMSERVE_API_KEY") or os.environ.get("OPENAI_API_KEY")


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The Authorization header for `api_key`, if any."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def describe_error(response: httpx.Response) -> str:
    """`401 invalid_api_key: Incorrect API key provided ...` from an OpenAI error body."""
    try:
        error = json.loads(response.text)["error"]
        code = f" {error['code']}" if error.get("code") else ""
        return f"{response.status_code}{code}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} {response.reason_phrase}: {response.text[:200]}"


def get_json(client: httpx.Client, url: str) -> dict[str, object]:
    """GET `url` as JSON; `RemoteError` when unreachable or not a 200."""
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach {url}: {exc}") from None
    if response.status_code != 200:
        raise RemoteError(f"{url} answered {describe_error(response)}")
    body: dict[str, object] = response.json()
    return body


def model_ids(client: httpx.Client, root: str) -> list[str]:
    """The ids `GET /v1/models` lists."""
    data = get_json(client, f"{root}/v1/models").get("data")
    return [str(m["id"]) for m in data] if isinstance(data, list) else []


def first_chat_model(client: httpx.Client, root: str) -> str:
    """llmserve's first chat model (`/playground/models` skips embedding models), else the first
    model another server lists."""
    try:
        response = client.get(f"{root}/playground/models")
        data = response.json().get("data") if response.status_code == 200 else None
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach {root}: {exc}") from None
    except ValueError:  # another server's page, not JSON
        data = None
    ids = [str(m["id"]) for m in data] if isinstance(data, list) else model_ids(client, root)
    if not ids:
        raise RemoteError(f"the server at {root} serves no chat model")
    return ids[0]
