"""The continuous-batching engine: scheduler, KV-cache blocks, model runner, sampler.

Map (one idea per module):
- `sequence`: one choice of a request (tokens, progress, blocks).
- `fair_queue`: the waiting queue (priority class, then round-robin by tenant).
- `block_manager`: counts fixed-size KV blocks within `EngineConfig.kv_cache_memory_mb`; shares
  the blocks of equal prompt prefixes (prefix caching: chained block hashes, ref counts, LRU).
- `scheduler`: decides each step's chunks (decodes first, then prefill chunks within the token
  budget) and preempts the newest sequence when blocks run out; emits `SchedulerOutput`.
- `model_runner` + `attention`: the only torch code; runs transformers' own model classes with a
  paged attention function registered through `AttentionInterface`. The cache holds the model's
  dtype, or bfloat16 or int8 with row scales (`EngineConfig.kv_cache_dtype`), read back in the
  model's dtype.
- `quantization`: int8 weights (every Linear to torch's fbgemm dynamic-int8 kernel) at load.
- `cpu`: CPU features (native bf16/fp16, int8 dot products), physical cores, default threads.
- `sampler`: per-row penalties, temperature, top-k/top-p/min-p, seeds, logprobs.
- `detokenizer`: incremental text that never splits a character and never emits a stop string.
- `llm_engine`: `step()` = schedule -> run -> sample -> update -> detokenize.
- `engine_thread`: runs the engine off the event loop and streams outputs to asyncio.
"""
