"""What the Responses routes share: the stores a response reads and writes, and the stored
response a caller may see."""

from __future__ import annotations

from fastapi import Request

from llmserve.api.access.jobs_access import job_owner, jobs_of
from llmserve.errors import NotFoundError
from llmserve.jobs.service import Jobs
from llmserve.jobs.store import ResponseRecord
from llmserve.jobs.stored_responses import StoredConversations, StoredResponses
from llmserve.serving.responses import ResponseStores


def stores_of(jobs: Jobs) -> ResponseStores:
    """Stored responses and conversations, on the job store."""
    return ResponseStores(StoredResponses(jobs.store), StoredConversations(jobs.store))


async def owned_response(request: Request, response_id: str) -> tuple[Jobs, ResponseRecord]:
    """The stored response, if the caller may see it; 404 otherwise."""
    owner = await job_owner(request)
    jobs = jobs_of(request)
    record = await jobs.call(jobs.store.get_response, owner, response_id)
    if record is None:
        raise NotFoundError(f"No response found with id '{response_id}'.", param="response_id")
    return jobs, record
