"""The engine: `step()` is schedule -> run -> sample -> update -> detokenize."""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Sequence as Seq
from typing import TYPE_CHECKING, Any, Protocol

from llmserve.config import EngineConfig
from llmserve.engine import decode_kernel
from llmserve.engine.attention import row_scale_bytes
from llmserve.engine.block_manager import BlockManager, namespace_root, num_kv_blocks
from llmserve.engine.detokenizer import IncrementalDetokenizer
from llmserve.engine.drafting import PredictionDrafter, back_off_ngram, propose_drafts
from llmserve.engine.model_runner import ModelRunner, kv_cache_dtype
from llmserve.engine.model_shape import kv_geometry
from llmserve.engine.sampler import SampledToken, Sampler
from llmserve.engine.scheduler import ScheduledChunk, Scheduler, SchedulerOutput
from llmserve.engine.sequence import Sequence, SequenceStatus
from llmserve.errors import InvalidRequestError
from llmserve.structured.grammar import GrammarCompiler, GrammarMatcher
from llmserve.structured.masks import apply_grammar_masks
from llmserve.types import (
    BackendLoad,
    FinishReason,
    GenerateOutput,
    GenerateRequest,
    TokenLogprob,
    TopLogprob,
)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


class DuplicateRequestError(ValueError):
    """A request id that is already in flight: refused, so no request takes over another's."""


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
        grammars: GrammarCompiler | None = None,  # None: requests with a grammar are refused
    ) -> None:
        geometry = kv_geometry(model.config.get_text_config())
        kv_dtype = kv_cache_dtype(config.kv_cache_dtype, model.dtype)
        num_blocks = num_blocks or num_kv_blocks(
            config.kv_cache_memory_mb,
            block_size=config.block_size,
            num_layers=geometry.num_layers,
            num_kv_heads=geometry.num_kv_heads,
            head_dim=geometry.head_dim,
            dtype_bytes=kv_dtype.itemsize,
            scale_bytes=row_scale_bytes(kv_dtype),
        )
        self.block_manager = BlockManager(
            num_blocks, config.block_size, enable_prefix_caching=config.enable_prefix_caching
        )
        self.scheduler = Scheduler(config, self.block_manager)
        decode_kernel.configure(config.decode_attention)  # builds once per machine, else loads
        self.runner = ModelRunner(
            model,
            num_blocks=num_blocks,
            block_size=config.block_size,
            kv_dtype=kv_dtype,
            lean_decode=config.lean_decode,
        )
        self.sampler = Sampler()
        self.grammars = grammars
        self.speculative = config.speculative
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.eos_token_ids = eos_token_ids
        self.vocab_size = int(model.get_input_embeddings().num_embeddings)
        self._request_to_seqs: dict[str, list[Sequence]] = {}
        self._request_to_failure: dict[str, Exception] = {}
        self._seq_to_detokenizer: dict[Sequence, IncrementalDetokenizer] = {}

    def add_request(self, request: GenerateRequest) -> None:
        """Queue `request`: one sequence per choice (`sampling.n`)."""
        if request.request_id in self._request_to_seqs:
            raise DuplicateRequestError(f"request {request.request_id!r} is already running")
        self._check_prompt(request.prompt_token_ids)
        num_prompt = len(request.prompt_token_ids)
        matcher = self._new_matcher(request)
        seqs = []
        for index in range(request.sampling.n):
            seq = Sequence(
                request.request_id,
                index,
                list(request.prompt_token_ids),
                num_prompt,
                request.sampling,
                tenant=request.tenant,
                priority=int(request.priority),
                matcher=matcher.copy() if matcher is not None else None,
                cache_root=namespace_root(request.cache_namespace),
                drafter=PredictionDrafter(request.prediction_token_ids)
                if request.prediction_token_ids
                else None,
            )
            self._seq_to_detokenizer[seq] = IncrementalDetokenizer(
                self.tokenizer.decode, request.sampling.stop
            )
            self.scheduler.add(seq)
            seqs.append(seq)
        self._request_to_seqs[request.request_id] = seqs

    def _new_matcher(self, request: GenerateRequest) -> GrammarMatcher | None:
        """The request's grammar state (compiled and cached before admission: this is a copy)."""
        if request.grammar is None:
            return None
        if self.grammars is None:
            raise ValueError("this engine was built without a grammar compiler")
        return self.grammars.new_matcher(request.grammar)

    def _check_prompt(self, token_ids: Seq[int]) -> None:
        if not 0 < len(token_ids) < self.max_model_len:
            raise ValueError(f"prompt must have 1 to {self.max_model_len - 1} tokens")
        if min(token_ids) < 0 or max(token_ids) >= self.vocab_size:
            raise ValueError(f"prompt token ids must lie in [0, {self.vocab_size})")

    def abort_request(self, request_id: str) -> list[GenerateOutput]:
        """Stop every unfinished choice of `request_id` and free its blocks now."""
        outputs = []
        for seq in self._request_to_seqs.get(request_id, []):
            if not seq.is_finished:
                self.scheduler.remove(seq)
                outputs.append(self._finish(seq, "abort"))
        self._request_to_seqs.pop(request_id, None)
        return outputs

    def pop_failures(self) -> dict[str, Exception]:
        """Requests that failed since the last call, with their causes; their callers must be told.

        A failed request is already stopped and its blocks freed; the other requests go on.
        """
        failures, self._request_to_failure = self._request_to_failure, {}
        return failures

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_work()

    def load(self) -> BackendLoad:
        waiting = self.scheduler.waiting
        return BackendLoad(
            num_running=len(self.scheduler.running),
            num_waiting=len(waiting),
            waiting_by_tenant=waiting.count_by_tenant(),
            max_running=self.scheduler.config.max_num_seqs,
            kv_cache_usage=1 - self.block_manager.num_free_blocks / self.block_manager.num_blocks,
            num_preemptions=self.scheduler.num_preemptions,
        )

    def step(self) -> list[GenerateOutput]:
        """One engine iteration; returns the outputs it produced."""
        propose_drafts(self.scheduler.running, self.speculative, self.max_model_len)
        scheduled = self.scheduler.schedule()
        outputs = [self._finish(seq, "length") for seq in scheduled.finished]
        if scheduled.is_empty:
            return outputs
        try:
            groups = self._forward(scheduled)
        except BaseException:
            self.block_manager.forget_uncomputed()
            raise
        self.block_manager.mark_computed()
        for chunks, logits in groups:
            outputs += self._postprocess(chunks, logits)
        return outputs

    def _forward(
        self, scheduled: SchedulerOutput
    ) -> list[tuple[list[ScheduledChunk], torch.Tensor]]:
        """The step's logits; if the batch fails, each chunk runs alone and only failures fail.

        Returns (chunks, their logits) groups: one normally, one per surviving chunk otherwise.
        """
        try:
            return [(scheduled.chunks, self.runner.execute(scheduled))]
        except Exception:
            logger.warning(
                "a batch of %d chunks failed; running each alone",
                len(scheduled.chunks),
                exc_info=True,
            )
        # NOTE: blocks registered for this step may hold no valid keys and values now.
        self.block_manager.forget_uncomputed()
        groups = []
        for chunk in scheduled.chunks:
            if chunk.seq.is_finished:  # a sibling choice of its request failed alone
                continue
            try:
                groups.append(([chunk], self.runner.execute(SchedulerOutput([chunk]))))
            except Exception as exc:
                self._fail(chunk.seq.request_id, exc)
        return [(chunks, logits) for chunks, logits in groups if not chunks[0].seq.is_finished]

    def _postprocess(
        self, chunks: list[ScheduledChunk], logits: torch.Tensor
    ) -> list[GenerateOutput]:
        for chunk in chunks:
            chunk.seq.num_computed_tokens += chunk.num_tokens
        drafted = [c for c in chunks if c.is_last and c.draft_token_ids]
        plain = [c for c in chunks if c.is_last and not c.draft_token_ids]
        row_starts = list(itertools.accumulate((c.num_sampled for c in chunks), initial=0))
        if drafted:
            plain_rows = [row_starts[i] for i, c in enumerate(chunks) if c in plain]
            plain_logits = logits[plain_rows]
        else:
            plain_logits = logits
        outputs = self._sample_plain([c.seq for c in plain], plain_logits)
        for index, chunk in enumerate(chunks):
            if chunk in drafted and not chunk.seq.is_finished:
                start = row_starts[index]
                outputs += self._verify(chunk, logits[start : start + chunk.num_sampled])
        return outputs

    def _sample_plain(self, seqs: list[Sequence], logits: torch.Tensor) -> list[GenerateOutput]:
        """One token per sequence without drafts, the whole batch at once."""
        if self.grammars is not None:  # NOTE: before any sampling decision, greedy included
            apply_grammar_masks(logits, [s.matcher for s in seqs], self.grammars)
        tokens = self.sampler.sample(logits, seqs)
        outputs = []
        for seq, token in zip(seqs, tokens, strict=True):
            if not seq.is_finished:  # else a sibling choice failed its request this step
                outputs += self._append_or_fail(seq, token)
        return outputs

    def _verify(self, chunk: ScheduledChunk, rows: torch.Tensor) -> list[GenerateOutput]:
        """Keep the drafts the model accepts, in order, then the token it picks after them.

        Each row is masked by the grammar as advanced over the tokens kept before it, and
        sampled by the same rules as without drafts: greedy answers are what they would be.
        """
        seq, drafts = chunk.seq, chunk.draft_token_ids
        outputs: list[GenerateOutput] = []
        try:
            for index in range(len(rows)):
                if seq.matcher is not None and self.grammars is not None:
                    apply_grammar_masks(rows[index : index + 1], [seq.matcher], self.grammars)
                draft = drafts[index] if index < len(drafts) else None
                token = self.sampler.sample_with_draft(rows[index], seq, draft)
                outputs.append(self._append_token(seq, token))
                if seq.is_finished or token.token_id != draft:
                    break
        except Exception as exc:  # this request's own failure: the rest of the batch goes on
            self._fail(seq.request_id, exc)
            return []
        kept = [out.token_ids[0] for out in outputs]
        num_accepted = sum(1 for kept_id, d in zip(kept, drafts, strict=False) if kept_id == d)
        return [self._after_verify(seq, len(drafts), num_accepted, outputs)]

    def _after_verify(
        self, seq: Sequence, num_drafts: int, num_accepted: int, outputs: list[GenerateOutput]
    ) -> GenerateOutput:
        """Roll the cache back to the kept tokens; one output for all of them."""
        if not seq.is_finished:
            seq.num_computed_tokens = seq.num_tokens - 1  # accepted drafts' KV is computed
            self.block_manager.free_tail(seq)
        if seq.drafter is not None:
            seq.num_accepted_prediction_tokens += num_accepted
            seq.num_rejected_prediction_tokens += num_drafts - num_accepted
        else:
            back_off_ngram(seq, num_accepted)
        return _merged(outputs, seq)

    def _append_or_fail(
        self, seq: Sequence, token: SampledToken | Exception
    ) -> list[GenerateOutput]:
        try:
            if isinstance(token, Exception):
                raise token
            return [self._append_token(seq, token)]
        except Exception as exc:  # this request's own failure: the rest of the batch goes on
            self._fail(seq.request_id, exc)
            return []

    def _fail(self, request_id: str, error: Exception) -> None:
        """Stop every choice of `request_id` and free its blocks; `pop_failures` reports it."""
        logger.error("request %s failed in the engine", request_id, exc_info=error)
        for seq in self._request_to_seqs.pop(request_id, []):
            if not seq.is_finished:
                self.scheduler.remove(seq)
                seq.status = SequenceStatus.FINISHED
            seq.matcher = None
            self.sampler.forget(seq)
            self._seq_to_detokenizer.pop(seq, None)  # never run again: it may be what failed
        self._request_to_failure[request_id] = error

    def _append_token(self, seq: Sequence, token: SampledToken) -> GenerateOutput:
        seq.token_ids.append(token.token_id)
        detokenizer = self._seq_to_detokenizer[seq]
        params = seq.sampling
        is_eos = token.token_id in self.eos_token_ids and not params.ignore_eos
        is_stop_token = is_eos or token.token_id in params.stop_token_ids
        if not is_stop_token:
            detokenizer.add_token(token.token_id)
        is_grammar_done = self._advance_grammar(seq, token.token_id)
        reason: FinishReason | None = None
        if detokenizer.stopped or is_stop_token or is_grammar_done:
            reason = "stop"
        elif seq.num_output_tokens >= params.max_tokens or seq.num_tokens >= self.max_model_len:
            reason = "length"
        if reason is None:
            return self._output(seq, detokenizer.take_delta(final=False), token, None)
        self.scheduler.finish(seq)
        return self._finish(seq, reason, token)

    def _advance_grammar(self, seq: Sequence, token_id: int) -> bool:
        """Feed the token to the sequence's grammar; True when the grammar is complete."""
        if seq.matcher is None:
            return False
        if not seq.matcher.consume(token_id):
            # NOTE: the mask allows only tokens the grammar takes, so this is the grammar's own
            # failure (llguidance stops at a parser limit): the request's error, not a crash.
            raise InvalidRequestError(
                f"The output grammar could not go on after {seq.num_output_tokens - 1} tokens: "
                f"{seq.matcher.error_message or 'the parser stopped'}. Simplify the schema or "
                "grammar (fewer alternatives, bounded repetitions).",
                code="grammar_limit_reached",
            )
        return seq.matcher.is_finished

    def _finish(
        self, seq: Sequence, reason: FinishReason, token: SampledToken | None = None
    ) -> GenerateOutput:
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
        seq.matcher = None  # frees the grammar state now, not when the request object goes
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
            queue_time_s=seq.queue_time_s,
            num_cached_tokens=seq.num_cached_prompt_tokens or 0,
            num_cache_write_tokens=seq.num_written_prompt_blocks * self.block_manager.block_size,
            num_accepted_prediction_tokens=seq.num_accepted_prediction_tokens,
            num_rejected_prediction_tokens=seq.num_rejected_prediction_tokens,
        )

    def _logprobs(self, token: SampledToken) -> tuple[TokenLogprob, ...]:
        top = tuple(TopLogprob(i, self.tokenizer.decode([i]), lp) for i, lp in token.top)
        text = self.tokenizer.decode([token.token_id])
        return (TokenLogprob(token.token_id, text, token.logprob or 0.0, top),)


def _merged(outputs: list[GenerateOutput], seq: Sequence) -> GenerateOutput:
    """One output for the tokens one step kept for `seq` (texts, ids and logprobs joined)."""
    last = outputs[-1]
    logprobs = None
    if last.logprobs is not None:
        logprobs = tuple(lp for out in outputs for lp in out.logprobs or ())
    return dataclasses.replace(
        last,
        text="".join(out.text for out in outputs),
        token_ids=tuple(t for out in outputs for t in out.token_ids),
        logprobs=logprobs,
        num_accepted_prediction_tokens=seq.num_accepted_prediction_tokens,
        num_rejected_prediction_tokens=seq.num_rejected_prediction_tokens,
    )
