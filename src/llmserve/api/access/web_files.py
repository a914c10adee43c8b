"""The static files shipped in `llmserve/web` (playground, admin console), with their headers."""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi.responses import Response

from llmserve.errors import NotFoundError

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
