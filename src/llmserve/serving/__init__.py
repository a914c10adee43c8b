"""HTTP-free endpoint logic: one module per endpoint, called by the API routes and by jobs.

- `chat`, `completions`, `responses`: `prepare_*(context, request)` validates and tokenizes
  (every 400 happens here) and returns a `Generation`; run it with `result()` or `chunks()`.
- `embeddings`: `prepare_embeddings(context, request)` returns an `EmbeddingJob`.
- `context`: `ServingContext`, who asks and which backend serves.
- `schemas*`: the OpenAI request models; `wire`, `response_objects`: typed response bodies.
- `prompts`, `params`, `outputs`, `usage`, `logprobs`: the shared steps.
"""
