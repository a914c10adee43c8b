"""Background and stored responses through the real openai SDK."""

from __future__ import annotations

import openai
import pytest
from jobs_helpers import CRAWL, FAST, REPLY, SLOW, JobsServer, SdkFactory, wait_until

from llmserve.backends.fake import FakeBackend
from llmserve.types import ChatMessage


def finished(sdk: openai.OpenAI, response_id: str) -> bool:
    return sdk.responses.retrieve(response_id).status not in ("queued", "in_progress")


def test_background_response_is_queued_then_completes(
    jobs_server: JobsServer, client: SdkFactory
) -> None:
    sdk = client(jobs_server)
    queued = sdk.responses.create(model=FAST, input="hi", background=True)
    assert queued.status == "queued"
    assert queued.background is True
    wait_until(lambda: finished(sdk, queued.id), "the background response")
    done = sdk.responses.retrieve(queued.id)
    assert done.status == "completed"
    assert done.output_text == REPLY
    assert done.usage is not None and done.usage.output_tokens == len(REPLY) + 1


def test_retrieve_stream_replays_only_events_after_starting_after(
    jobs_server: JobsServer,
    client: SdkFactory,
) -> None:
    sdk = client(jobs_server)
    queued = sdk.responses.create(model=FAST, input="hi", background=True)
    wait_until(lambda: finished(sdk, queued.id), "the background response")
    everything = list(sdk.responses.retrieve(queued.id, stream=True))
    assert [e.sequence_number for e in everything] == list(range(len(everything)))
    assert everything[-1].type == "response.completed"
    later = list(sdk.responses.retrieve(queued.id, stream=True, starting_after=3))
    assert [e.sequence_number for e in later] == list(range(4, len(everything)))
    assert [e.type for e in later] == [e.type for e in everything[4:]]


def test_stream_follows_a_running_background_response_live(
    jobs_server: JobsServer, client: SdkFactory
) -> None:
    sdk = client(jobs_server)
    queued = sdk.responses.create(model=SLOW, input="hi", background=True)
    events = list(sdk.responses.retrieve(queued.id, stream=True, starting_after=0))
    assert events[0].sequence_number == 1
    assert events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == REPLY


def test_cancel_stops_a_background_response(jobs_server: JobsServer, client: SdkFactory) -> None:
    sdk = client(jobs_server)
    queued = sdk.responses.create(model=CRAWL, input="hi", background=True)
    wait_until(
        lambda: sdk.responses.retrieve(queued.id).status == "in_progress", "the response to run"
    )
    assert sdk.responses.cancel(queued.id).status == "cancelled"
    assert sdk.responses.retrieve(queued.id).status == "cancelled"
    events = [e.type for e in sdk.responses.retrieve(queued.id, stream=True)]
    assert "response.completed" not in events


def test_cancel_of_a_foreground_response_is_400(
    jobs_server: JobsServer, client: SdkFactory
) -> None:
    sdk = client(jobs_server)
    done = sdk.responses.create(model=FAST, input="hi")
    with pytest.raises(openai.BadRequestError, match="background: true"):
        sdk.responses.cancel(done.id)


def test_delete_removes_a_stored_response(jobs_server: JobsServer, client: SdkFactory) -> None:
    sdk = client(jobs_server)
    done = sdk.responses.create(model=FAST, input="hi")
    sdk.responses.delete(done.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(done.id)


def test_previous_response_id_continues_the_conversation(
    jobs_server: JobsServer, client: SdkFactory
) -> None:
    sdk = client(jobs_server)
    first = sdk.responses.create(model=FAST, input="What is 2+2?", instructions="Be brief.")
    second = sdk.responses.create(model=FAST, input="And 3+3?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert second.output_text == REPLY
    backend = FakeBackend(FAST)  # the same tokenizer and template as the served fake model
    history = [  # instructions are not carried over (OpenAI's rule)
        ChatMessage("user", "What is 2+2?"),
        ChatMessage("assistant", REPLY),
        ChatMessage("user", "And 3+3?"),
    ]
    prompt = backend.render_chat(history)
    assert second.usage is not None
    assert second.usage.input_tokens == len(backend.encode(prompt, add_special_tokens=False))


def test_previous_response_of_another_key_is_404(
    jobs_server: JobsServer, client: SdkFactory
) -> None:
    first = client(jobs_server).responses.create(model=FAST, input="secret")
    with pytest.raises(openai.NotFoundError, match="Previous response"):
        client(jobs_server, jobs_server.bob).responses.create(
            model=FAST, input="more", previous_response_id=first.id
        )


def test_background_without_store_is_400(jobs_server: JobsServer, client: SdkFactory) -> None:
    with pytest.raises(openai.BadRequestError, match="must be stored"):
        client(jobs_server).responses.create(model=FAST, input="hi", background=True, store=False)


def test_disconnecting_a_background_stream_never_cancels_it(
    jobs_server: JobsServer, client: SdkFactory
) -> None:
    sdk = client(jobs_server)
    stream = sdk.responses.create(model=SLOW, input="hi", background=True, stream=True)
    first = next(iter(stream))
    stream.close()  # the client goes away
    wait_until(lambda: finished(sdk, first.response.id), "the background response")
    assert sdk.responses.retrieve(first.response.id).status == "completed"
