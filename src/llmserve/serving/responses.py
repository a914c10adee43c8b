"""The Responses API without HTTP: input items in, a `response` object or its events out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from llmserve.backends.base import Backend
from llmserve.errors import NotFoundError
from llmserve.sampling import SamplingParams
from llmserve.serving.constraints import (
    compile_checked,
    response_format_grammar,
    response_format_what,
)
from llmserve.serving.context import ServingContext
from llmserve.serving.generation import Generation
from llmserve.serving.outputs import Choice, Outputs, check_not_aborted
from llmserve.serving.prompts import chat_prompt_ids, check_context, off_loop
from llmserve.serving.response_objects import (
    ResponseEvent,
    ResponseObject,
    output_message,
    output_text_part,
    response_object,
    usage,
)
from llmserve.serving.response_store import ResponseStore
from llmserve.serving.schemas_responses import ResponseCreateRequest
from llmserve.serving.usage import UsageMeter
from llmserve.types import ChatMessage, GenerateRequest, GrammarSpec

ResponseGeneration = Generation[ResponseObject, ResponseEvent]


async def prepare_response(
    context: ServingContext, body: ResponseCreateRequest, store: ResponseStore | None
) -> ResponseGeneration:
    """Validate and tokenize (400s here, before admission); the final response goes to `store`."""
    body.reject_unsupported()
    grammar = await text_format_grammar(context.backend, body)
    history = previous_conversation(context, body, store)
    messages = body.chat_messages(history)
    ids = await off_loop(chat_prompt_ids, context.backend, messages, "input")
    max_model_len = context.backend.info.max_model_len
    max_tokens = check_context(len(ids), body.max_output_tokens, max_model_len, "input")
    request = GenerateRequest(
        context.request_id,
        tuple(ids),
        sampling(body, max_tokens),
        context.priority,
        tenant=context.tenant,
        grammar=grammar,
        cache_namespace=context.request_namespace(body.cache_salt),
        prompt_cache_key=body.prompt_cache_key,
    )
    meter = UsageMeter(context.model, prompt_tokens=len(ids))
    conversation = [*history, *body.input_messages()]
    answer = ResponseAnswer(context, body, meter, store if body.store else None, conversation)
    return Generation(context.backend, [request], 1, meter, answer.body, answer.events)


def previous_conversation(
    context: ServingContext, body: ResponseCreateRequest, store: ResponseStore | None
) -> list[ChatMessage]:
    """The conversation `previous_response_id` continues: a stored response of the same key."""
    if body.previous_response_id is None:
        return []
    found = None if store is None else store.conversation(context.tenant, body.previous_response_id)
    if found is None:
        raise NotFoundError(
            f"Previous response with id '{body.previous_response_id}' not found.",
            param="previous_response_id",
        )
    return found


async def text_format_grammar(backend: Backend, body: ResponseCreateRequest) -> GrammarSpec | None:
    """The grammar of `text.format`, compiled before admission (a bad schema is a 400)."""
    text_format = body.text.format if body.text else None
    if text_format is None:
        return None
    response_format = text_format.as_response_format()
    grammar = response_format_grammar(response_format)
    if grammar is not None:
        what = response_format_what(response_format).replace("response_format", "text.format")
        await compile_checked(backend, grammar, "text.format", what)
    return grammar


def sampling(body: ResponseCreateRequest, max_tokens: int) -> SamplingParams:
    """Sampling parameters for a Responses request."""
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
    )


class ResponseAnswer:
    """Builds the final `response` object, or the event sequence of a streamed one."""

    def __init__(
        self,
        context: ServingContext,
        body: ResponseCreateRequest,
        meter: UsageMeter,
        store: ResponseStore | None,
        conversation: list[ChatMessage],
    ) -> None:
        suffix = context.request_id.removeprefix("req_")
        self.response_id, self.item_id = f"resp_{suffix}", f"msg_{suffix}"
        self.tenant = context.tenant
        self.request = body
        self.meter = meter
        self.store = store
        self.conversation = conversation  # what a later previous_response_id continues

    def body(self, choices: list[Choice]) -> ResponseObject:
        """The finished response (stored when the request asked for it)."""
        (choice,) = choices
        is_complete = choice.finish_reason != "length"
        response = response_object(
            self.response_id,
            self.request,
            status="completed" if is_complete else "incomplete",
            output=[output_message(self.item_id, choice.text, "completed")],
            usage_body=usage(
                self.meter.prompt_tokens,
                choice.num_output_tokens,
                self.meter.cached_tokens,
                self.meter.cache_write_tokens,
            ),
            incomplete_reason=None if is_complete else "max_output_tokens",
        )
        if self.store is not None:
            turn = [*self.conversation, ChatMessage("assistant", choice.text)]
            self.store.put(self.tenant, response, turn)
        return response

    async def events(self, outputs: Outputs) -> AsyncGenerator[ResponseEvent, None]:
        """The event sequence, each event numbered by `sequence_number` from 0."""
        number = 0
        for event in self._opening_events():
            event["sequence_number"] = number
            yield event
            number += 1
        choice = Choice()
        async with contextlib.aclosing(outputs):
            async for _, output in outputs:
                check_not_aborted(output)
                choice.add(output)
                self.meter.completion_tokens = output.num_output_tokens
                if output.text:
                    delta = self._in_text("response.output_text.delta")
                    delta["delta"] = output.text
                    delta["logprobs"] = []
                    delta["sequence_number"] = number
                    yield delta
                    number += 1
        for event in self._closing_events(choice):
            event["sequence_number"] = number
            yield event
            number += 1

    def _opening_events(self) -> list[ResponseEvent]:
        pending = response_object(
            self.response_id, self.request, status="in_progress", output=[], usage_body=None
        )
        part_added = self._in_text("response.content_part.added")
        part_added["part"] = output_text_part("")
        return [
            {"type": "response.created", "response": pending},
            {"type": "response.in_progress", "response": pending},
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": output_message(self.item_id, "", "in_progress"),
            },
            part_added,
        ]

    def _closing_events(self, choice: Choice) -> list[ResponseEvent]:
        """text done, part done, item done, then completed (or incomplete at max_output_tokens)."""
        final = self.body([choice])
        text_done = self._in_text("response.output_text.done")
        text_done["text"] = choice.text
        text_done["logprobs"] = []
        part_done = self._in_text("response.content_part.done")
        part_done["part"] = output_text_part(choice.text)
        last = "response.completed" if final["status"] == "completed" else "response.incomplete"
        return [
            text_done,
            part_done,
            {"type": "response.output_item.done", "output_index": 0, "item": final["output"][0]},
            {"type": last, "response": final},
        ]

    def _in_text(self, event_type: str) -> ResponseEvent:
        """An event about the one text part of the one output message."""
        return {"type": event_type, "item_id": self.item_id, "output_index": 0, "content_index": 0}
