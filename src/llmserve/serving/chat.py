"""Chat completions without HTTP: messages in, a `ChatCompletion` or its chunks out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Sequence

from llmserve.errors import InvalidRequestError
from llmserve.serving.context import ServingContext
from llmserve.serving.generation import Answer, Generation
from llmserve.serving.logprobs import chat_logprobs
from llmserve.serving.outputs import Choice, Outputs, check_not_aborted
from llmserve.serving.params import sampling_params
from llmserve.serving.prompts import chat_prompt_ids, check_context, off_loop
from llmserve.serving.schemas import ChatCompletionRequest
from llmserve.serving.usage import UsageMeter
from llmserve.serving.wire import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChatLogprobs,
)
from llmserve.types import ChatMessage, GenerateRequest, TokenLogprob

ChatGeneration = Generation[ChatCompletion, ChatCompletionChunk]


async def prepare_chat(context: ServingContext, body: ChatCompletionRequest) -> ChatGeneration:
    """Validate and tokenize a chat request (400s here, before admission); nothing runs yet."""
    body.reject_unsupported()
    messages = [ChatMessage(m.role, m.text) for m in body.messages]
    ids = await off_loop(chat_prompt_ids, context.backend, messages, "messages")
    max_model_len = context.backend.info.max_model_len
    max_tokens = body.max_completion_tokens or body.max_tokens
    max_tokens = check_context(len(ids), max_tokens, max_model_len, "messages")
    sampling = sampling_params(body, max_tokens, requested_logprobs(body))
    request = GenerateRequest(
        context.request_id, tuple(ids), sampling, context.priority, tenant=context.tenant
    )
    meter = UsageMeter(context.model, prompt_tokens=len(ids))
    answer = ChatAnswer.start("chatcmpl", context, body, meter)
    return Generation(context.backend, [request], body.n, meter, answer.body, answer.chunks)


def requested_logprobs(body: ChatCompletionRequest) -> int | None:
    """How many top logprobs to return per token, or None for no logprobs."""
    if body.top_logprobs is not None and not body.logprobs:
        raise InvalidRequestError(
            "`top_logprobs` requires `logprobs` to be true.", param="top_logprobs"
        )
    return (body.top_logprobs or 0) if body.logprobs else None


class ChatAnswer(Answer[ChatCompletionRequest]):
    """Builds the chat completion body, or its chunks, from the generated choices."""

    def body(self, choices: list[Choice]) -> ChatCompletion:
        """The non-streaming response."""
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": index,
                    "message": {"role": "assistant", "content": choice.text, "refusal": None},
                    "logprobs": self._logprobs(choice.logprobs),
                    "finish_reason": choice.finish_reason,
                }
                for index, choice in enumerate(choices)
            ],
            "usage": self.meter.usage(),
        }

    async def chunks(self, outputs: Outputs) -> AsyncGenerator[ChatCompletionChunk, None]:
        """A role delta per choice, content deltas, a finish chunk per choice, maybe usage."""
        n = self.request.n
        for index in range(n):
            yield self._chunk(index, {"role": "assistant", "content": ""})
        num_output_tokens = [0] * n
        async with contextlib.aclosing(outputs):
            async for index, output in outputs:
                check_not_aborted(output)
                num_output_tokens[index] = output.num_output_tokens
                self.meter.completion_tokens = sum(num_output_tokens)
                if output.text or output.logprobs:
                    logprobs = self._logprobs(output.logprobs or ())
                    yield self._chunk(index, {"content": output.text}, logprobs=logprobs)
                if output.finish_reason is not None:
                    yield self._chunk(index, {}, finish_reason=output.finish_reason)
        if self.request.include_usage:
            yield {**self._chunk_base(), "choices": [], "usage": self.meter.usage()}

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
