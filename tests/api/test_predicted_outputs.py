"""Predicted Outputs on a real server (tiny-chat on the engine) through the openai SDK.

The answer with a prediction is byte for byte the answer without one (greedy); usage reports the
accepted and rejected prediction tokens, streamed too; OpenAI's refusals are 400s naming the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from live_server import LiveServer
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.local import LocalBackend
from llmserve.config import BUILTIN_CHAT_MODEL, ModelConfig, ServerConfig

MODEL = BUILTIN_CHAT_MODEL
MESSAGES: Any = [{"role": "user", "content": "Repeat the list: alpha bravo charlie delta"}]


@pytest.fixture(scope="module")
def client(llmserve_home: Path) -> Iterator[openai.OpenAI]:
    chat = ModelConfig(MODEL, source=MODEL, kind="chat")
    config = ServerConfig(models=(chat,))
    backends = {MODEL: LocalBackend(chat, config.engine, llmserve_home)}
    with LiveServer(create_app(config, backends, OpenGatekeeper())) as live:
        yield openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", timeout=120)


def ask(client: openai.OpenAI, prediction: Any = None, **kw: Any) -> Any:
    extra = {} if prediction is None else {"prediction": prediction}
    return client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=60, temperature=0, **extra, **kw
    )


def test_prediction_equal_to_the_answer_gives_it_unchanged(client: openai.OpenAI) -> None:
    plain = ask(client)
    answer = plain.choices[0].message.content
    assert plain.usage.completion_tokens_details is None  # no prediction: no details
    predicted = ask(client, {"type": "content", "content": answer})
    assert predicted.choices[0].message.content == answer
    assert predicted.choices[0].finish_reason == plain.choices[0].finish_reason
    details = predicted.usage.completion_tokens_details
    # NOTE: the random model's tokens are not always how its tokenizer splits their text, so a
    # few predicted tokens differ from the answer's own: some are rejected (then re-synced)
    assert details.accepted_prediction_tokens > predicted.usage.completion_tokens // 4
    assert isinstance(details.rejected_prediction_tokens, int)
    assert predicted.usage.completion_tokens == plain.usage.completion_tokens


def test_wrong_prediction_as_text_parts_counts_rejections(client: openai.OpenAI) -> None:
    answer = ask(client).choices[0].message.content
    half = answer[: len(answer) // 2]
    parts = [{"type": "text", "text": half}, {"type": "text", "text": " zulu yankee xray"}]
    predicted = ask(client, {"type": "content", "content": parts})
    assert predicted.choices[0].message.content == answer
    details = predicted.usage.completion_tokens_details
    assert details.accepted_prediction_tokens > 0
    assert details.rejected_prediction_tokens > 0


def test_streamed_prediction_reports_usage_in_the_last_chunk(client: openai.OpenAI) -> None:
    answer = ask(client).choices[0].message.content
    stream = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=60,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        prediction={"type": "content", "content": answer},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage.completion_tokens_details.accepted_prediction_tokens > 0
    assert isinstance(usage.completion_tokens_details.rejected_prediction_tokens, int)


REFUSED = [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"max_completion_tokens": 10}, "max_completion_tokens"),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        "tools",
    ),
]


@pytest.mark.parametrize(("fields", "param"), REFUSED)
def test_prediction_with_a_field_openai_refuses_is_a_400(
    client: openai.OpenAI, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, {"type": "content", "content": "alpha"}, **fields)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert "prediction" in caught.value.body["message"]  # type: ignore[index]


@pytest.mark.parametrize(
    "prediction",
    [
        {"type": "text", "content": "alpha"},
        {"type": "content", "content": 5},
        {"type": "content"},
        "alpha",
        {"type": "content", "content": [{"type": "image_url", "text": "x"}]},
    ],
)
def test_malformed_prediction_is_a_400_naming_it(client: openai.OpenAI, prediction: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, prediction)
    assert caught.value.body["param"].startswith("prediction")  # type: ignore[index]
