"""The Responses API without HTTP: input items in, a `response` object or its events out."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from llmserve.backends.base import Backend
from llmserve.errors import NotFoundError
from llmserve.ids import response_id_of
from llmserve.sampling import SamplingParams
from llmserve.serving.constraints import (
    ToolPlan,
    all_calls_grammar,
    compile_checked,
    response_format_grammar,
    response_format_what,
    tool_plan,
)
from llmserve.serving.context import ServingContext
from llmserve.serving.generation import Generation
from llmserve.serving.outputs import Choice, Outputs, check_not_aborted
from llmserve.serving.prompts import chat_prompt_ids, check_context, off_loop
from llmserve.serving.response_items import Item, chat_messages, joined_turns, request_items
from llmserve.serving.response_objects import (
    ResponseEvent,
    ResponseObject,
    response_object,
    usage,
)
from llmserve.serving.response_output import OutputBuilder
from llmserve.serving.response_store import ConversationStore, ResponseStore
from llmserve.serving.schemas_responses import ResponseCreateRequest, ResponseInputFields
from llmserve.serving.usage import UsageMeter
from llmserve.types import ChatMessage, GenerateRequest, GrammarSpec

ResponseGeneration = Generation[ResponseObject, ResponseEvent]


@dataclass(frozen=True)
class ResponseStores:
    """Where a response finds the turns it continues, and where it is kept."""

    responses: ResponseStore | None = None
    conversations: ConversationStore | None = None


@dataclass(frozen=True)
class ResponsePrompt:
    """A Responses request's prompt: token ids, the items it is made of, and its tool plan."""

    ids: list[int]
    history: list[Item]
    input_items: list[Item]
    plan: ToolPlan | None


async def prepare_response(
    context: ServingContext, body: ResponseCreateRequest, stores: ResponseStores
) -> ResponseGeneration:
    """Validate and tokenize (400s here, before admission); the final response goes to `stores`."""
    body.reject_unsupported()
    prompt = await response_prompt(context, body, stores)
    grammar = await response_grammar(context.backend, body, prompt.plan)
    max_model_len = context.backend.info.max_model_len
    max_tokens = check_context(len(prompt.ids), body.max_output_tokens, max_model_len, "input")
    request = GenerateRequest(
        context.request_id,
        tuple(prompt.ids),
        sampling(body, max_tokens),
        context.priority,
        tenant=context.tenant,
        grammar=grammar,
        cache_namespace=context.request_namespace(body.cache_salt),
        prompt_cache_key=body.prompt_cache_key,
    )
    meter = UsageMeter(context.model, prompt_tokens=len(prompt.ids))
    answer = ResponseAnswer(context, body, meter, stores, prompt)
    return Generation(
        context.backend, [request], 1, meter, answer.body, answer.events, keep=answer.keep
    )


async def response_prompt(
    context: ServingContext, body: ResponseInputFields, stores: ResponseStores
) -> ResponsePrompt:
    """The prompt of a Responses request: instructions, the turns it continues, its input."""
    plan = tool_plan(
        body.chat_tools(),
        body.chat_tool_choice(),
        body.parallel_tool_calls,
        context.backend.info.tool_call_format,
    )
    history = await earlier_items(context, body, stores)
    input_items = request_items(body)
    messages = chat_messages([*history, *input_items])
    if body.instructions:
        messages.insert(0, ChatMessage("system", body.instructions))
    tools = plan.tools if plan else None
    messages = joined_turns(messages)
    ids = await off_loop(chat_prompt_ids, context.backend, messages, "input", tools)
    return ResponsePrompt(ids, history, input_items, plan)


async def earlier_items(
    context: ServingContext, body: ResponseInputFields, stores: ResponseStores
) -> list[Item]:
    """The items `previous_response_id` or `conversation` continues (of the same key only)."""
    if body.previous_response_id is not None:
        store = stores.responses
        found = (
            None
            if store is None
            else await store.conversation(context.tenant, body.previous_response_id)
        )
        if found is None:
            raise NotFoundError(
                f"Previous response with id '{body.previous_response_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        return found
    conversation_id = body.conversation_id
    if conversation_id is None:
        return []
    conversations = stores.conversations
    items = (
        None
        if conversations is None
        else await conversations.items(context.tenant, conversation_id)
    )
    if items is None:
        raise NotFoundError(
            f"Conversation with id '{conversation_id}' not found.", param="conversation"
        )
    return items


async def response_grammar(
    backend: Backend, body: ResponseCreateRequest, plan: ToolPlan | None
) -> GrammarSpec | None:
    """The grammar of forced tool calls or `text.format`, compiled (a bad one is a 400)."""
    if plan is not None:
        tools_grammar = plan.grammar or all_calls_grammar(plan)  # compiling checks the tools
        await compile_checked(backend, tools_grammar, "tools", "tools")
        if plan.grammar is not None:
            return plan.grammar
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
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
    )


class ResponseAnswer:
    """Builds the final `response` object, or the event sequence of a streamed one."""

    def __init__(
        self,
        context: ServingContext,
        body: ResponseCreateRequest,
        meter: UsageMeter,
        stores: ResponseStores,
        prompt: ResponsePrompt,
    ) -> None:
        self.response_id = response_id_of(context.request_id)
        self.created_at = int(time.time())  # the same in every event and the stored copy
        self.tenant = context.tenant
        self.request = body
        self.meter = meter
        self.stores = stores
        self.prompt = prompt
        plan = prompt.plan
        self.call_format = plan.call_format if plan is not None else None
        max_calls = plan.max_calls if plan is not None else None
        if body.max_tool_calls is not None:
            max_calls = min(max_calls or body.max_tool_calls, body.max_tool_calls)
        self.max_calls = max_calls

    def body(self, choices: list[Choice]) -> ResponseObject:
        """The finished response of a whole answer."""
        (choice,) = choices
        output = OutputBuilder(self.call_format, self.max_calls)
        output.feed(choice.text)
        output.finish()
        return self._finished(choice, output.items)

    def _finished(self, choice: Choice, items: list[Item]) -> ResponseObject:
        """The final response (`keep` stores it)."""
        is_complete = choice.finish_reason != "length"
        response = response_object(
            self.response_id,
            self.request,
            status="completed" if is_complete else "incomplete",
            output=items,
            usage_body=usage(
                self.meter.prompt_tokens,
                choice.num_output_tokens,
                self.meter.cached_tokens,
                self.meter.cache_write_tokens,
            ),
            incomplete_reason=None if is_complete else "max_output_tokens",
            created_at=self.created_at,
        )
        return response

    async def keep(self, response: ResponseObject) -> None:
        """Store the final response and add it to its conversation, as the request asked."""
        turn = [*self.prompt.input_items, *response["output"]]
        conversation_id = self.request.conversation_id
        if self.stores.conversations is not None and conversation_id is not None:
            await self.stores.conversations.append(self.tenant, conversation_id, turn)
        if self.request.store and self.stores.responses is not None:
            conversation = [*self.prompt.history, *turn]
            await self.stores.responses.put(
                self.tenant, response, conversation, self.prompt.input_items
            )

    async def events(self, outputs: Outputs) -> AsyncGenerator[ResponseEvent, None]:
        """The event sequence, each event numbered by `sequence_number` from 0."""
        number = 0
        async for event in self._numbered(outputs):
            event["sequence_number"] = number
            yield event
            number += 1

    async def _numbered(self, outputs: Outputs) -> AsyncGenerator[ResponseEvent, None]:
        pending = response_object(
            self.response_id,
            self.request,
            status="in_progress",
            output=[],
            usage_body=None,
            created_at=self.created_at,
        )
        yield {"type": "response.created", "response": pending}
        yield {"type": "response.in_progress", "response": pending}
        output = OutputBuilder(self.call_format, self.max_calls)
        choice = Choice()
        async with contextlib.aclosing(outputs):
            async for _, delta in outputs:
                check_not_aborted(delta)
                choice.add(delta)
                self.meter.completion_tokens = delta.num_output_tokens
                for event in output.feed(delta.text):
                    yield event
        for event in output.finish():
            yield event
        final = self._finished(choice, output.items)
        await self.keep(final)
        last = "response.completed" if final["status"] == "completed" else "response.incomplete"
        yield {"type": last, "response": final}
