"""Chat completions without HTTP: messages in, a `ChatCompletion` or its chunks out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from llmserve.backends.base import Backend
from llmserve.errors import InvalidRequestError
from llmserve.serving.chat_tools import (
    ToolCallDeltas,
    finish_reason_with_calls,
    message_with_calls,
)
from llmserve.serving.constraints import (
    ToolPlan,
    compile_tools,
    output_grammar,
    tool_plan,
)
from llmserve.serving.context import ServingContext
from llmserve.serving.generation import Answer, Generation
from llmserve.serving.logprobs import chat_logprobs
from llmserve.serving.outputs import Choice, Outputs, check_not_aborted
from llmserve.serving.params import sampling_params
from llmserve.serving.prediction import check_prediction, prediction_token_ids
from llmserve.serving.prompts import chat_prompt_ids, check_context, off_loop
from llmserve.serving.schemas import ChatCompletionRequest
from llmserve.serving.usage import UsageMeter
from llmserve.serving.wire import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChatLogprobs,
)
from llmserve.types import (
    ChatMessage,
    GenerateOutput,
    GenerateRequest,
    GrammarSpec,
    TokenLogprob,
    ToolCall,
)

ChatGeneration = Generation[ChatCompletion, ChatCompletionChunk]


async def prepare_chat(context: ServingContext, body: ChatCompletionRequest) -> ChatGeneration:
    """Validate and tokenize a chat request (400s here, before admission); nothing runs yet."""
    body.reject_unsupported()
    check_prediction(body)
    plan = tool_plan(
        body.tools,
        body.tool_choice,
        body.parallel_tool_calls,
        context.backend.info.tool_call_format,
    )
    grammar = await chat_grammar(context.backend, body, plan)
    tools = plan.tools if plan else None
    ids = await off_loop(chat_prompt_ids, context.backend, chat_messages(body), "messages", tools)
    max_model_len = context.backend.info.max_model_len
    max_tokens = body.max_completion_tokens or body.max_tokens
    max_tokens = check_context(len(ids), max_tokens, max_model_len, "messages")
    sampling = sampling_params(body, max_tokens, requested_logprobs(body))
    request = GenerateRequest(
        context.request_id,
        tuple(ids),
        sampling,
        context.priority,
        tenant=context.tenant,
        grammar=grammar,
        cache_namespace=context.request_namespace(body.cache_salt),
        prompt_cache_key=body.prompt_cache_key,
        prediction_token_ids=await prediction_token_ids(context.backend, body),
    )
    meter = UsageMeter(context.model, prompt_tokens=len(ids), has_prediction=bool(body.prediction))
    answer = ChatAnswer.start("chatcmpl", context, body, meter)
    # None: plain content; else the answer is read for tool calls.
    answer.plan = plan if plan is not None and plan.call_format is not None else None
    return Generation(context.backend, [request], body.n, meter, answer.body, answer.chunks)


def chat_messages(body: ChatCompletionRequest) -> list[ChatMessage]:
    """The history as chat messages, with assistant tool calls and the ids tool results answer."""
    messages = []
    for position, m in enumerate(body.messages):
        if m.role == "tool" and m.tool_call_id is None:
            raise InvalidRequestError(
                "Missing parameter 'tool_call_id': messages with role 'tool' must have a "
                "'tool_call_id'.",
                param=f"messages.[{position}].tool_call_id",
            )
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or ()
        )
        messages.append(ChatMessage(m.role, m.text, calls, m.tool_call_id))
    return messages


async def chat_grammar(
    backend: Backend, body: ChatCompletionRequest, plan: ToolPlan | None
) -> GrammarSpec | None:
    """The grammar the answer must follow, compiled (bad schemas and tools are 400s here)."""
    if plan is not None:
        await compile_tools(backend, plan)
    output = await output_grammar(backend, body.response_format, body.structured_outputs)
    if plan is not None and plan.grammar is not None:
        return plan.grammar
    return output


def requested_logprobs(body: ChatCompletionRequest) -> int | None:
    """How many top logprobs to return per token, or None for no logprobs."""
    if body.top_logprobs is not None and not body.logprobs:
        raise InvalidRequestError(
            "`top_logprobs` requires `logprobs` to be true.", param="top_logprobs"
        )
    return (body.top_logprobs or 0) if body.logprobs else None


@dataclass
class ChatAnswer(Answer[ChatCompletionRequest]):
    """Builds the chat completion body, or its chunks, from the generated choices."""

    plan: ToolPlan | None = None  # None: plain content; else the answer is read for tool calls

    def body(self, choices: list[Choice]) -> ChatCompletion:
        """The non-streaming response."""
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [self._choice(index, choice) for index, choice in enumerate(choices)],
            "usage": self.meter.usage(),
        }

    def _choice(self, index: int, choice: Choice) -> ChatChoice:
        message: AssistantMessage = {"role": "assistant", "content": choice.text, "refusal": None}
        if self.plan is not None:
            message = message_with_calls(choice.text, self.plan)
        return {
            "index": index,
            "message": message,
            "logprobs": self._logprobs(choice.logprobs),
            "finish_reason": finish_reason_with_calls(
                choice.finish_reason, "tool_calls" in message
            ),
        }

    async def chunks(self, outputs: Outputs) -> AsyncGenerator[ChatCompletionChunk, None]:
        """A role delta per choice, content deltas, a finish chunk per choice, maybe usage."""
        n = self.request.n
        first: ChatDelta = {"role": "assistant", "content": None if self.plan else ""}
        for index in range(n):
            yield self._chunk(index, first)
        streams = [ToolCallDeltas(self.plan) if self.plan else None for _ in range(n)]
        num_output_tokens = [0] * n
        async with contextlib.aclosing(outputs):
            async for index, output in outputs:
                check_not_aborted(output)
                num_output_tokens[index] = output.num_output_tokens
                self.meter.completion_tokens = sum(num_output_tokens)
                stream = streams[index]
                if stream is not None:
                    for chunk in self._tool_chunks(index, output, stream):
                        yield chunk
                elif output.text or output.logprobs:
                    logprobs = self._logprobs(output.logprobs or ())
                    yield self._chunk(index, {"content": output.text}, logprobs=logprobs)
                if output.finish_reason is not None:
                    has_calls = stream is not None and stream.num_calls > 0
                    reason = finish_reason_with_calls(output.finish_reason, has_calls)
                    yield self._chunk(index, {}, finish_reason=reason)
        if self.request.include_usage:
            yield {**self._chunk_base(), "choices": [], "usage": self.meter.usage()}

    def _tool_chunks(
        self, index: int, output: GenerateOutput, stream: ToolCallDeltas
    ) -> list[ChatCompletionChunk]:
        """The chunks of one output when the answer is read for tool calls."""
        deltas = stream.feed(output.text)
        if output.finish_reason is not None:
            deltas += stream.finish()
        return [self._chunk(index, delta) for delta in deltas]

    def _chunk(
        self,
        index: int,
        delta: ChatDelta,
        *,
        logprobs: ChatLogprobs | None = None,
        finish_reason: str | None = None,
    ) -> ChatCompletionChunk:
        chunk = self._chunk_base()
        chunk["choices"] = [
            {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        ]
        if self.request.include_usage:
            chunk["usage"] = None
        return chunk

    def _chunk_base(self) -> ChatCompletionChunk:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [],
        }

    def _logprobs(self, logprobs: Sequence[TokenLogprob]) -> ChatLogprobs | None:
        return chat_logprobs(logprobs) if self.request.logprobs else None
