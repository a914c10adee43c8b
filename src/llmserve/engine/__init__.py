"""The continuous-batching engine: scheduler, KV-cache blocks, model runner, sampler."""
