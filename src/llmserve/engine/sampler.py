"""Picks one token per sequence from a batch of logits, each row with its own parameters."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmserve.engine.sequence import Sequence


@dataclass(frozen=True)
class SampledToken:
    """The chosen token, its log-probability, and the top alternatives when asked."""

    token_id: int
    logprob: float | None = None
    top: tuple[tuple[int, float], ...] = ()


class Sampler:
    """Per-row penalties, temperature, top-k/top-p/min-p and a per-sequence seeded generator."""

    def __init__(self) -> None:
        self._generators: dict[tuple[str, int], torch.Generator] = {}

    def forget(self, seq: Sequence) -> None:
        self._generators.pop((seq.request_id, seq.index), None)

    @torch.inference_mode()
    def sample(self, logits: torch.Tensor, seqs: list[Sequence]) -> list[SampledToken]:
        results: list[SampledToken] = []
        greedy_ids = logits.argmax(dim=-1).tolist()
        for row, seq in enumerate(seqs):
            raw = logits[row]
            penalized = _apply_penalties(raw, seq)
            if not seq.sampling.is_greedy:
                token_id = self._draw(penalized, seq)
            elif penalized is raw:
                token_id = greedy_ids[row]
            else:
                token_id = int(penalized.argmax())
            results.append(_with_logprobs(raw, token_id, seq.sampling.logprobs))
        return results

    def _draw(self, row_logits: torch.Tensor, seq: Sequence) -> int:
        params = seq.sampling
        scaled = row_logits / params.temperature
        if params.top_k > 0:
            kth = torch.topk(scaled, min(params.top_k, scaled.numel())).values[-1]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        probs = torch.softmax(scaled, dim=-1)
        if params.min_p > 0:
            probs = probs.masked_fill(probs < params.min_p * probs.max(), 0.0)
        if params.top_p < 1:
            sorted_probs, order = probs.sort(descending=True)
            outside = sorted_probs.cumsum(-1) - sorted_probs > params.top_p
            probs = probs.scatter(0, order, sorted_probs.masked_fill(outside, 0.0))
        return int(torch.multinomial(probs, 1, generator=self._generator(seq)))

    def _generator(self, seq: Sequence) -> torch.Generator | None:
        if seq.sampling.seed is None:
            return None
        key = (seq.request_id, seq.index)
        if key not in self._generators:
            generator = torch.Generator()
            generator.manual_seed(seq.sampling.seed + seq.index)
            self._generators[key] = generator
        return self._generators[key]


def _apply_penalties(row: torch.Tensor, seq: Sequence) -> torch.Tensor:
    params = seq.sampling
    needs_output = params.presence_penalty != 0 or params.frequency_penalty != 0
    if not needs_output and params.repetition_penalty == 1.0:
        return row
    row = row.clone()
    if params.repetition_penalty != 1.0:
        seen = torch.tensor(sorted(set(seq.token_ids)), dtype=torch.long)
        picked = row[seen]
        row[seen] = torch.where(
            picked > 0, picked / params.repetition_penalty, picked * params.repetition_penalty
        )
    if needs_output and seq.num_output_tokens:
        counts = torch.bincount(torch.tensor(seq.output_token_ids), minlength=row.numel())
        counts = counts[: row.numel()].to(row.dtype)
        row -= params.frequency_penalty * counts + params.presence_penalty * (counts > 0).to(
            row.dtype
        )
    return row


def _with_logprobs(row: torch.Tensor, token_id: int, num_top: int | None) -> SampledToken:
    if num_top is None:
        return SampledToken(token_id)
    logprobs = torch.log_softmax(row, dim=-1)
    top: tuple[tuple[int, float], ...] = ()
    if num_top > 0:
        values, ids = torch.topk(logprobs, min(num_top, logprobs.numel()))
        top = tuple(zip(ids.tolist(), values.tolist(), strict=True))
    return SampledToken(token_id, float(logprobs[token_id]), top)
