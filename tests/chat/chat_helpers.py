"""The recording fake model of the chat tests (importable thanks to conftest's sys.path entry)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from llmserve.backends.fake import FakeBackend
from llmserve.types import GenerateOutput, GenerateRequest

MODEL = "fake-chat"
REPLY = "Streaming words arrive one by one. " * 60  # 2100 tokens: long enough to interrupt


class RecordingBackend(FakeBackend):
    """The fake model, remembering each request's sampling fields and prompt text."""

    def __init__(self) -> None:
        super().__init__(MODEL, reply=REPLY, max_model_len=8192, token_delay_s=0.02)
        self.requests: list[GenerateRequest] = []

    def prompt_of(self, request: GenerateRequest) -> str:
        return self.decode(request.prompt_token_ids)

    async def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        self.requests.append(request)
        async with contextlib.aclosing(super().generate(request)) as outputs:
            async for output in outputs:
                yield output
