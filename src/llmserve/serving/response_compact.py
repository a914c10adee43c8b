"""`/v1/responses/compact` without HTTP: a conversation in, its user messages and one
`compaction` item out. The model itself writes the summary the compaction item carries; a later
request that sends the item back reads it as a system message."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncGenerator
from typing import Any

from llmserve.sampling import SamplingParams
from llmserve.serving.context import ServingContext
from llmserve.serving.generation import Generation
from llmserve.serving.outputs import Choice, Outputs
from llmserve.serving.prompts import chat_prompt_ids, check_context, off_loop
from llmserve.serving.response_items import (
    Item,
    chat_messages,
    compaction_content,
    compaction_item,
    joined_turns,
    request_items,
)
from llmserve.serving.response_objects import usage
from llmserve.serving.responses import ResponseStores, earlier_items
from llmserve.serving.schemas_responses import CompactRequest
from llmserve.serving.usage import UsageMeter
from llmserve.types import ChatMessage, GenerateRequest

SUMMARY_PROMPT = (
    "Summarize the conversation above for continuing it later: keep every fact, decision, "
    "tool result and open question; leave out pleasantries."
)
MAX_SUMMARY_TOKENS = 512

CompactGeneration = Generation[dict[str, Any], dict[str, Any]]


async def prepare_compact(
    context: ServingContext, body: CompactRequest, stores: ResponseStores
) -> CompactGeneration:
    """Validate and tokenize the summary request (400s here, before admission)."""
    body.reject_unsupported()
    items = [*await earlier_items(context, body, stores), *request_items(body)]
    messages = chat_messages(items)
    if body.instructions:
        messages.insert(0, ChatMessage("system", body.instructions))
    messages.append(ChatMessage("user", SUMMARY_PROMPT))
    ids = await off_loop(chat_prompt_ids, context.backend, joined_turns(messages), "input")
    max_model_len = context.backend.info.max_model_len
    max_tokens = check_context(len(ids), MAX_SUMMARY_TOKENS, max_model_len, "input")
    request = GenerateRequest(
        context.request_id,
        tuple(ids),
        SamplingParams(max_tokens=max_tokens, temperature=0.0),
        context.priority,
        tenant=context.tenant,
        cache_namespace=context.request_namespace(body.cache_salt),
    )
    meter = UsageMeter(context.model, prompt_tokens=len(ids))
    user_messages = [i for i in items if i.get("type") == "message" and i["role"] == "user"]
    answer = CompactAnswer(meter, user_messages)
    return Generation(context.backend, [request], 1, meter, answer.body, answer.no_stream)


class CompactAnswer:
    """The `response.compaction` object: every user message, then one compaction item."""

    def __init__(self, meter: UsageMeter, user_messages: list[Item]) -> None:
        self.meter = meter
        self.user_messages = user_messages

    def body(self, choices: list[Choice]) -> dict[str, Any]:
        (choice,) = choices
        summary = compaction_item(compaction_content(choice.text.strip()))
        return {
            "id": f"cmp_{secrets.token_hex(16)}",
            "object": "response.compaction",
            "created_at": int(time.time()),
            "output": [*self.user_messages, summary],
            "usage": usage(
                self.meter.prompt_tokens,
                choice.num_output_tokens,
                self.meter.cached_tokens,
                self.meter.cache_write_tokens,
            ),
        }

    async def no_stream(self, outputs: Outputs) -> AsyncGenerator[dict[str, Any], None]:
        """Compaction answers in one body; it has no stream."""
        raise NotImplementedError("compaction is not streamed")
        yield {}  # pragma: no cover (makes this an async generator)
