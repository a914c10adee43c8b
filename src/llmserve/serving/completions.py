"""Text completions without HTTP: prompts in, a `Completion` or its chunks out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from llmserve.errors import InvalidRequestError
from llmserve.serving.constraints import output_grammar
from llmserve.serving.context import ServingContext
from llmserve.serving.generation import Answer, Generation
from llmserve.serving.logprobs import completion_logprobs
from llmserve.serving.outputs import Choice, Outputs, check_not_aborted
from llmserve.serving.params import sampling_params
from llmserve.serving.prompts import check_context, encode_prompt, off_loop
from llmserve.serving.schemas import CompletionRequest
from llmserve.serving.usage import UsageMeter
from llmserve.serving.wire import Completion, CompletionChoice, CompletionLogprobs
from llmserve.types import GenerateRequest

CompletionGeneration = Generation[Completion, Completion]


async def prepare_completion(
    context: ServingContext, body: CompletionRequest
) -> CompletionGeneration:
    """Validate and tokenize every prompt (400s here, before admission); nothing runs yet."""
    check_supported(body)
    grammar = await output_grammar(context.backend, body.response_format, body.structured_outputs)
    max_model_len = context.backend.info.max_model_len
    requests: list[GenerateRequest] = []
    for position, prompt in enumerate(body.prompts):
        ids = await off_loop(encode_prompt, context.backend, prompt)
        max_tokens = check_context(len(ids), body.max_tokens, max_model_len, "prompt")
        request_id = context.request_id
        if len(body.prompts) > 1:
            request_id = f"{request_id}-{position}"
        sampling = sampling_params(body, max_tokens, body.logprobs)
        requests.append(
            GenerateRequest(
                request_id,
                tuple(ids),
                sampling,
                context.priority,
                tenant=context.tenant,
                grammar=grammar,
                cache_namespace=context.request_namespace(body.cache_salt),
                prompt_cache_key=body.prompt_cache_key,
            )
        )
    num_prompt_tokens = sum(len(r.prompt_token_ids) for r in requests)
    meter = UsageMeter(context.model, prompt_tokens=num_prompt_tokens)
    answer = CompletionAnswer.start("cmpl", context, body, meter)
    return Generation(context.backend, requests, body.n, meter, answer.body, answer.chunks)


def check_supported(body: CompletionRequest) -> None:
    """400 for completion options this server does not implement."""
    body.reject_unsupported()
    if body.suffix:
        raise InvalidRequestError("`suffix` is not supported by this server.", param="suffix")
    if body.best_of not in (None, body.n):
        raise InvalidRequestError("`best_of` is not supported by this server.", param="best_of")
    if body.echo and body.logprobs is not None:
        raise InvalidRequestError(
            "`echo` together with `logprobs` is not supported by this server.", param="echo"
        )


class CompletionAnswer(Answer[CompletionRequest]):
    """Builds the completion body, or its chunks, from the generated choices."""

    def body(self, choices: list[Choice]) -> Completion:
        """The non-streaming response."""
        completion = self._base(
            [
                self._choice(
                    index,
                    self._echoed(index) + choice.text,
                    choice.finish_reason,
                    self._logprobs(choice, 0),
                )
                for index, choice in enumerate(choices)
            ]
        )
        completion["usage"] = self.meter.usage()
        return completion

    async def chunks(self, outputs: Outputs) -> AsyncGenerator[Completion, None]:
        """Text deltas (the echoed prompt first), a finish chunk per choice, maybe usage."""
        num_choices = len(self.request.prompts) * self.request.n
        if self.request.echo:
            for index in range(num_choices):
                yield self._chunk(self._choice(index, self._echoed(index), None, None))
        num_output_tokens = [0] * num_choices
        text_offsets = [0] * num_choices
        async with contextlib.aclosing(outputs):
            async for index, output in outputs:
                check_not_aborted(output)
                num_output_tokens[index] = output.num_output_tokens
                self.meter.completion_tokens = sum(num_output_tokens)
                if output.text or output.logprobs:
                    logprobs = None
                    if self.request.logprobs is not None:
                        logprobs = completion_logprobs(output.logprobs or (), text_offsets[index])
                    text_offsets[index] += len(output.text)
                    yield self._chunk(self._choice(index, output.text, None, logprobs))
                if output.finish_reason is not None:
                    yield self._chunk(self._choice(index, "", output.finish_reason, None))
        if self.request.include_usage:
            last = self._base([])
            last["usage"] = self.meter.usage()
            yield last

    def _echoed(self, index: int) -> str:
        """The prompt text echoed before choice `index`, or "" without `echo`."""
        return self.request.prompts[index // self.request.n] if self.request.echo else ""

    def _logprobs(self, choice: Choice, text_offset: int) -> CompletionLogprobs | None:
        if self.request.logprobs is None:
            return None
        return completion_logprobs(choice.logprobs, text_offset)

    @staticmethod
    def _choice(
        index: int, text: str, finish_reason: str | None, logprobs: CompletionLogprobs | None
    ) -> CompletionChoice:
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}

    def _chunk(self, choice: CompletionChoice) -> Completion:
        chunk = self._base([choice])
        if self.request.include_usage:
            chunk["usage"] = None
        return chunk

    def _base(self, choices: list[CompletionChoice]) -> Completion:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
