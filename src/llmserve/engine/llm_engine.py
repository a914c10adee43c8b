"""The engine: `step()` is schedule -> run -> sample -> update -> detokenize."""

from __future__ import annotations

import itertools
from collections.abc import Sequence as Seq
from typing import Any, Protocol

from llmserve.backends.base import (
    BackendLoad,
    FinishReason,
    GenerateOutput,
    GenerateRequest,
    TokenLogprob,
    TopLogprob,
)
from llmserve.config import EngineConfig
from llmserve.engine.block_manager import BlockManager, num_kv_blocks
from llmserve.engine.detokenizer import IncrementalDetokenizer
from llmserve.engine.model_runner import ModelRunner
from llmserve.engine.sampler import SampledToken, Sampler
from llmserve.engine.scheduler import Scheduler
from llmserve.engine.sequence import Sequence, SequenceStatus


class TextDecoder(Protocol):
    def decode(self, token_ids: Seq[int]) -> str: ...


class LLMEngine:
    """Continuous batching over one transformers causal LM. Not thread-safe: one caller steps it."""

    def __init__(
        self,
        model: Any,
        tokenizer: TextDecoder,
        config: EngineConfig,
        *,
        max_model_len: int,
        eos_token_ids: frozenset[int],
        num_blocks: int | None = None,  # overrides the block count the memory budget gives
    ) -> None:
        text_config = model.config.get_text_config()
        head_dim = getattr(text_config, "head_dim", None) or (
            text_config.hidden_size // text_config.num_attention_heads
        )
        num_blocks = num_blocks or num_kv_blocks(
            config.kv_cache_memory_mb,
            block_size=config.block_size,
            num_layers=text_config.num_hidden_layers,
            num_kv_heads=text_config.num_key_value_heads,
            head_dim=head_dim,
            dtype_bytes=model.dtype.itemsize,
        )
        self.block_manager = BlockManager(
            num_blocks, config.block_size, enable_prefix_caching=config.enable_prefix_caching
        )
        self.scheduler = Scheduler(config, self.block_manager)
        self.runner = ModelRunner(model, num_blocks=num_blocks, block_size=config.block_size)
        self.sampler = Sampler()
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.eos_token_ids = eos_token_ids
        self._request_to_seqs: dict[str, list[Sequence]] = {}
        self._seq_to_detokenizer: dict[Sequence, IncrementalDetokenizer] = {}
        self._arrivals = itertools.count()

    def add_request(self, request: GenerateRequest) -> None:
        """Queue `request`: one sequence per choice (`sampling.n`)."""
        num_prompt = len(request.prompt_token_ids)
        if num_prompt == 0 or num_prompt >= self.max_model_len:
            raise ValueError(f"prompt must have 1 to {self.max_model_len - 1} tokens")
        if request.request_id in self._request_to_seqs:
            raise ValueError(f"request {request.request_id!r} is already running")
        seqs = []
        for index in range(request.sampling.n):
            seq = Sequence(
                request.request_id,
                index,
                list(request.prompt_token_ids),
                num_prompt,
                request.sampling,
                arrival=next(self._arrivals),
                tenant=request.tenant,
                priority=int(request.priority),
            )
            self._seq_to_detokenizer[seq] = IncrementalDetokenizer(
                self.tokenizer.decode, request.sampling.stop
            )
            self.scheduler.add(seq)
            seqs.append(seq)
        self._request_to_seqs[request.request_id] = seqs

    def abort_request(self, request_id: str) -> list[GenerateOutput]:
        """Stop every unfinished choice of `request_id` and free its blocks now."""
        outputs = []
        for seq in self._request_to_seqs.get(request_id, []):
            if not seq.is_finished:
                self.scheduler.remove(seq)
                outputs.append(self._finish(seq, "abort"))
        self._request_to_seqs.pop(request_id, None)
        return outputs

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_work()

    def load(self) -> BackendLoad:
        waiting = self.scheduler.waiting
        return BackendLoad(
            num_running=len(self.scheduler.running),
            num_waiting=len(waiting),
            waiting_by_tenant=waiting.count_by_tenant(),
            max_running=self.scheduler.config.max_num_seqs,
        )

    def step(self) -> list[GenerateOutput]:
        """One engine iteration; returns the outputs it produced."""
        scheduled = self.scheduler.schedule()
        outputs = [self._finish(seq, "length") for seq in scheduled.finished]
        if scheduled.is_empty:
            return outputs
        try:
            logits = self.runner.execute(scheduled)
        except BaseException:
            self.block_manager.forget_uncomputed()
            raise
        self.block_manager.mark_computed()
        sampled_seqs = [c.seq for c in scheduled.chunks if c.is_last]
        tokens = self.sampler.sample(logits, sampled_seqs)
        for chunk in scheduled.chunks:
            chunk.seq.num_computed_tokens += chunk.num_tokens
        for seq, token in zip(sampled_seqs, tokens, strict=True):
            outputs.append(self._append_token(seq, token))
        return outputs

    def _append_token(self, seq: Sequence, token: SampledToken) -> GenerateOutput:
        seq.token_ids.append(token.token_id)
        detokenizer = self._seq_to_detokenizer[seq]
        params = seq.sampling
        is_eos = token.token_id in self.eos_token_ids and not params.ignore_eos
        is_stop_token = is_eos or token.token_id in params.stop_token_ids
        if not is_stop_token:
            detokenizer.add_token(token.token_id)
        reason: FinishReason | None = None
        if detokenizer.stopped or is_stop_token:
            reason = "stop"
        elif seq.num_output_tokens >= params.max_tokens or seq.num_tokens >= self.max_model_len:
            reason = "length"
        if reason is None:
            return self._output(seq, detokenizer.take_delta(final=False), token, None)
        self.scheduler.finish(seq)
        return self._finish(seq, reason, token)

    def _finish(
        self, seq: Sequence, reason: FinishReason, token: SampledToken | None = None
    ) -> GenerateOutput:
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
        self.sampler.forget(seq)
        detokenizer = self._seq_to_detokenizer.pop(seq)
        seqs = self._request_to_seqs.get(seq.request_id, [])
        if all(s.is_finished for s in seqs):
            self._request_to_seqs.pop(seq.request_id, None)
        return self._output(seq, detokenizer.take_delta(final=True), token, reason)

    def _output(
        self, seq: Sequence, text: str, token: SampledToken | None, reason: FinishReason | None
    ) -> GenerateOutput:
        return GenerateOutput(
            request_id=seq.request_id,
            index=seq.index,
            text=text,
            token_ids=(token.token_id,) if token else (),
            num_prompt_tokens=seq.num_prompt_tokens,
            num_output_tokens=seq.num_output_tokens,
            finish_reason=reason,
            logprobs=self._logprobs(token) if token and seq.sampling.logprobs is not None else None,
            num_cached_tokens=seq.num_cached_prompt_tokens or 0,
        )

    def _logprobs(self, token: SampledToken) -> tuple[TokenLogprob, ...]:
        top = tuple(TopLogprob(i, self.tokenizer.decode([i]), lp) for i, lp in token.top)
        text = self.tokenizer.decode([token.token_id])
        return (TokenLogprob(token.token_id, text, token.logprob or 0.0, top),)
