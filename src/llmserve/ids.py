"""Every server-made public id, its prefix spelt once: `req_…`, `batch_…`, `file-…`, `resp_…`.

Ids derived from a request id keep its suffix, so one request is traceable across them: a
response made for `req_abc` is `resp_abc` (`chatcmpl-abc`, `cmpl-abc`), a background response
`resp_abc` runs as `req_abc`, and line 7 of `batch_abc` runs as `req_abc_7`.
"""

from __future__ import annotations

import secrets

REQUEST = "req_"
BATCH = "batch_"
FILE = "file-"
RESPONSE = "resp_"
CONVERSATION = "conv_"
BATCH_REQUEST = "batch_req_"  # the `id` of a batch result line


def new_request_id() -> str:
    """A fresh server request id (`req_` and 32 hex digits)."""
    return REQUEST + secrets.token_hex(16)


def new_batch_id() -> str:
    """A fresh Batch id (`batch_…`)."""
    return BATCH + secrets.token_hex(12)


def new_file_id() -> str:
    """A fresh File id (`file-…`)."""
    return FILE + secrets.token_hex(12)


def new_conversation_id() -> str:
    """A fresh Conversation id (`conv_…`)."""
    return CONVERSATION + secrets.token_hex(24)


def request_suffix(request_id: str) -> str:
    """What the request id adds to its prefix (the whole id when a client chose it)."""
    return request_id.removeprefix(REQUEST)


def derived_id(prefix: str, request_id: str) -> str:
    """The public id of what `request_id` made, from its suffix (`resp_…`, `chatcmpl-…`)."""
    return prefix + request_suffix(request_id)


def response_id_of(request_id: str) -> str:
    """The response made by `request_id`."""
    return derived_id(RESPONSE, request_id)


def request_id_of_response(response_id: str) -> str:
    """The request id a background response runs under (its id's suffix)."""
    return REQUEST + response_id.removeprefix(RESPONSE)


def line_request_id(batch_id: str, line_no: int) -> str:
    """The request id of one batch line: from the batch and line number, never `custom_id`."""
    return f"{REQUEST}{batch_id.removeprefix(BATCH)}_{line_no}"


def batch_request_id(request_id: str) -> str:
    """The `id` of a batch line's result (`batch_req_…`) from the line's request id."""
    return derived_id(BATCH_REQUEST, request_id)
