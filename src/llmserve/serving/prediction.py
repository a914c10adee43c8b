"""OpenAI's Predicted Outputs: `prediction` on chat completions, checked and tokenized.

The predicted tokens reach the engine as drafts (`GenerateRequest.prediction_token_ids`); usage
reports how many of them the model accepted and rejected. Where OpenAI refuses a prediction
(its Predicted Outputs guide, "Limitations"), so does this server, with a 400 naming the field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from llmserve.backends.base import Backend
from llmserve.errors import InvalidRequestError
from llmserve.serving.prompts import off_loop
from llmserve.serving.strict import StrictModel

if TYPE_CHECKING:
    from llmserve.serving.schemas import ChatCompletionRequest


class PredictionTextPart(StrictModel):
    """A text part of a prediction's content."""

    type: Literal["text"]
    text: str


class Prediction(StrictModel):
    """`prediction`: static content the answer is expected to repeat for the most part."""

    type: Literal["content"]
    content: str | list[PredictionTextPart]

    @property
    def text(self) -> str:
        """The predicted text (text parts joined)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


def check_prediction(body: ChatCompletionRequest) -> None:
    """400 naming the field that OpenAI does not allow beside a prediction."""
    if body.prediction is None:
        return
    refusals = [
        ("n", body.n > 1, "`n` greater than 1"),
        ("logprobs", body.logprobs, "`logprobs`"),
        ("presence_penalty", body.presence_penalty > 0, "`presence_penalty` greater than 0"),
        ("frequency_penalty", body.frequency_penalty > 0, "`frequency_penalty` greater than 0"),
        (
            "max_completion_tokens",
            body.max_completion_tokens is not None,
            "`max_completion_tokens`",
        ),
        ("tools", bool(body.tools), "`tools` (function calling)"),
    ]
    for param, is_set, what in refusals:
        if is_set:
            raise InvalidRequestError(
                f"Predicted Outputs (`prediction`) cannot be used with {what}. Remove "
                f"`{param}` or `prediction`.",
                param=param,
            )


async def prediction_token_ids(backend: Backend, body: ChatCompletionRequest) -> tuple[int, ...]:
    """The prediction as the model's tokens (none without a prediction)."""
    if body.prediction is None:
        return ()
    text = body.prediction.text
    if not text:
        return ()
    return tuple(await off_loop(backend.encode, text, add_special_tokens=False))
