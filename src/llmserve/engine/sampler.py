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


class SamplingError(ValueError):
    """A row could not be sampled (its numbers are not finite); only its request fails."""


class Sampler:
    """Per-row penalties, temperature, top-k/top-p/min-p and a per-sequence seeded generator.

    Rows are independent: a row that cannot be sampled yields its exception in place of a token,
    and the other rows of the batch are sampled as if it were not there.
    """

    def __init__(self) -> None:
        self._generators: dict[tuple[str, int], torch.Generator] = {}

    def forget(self, seq: Sequence) -> None:
        self._generators.pop((seq.request_id, seq.index), None)

    @torch.inference_mode()
    def sample(self, logits: torch.Tensor, seqs: list[Sequence]) -> list[SampledToken | Exception]:
        """One token per row of `logits`, or the exception that row raised."""
        if not seqs:
            return []
        greedy_ids = logits.argmax(dim=-1).tolist()
        row_is_finite = torch.isfinite(logits.amax(dim=-1)).tolist()  # NaN and +inf propagate
        results: list[SampledToken | Exception] = []
        for row, seq in enumerate(seqs):
            try:
                if not row_is_finite[row]:
                    raise SamplingError("the model's logits are not finite")
                results.append(self._sample_row(logits[row], seq, greedy_ids[row]))
            except Exception as exc:  # the row's own failure: its request fails, not the batch
                results.append(exc)
        return results

    @torch.inference_mode()
    def sample_with_draft(
        self, raw: torch.Tensor, seq: Sequence, draft_id: int | None
    ) -> SampledToken:
        """One token for one row whose input guessed `draft_id`: the draft when it is accepted.

        Without a draft (the row after the last one), the token is sampled as `sample` does.
        Greedy: the argmax, as without a draft. Sampling: the speculative rejection rule for a
        draft proposed with certainty (q is a point mass): accept it with probability p(draft),
        else draw from p without the draft, renormalised. The token's law is p either way.
        """
        if not bool(torch.isfinite(raw.max())):
            raise SamplingError("the model's logits are not finite")
        if draft_id is None:
            return self._sample_row(raw, seq, int(raw.argmax()))
        penalized = _apply_penalties(raw, seq)
        if seq.sampling.is_greedy:
            token_id = int(_require_finite(penalized, "penalized logits").argmax())
            return _with_logprobs(raw, token_id, seq.sampling.logprobs)
        probs = self._probs(penalized, seq)
        generator = self._generator(seq)
        p_draft = float(probs[draft_id] / probs.sum())
        if float(torch.rand((), generator=generator)) < p_draft:
            return _with_logprobs(raw, draft_id, seq.sampling.logprobs)
        rest = probs.clone()
        rest[draft_id] = 0.0  # NOTE: p(draft) < 1 here, so some other token has mass
        token_id = int(torch.multinomial(rest, 1, generator=generator))
        return _with_logprobs(raw, token_id, seq.sampling.logprobs)

    def _sample_row(self, raw: torch.Tensor, seq: Sequence, greedy_id: int) -> SampledToken:
        penalized = _apply_penalties(raw, seq)
        if not seq.sampling.is_greedy:
            token_id = self._draw(penalized, seq)
        elif penalized is raw:
            token_id = greedy_id
        else:
            token_id = int(_require_finite(penalized, "penalized logits").argmax())
        return _with_logprobs(raw, token_id, seq.sampling.logprobs)

    def _draw(self, row_logits: torch.Tensor, seq: Sequence) -> int:
        probs = self._probs(row_logits, seq)
        return int(torch.multinomial(probs, 1, generator=self._generator(seq)))

    @staticmethod
    def _probs(row_logits: torch.Tensor, seq: Sequence) -> torch.Tensor:
        """The distribution a token is drawn from: temperature, top-k, min-p, top-p applied."""
        params = seq.sampling
        scaled = _require_finite(row_logits / params.sampling_temperature, "scaled logits")
        if params.top_k > 0:
            kth = torch.topk(scaled, min(params.top_k, scaled.numel())).values[-1]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        probs = torch.softmax(scaled, dim=-1)  # finite: the row's maximum is finite
        if params.min_p > 0:
            probs = probs.masked_fill(probs < params.min_p * probs.max(), 0.0)
        if params.top_p < 1:
            sorted_probs, order = probs.sort(descending=True)
            outside = sorted_probs.cumsum(-1) - sorted_probs > params.top_p
            probs = probs.scatter(0, order, sorted_probs.masked_fill(outside, 0.0))
        return probs

    def _generator(self, seq: Sequence) -> torch.Generator | None:
        if seq.sampling.seed is None:
            return None
        key = (seq.request_id, seq.index)
        if key not in self._generators:
            generator = torch.Generator()
            # NOTE: torch seeds are unsigned 64-bit; wrapping keeps every signed seed + index valid.
            generator.manual_seed((seq.sampling.seed + seq.index) % 2**64)
            self._generators[key] = generator
        return self._generators[key]


def _require_finite(row: torch.Tensor, what: str) -> torch.Tensor:
    """`row`, whose maximum must be finite (then softmax and argmax are well defined)."""
    if not bool(torch.isfinite(row.max())):
        raise SamplingError(f"the {what} are not finite")
    return row


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
