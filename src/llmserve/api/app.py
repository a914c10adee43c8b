"""The FastAPI app factory. Each endpoint family is a router included here with one line."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI

from llmserve import __version__
from llmserve.api.admission import ServerState
from llmserve.api.http.body_limit import BodyLimitMiddleware
from llmserve.api.http.errors import install_error_handlers
from llmserve.api.http.middleware import RequestIdMiddleware
from llmserve.api.http.openapi import DescribedApp
from llmserve.api.http.request_log import RequestLogMiddleware
from llmserve.api.http.variants import VariantHeaderMiddleware
from llmserve.api.routes import (
    admin,
    admin_console,
    batches,
    chat,
    completions,
    conversations,
    embeddings,
    files,
    health,
    metrics,
    models,
    playground,
    responses,
    responses_items,
    responses_ws,
    tokenize,
    variants,
)
from llmserve.api.startup import start_or_exit
from llmserve.auth.base import Gatekeeper
from llmserve.backends.base import Backend
from llmserve.config import ServerConfig
from llmserve.jobs.open_store import open_job_store
from llmserve.jobs.service import Jobs
from llmserve.jobs.workers import JobWorkers
from llmserve.metrics import ServerMetrics


def create_app(
    config: ServerConfig, backends: Mapping[str, Backend], gatekeeper: Gatekeeper
) -> FastAPI:
    """An app serving `backends` (by model name); its lifespan starts and stops them."""
    jobs = Jobs(open_job_store(config.home, config.database), config.home, config.jobs)
    workers = JobWorkers(jobs, backends, gatekeeper)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for backend in backends.values():
            await start_or_exit(backend)
        workers.start()
        try:
            yield
        finally:
            await workers.stop()
            await jobs.call(jobs.store.close)  # waits for store calls in flight, off the loop
            for backend in backends.values():
                await backend.shutdown()
            await gatekeeper.close()

    app = DescribedApp(
        title="llmserve",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",  # the request and error schemas; no docs UI
    )
    server_metrics = ServerMetrics(config.metrics, backends)
    app.state.llmserve = ServerState(config, backends, gatekeeper, server_metrics)
    app.state.jobs = jobs  # files, batches, stored and background responses
    install_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=config.limits.max_request_body_bytes,
        timeout_s=config.limits.body_timeout_s,
        own_limit_paths=frozenset({files.FILES_PATH}),  # uploads: jobs.max_file_mb
    )
    app.add_middleware(RequestLogMiddleware, metrics=server_metrics)  # one log line per request
    app.add_middleware(VariantHeaderMiddleware)  # x-llmserve-variant of canary models
    app.add_middleware(RequestIdMiddleware)  # outermost: its id is on every answer, 413s included
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(models.router)
    app.include_router(chat.router)
    app.include_router(completions.router)
    app.include_router(embeddings.router)
    app.include_router(responses_items.router)  # before /v1/responses/{response_id}
    app.include_router(responses.router)
    app.include_router(responses_ws.router)
    app.include_router(conversations.router)
    app.include_router(files.router)
    app.include_router(batches.router)
    app.include_router(tokenize.router)
    app.include_router(admin.router)
    app.include_router(admin_console.router)  # /admin/ui and what it reads
    app.include_router(variants.router)
    app.include_router(playground.router)
    return app
