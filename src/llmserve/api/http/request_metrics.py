"""Feeds metrics.py from the API layer: request figures where outputs stream, per-key figures at
admission and slot release.

- `watch_outputs` wraps a generation's outputs (streaming or not, see api/http/respond.py): time to
  first token and end-to-end latency from the request's arrival, inter-token latency per choice,
  the backend's queue time, prompt and generation tokens, and each choice's finish reason (a
  choice that never finished, cut off by a disconnect, timeout or drain, counts as "abort").
- `counting_rejections` counts 429s and 503s per key (the per-key in-flight gauge and token
  counters are kept by the admitted request, api/admission/admitted.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Iterator

from starlette.datastructures import State

from llmserve.errors import DrainingError, OverloadedError, RateLimitError
from llmserve.metrics import ServerMetrics
from llmserve.types import GenerateOutput

Outputs = AsyncGenerator[tuple[int, GenerateOutput], None]


class OutputObserver:
    """The vLLM-style figures of one API request, from its outputs as they arrive."""

    def __init__(
        self,
        metrics: ServerMetrics,
        model: str,
        num_choices: int,
        arrived_at: float,
        namespace_kind: str = "key",
    ) -> None:
        self._metrics = metrics
        self._model = model
        self._namespace_kind = namespace_kind  # the prefix-cache label: never the prompt
        # NOTE: label children resolved once: `observe` runs for every token.
        self._generation_tokens = metrics.generation_tokens.labels(model)
        self._inter_token_latency = metrics.inter_token_latency.labels(model)
        self._num_choices = num_choices
        self._arrived_at = arrived_at
        self._has_first_token = False
        self._backend_request_ids: set[str] = set()
        self._index_to_num_tokens: dict[int, int] = {}
        self._index_to_last_token_at: dict[int, float] = {}
        self._finished_indexes: set[int] = set()

    def observe(self, index: int, output: GenerateOutput) -> None:
        """One output of choice `index`."""
        now = time.monotonic()
        if output.request_id not in self._backend_request_ids:  # its first output: prefilled
            self._backend_request_ids.add(output.request_id)
            self._metrics.prompt_tokens.labels(self._model).inc(output.num_prompt_tokens)
            if output.queue_time_s is not None:
                self._metrics.request_queue_time.labels(self._model).observe(output.queue_time_s)
            self._count_prefix_cache(output)
        num_new = output.num_output_tokens - self._index_to_num_tokens.get(index, 0)
        if num_new > 0:
            self._count_tokens(index, num_new, now)
            self._index_to_num_tokens[index] = output.num_output_tokens
        if output.finish_reason is not None and index not in self._finished_indexes:
            self._finished_indexes.add(index)
            self._metrics.request_success.labels(self._model, output.finish_reason).inc()

    def _count_prefix_cache(self, output: GenerateOutput) -> None:
        """What the prompt asked of the prefix cache and found there (vLLM counts tokens)."""
        labels = (self._model, self._namespace_kind)
        self._metrics.prefix_cache_queries.labels(*labels).inc(output.num_prompt_tokens)
        self._metrics.prefix_cache_hits.labels(*labels).inc(output.num_cached_tokens)
        if output.replica:
            self._metrics.replica_requests.labels(self._model, output.replica).inc()

    def finish(self) -> None:
        """The outputs ended (or were closed): end-to-end latency; unfinished choices abort."""
        for _ in range(self._num_choices - len(self._finished_indexes)):
            self._metrics.request_success.labels(self._model, "abort").inc()
        latency = time.monotonic() - self._arrived_at
        self._metrics.e2e_request_latency.labels(self._model).observe(latency)

    def _count_tokens(self, index: int, num_new: int, now: float) -> None:
        self._generation_tokens.inc(num_new)
        if not self._has_first_token:
            self._has_first_token = True
            ttft = now - self._arrived_at
            self._metrics.time_to_first_token.labels(self._model).observe(ttft)
        previous = self._index_to_last_token_at.get(index)
        if previous is not None:
            self._inter_token_latency.observe(now - previous)
        self._index_to_last_token_at[index] = now


async def watch_outputs(outputs: Outputs, observer: OutputObserver) -> Outputs:
    """`outputs`, observed; closing this closes `outputs` (aborting the generation)."""
    try:
        async with contextlib.aclosing(outputs):
            async for index, output in outputs:
                observer.observe(index, output)
                yield index, output
    finally:
        observer.finish()


def arrival_time(state: State) -> float:
    """When the request arrived (noted by the request log), else now."""
    arrived_at = getattr(state, "arrived_at", None)
    return arrived_at if isinstance(arrived_at, float) else time.monotonic()


def rejection_reason(error: Exception) -> str | None:
    """The `reason` label of a refused request, or None when `error` is no refusal."""
    if isinstance(error, RateLimitError):
        return "rate_limited"
    if isinstance(error, DrainingError):
        return "draining"
    if isinstance(error, OverloadedError):
        return "overloaded"
    return None


@contextlib.contextmanager
def counting_rejections(metrics: ServerMetrics, key_id: str, model: str) -> Iterator[None]:
    """Count a 429 or 503 raised in the body against the key, by reason."""
    try:
        yield
    except Exception as exc:
        reason = rejection_reason(exc)
        if reason is not None:
            metrics.key_rejections.labels(metrics.key_label(key_id), model, reason).inc()
        raise
