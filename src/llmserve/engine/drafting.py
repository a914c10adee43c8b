"""Draft tokens for speculative decoding: from a request's prediction, or by prompt lookup.

A draft is only a guess: the engine verifies every draft token in one forward pass and keeps
the longest prefix the model itself would have produced (`llm_engine.LLMEngine._verify`).
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass

from llmserve.config import SpeculativeConfig
from llmserve.engine.sequence import Sequence

MAX_NGRAM = 3  # prompt lookup matches the last 3, then 2 tokens (1: too often by chance)
MIN_NGRAM = 2
MAX_BACKOFF = 32  # after n-gram drafts fail, at most this many steps go without them
MAX_RESYNC = 8  # a prediction re-syncs on at most the last 8 generated tokens


def find(haystack: Seq[int], needle: Seq[int], start: int = 0) -> int:
    """The first index >= `start` where `needle` occurs in `haystack`, or -1."""
    first, size = needle[0], len(needle)
    index = start
    while True:
        try:
            index = haystack.index(first, index)
        except ValueError:
            return -1
        if list(haystack[index : index + size]) == list(needle):
            return index
        index += 1


def rfind(haystack: Seq[int], needle: Seq[int], end: int) -> int:
    """The last index i with `haystack[i:i+len(needle)] == needle` and i + len(needle) <= end."""
    size = len(needle)
    for index in range(end - size, -1, -1):
        if haystack[index] == needle[0] and list(haystack[index : index + size]) == list(needle):
            return index
    return -1


def ngram_drafts(token_ids: Seq[int], num_tokens: int) -> list[int]:
    """Prompt lookup: the tokens that followed an earlier occurrence of the last n tokens.

    The latest occurrence with `num_tokens` tokens after it wins (else the one with the most):
    in a repeating stretch the very last occurrence is followed by a single token.
    """
    length = len(token_ids)
    for n in range(min(MAX_NGRAM, length - 1), MIN_NGRAM - 1, -1):
        suffix = token_ids[length - n :]
        best: list[int] = []
        end = length - 1
        while (start := rfind(token_ids, suffix, end)) >= 0:
            follow = list(token_ids[start + n : start + n + num_tokens])
            best = follow if len(follow) > len(best) else best
            if len(best) == num_tokens:
                break
            end = start + n - 1
        if best:
            return best
    return []


@dataclass
class PredictionDrafter:
    """Proposes the predicted tokens that follow what has been generated so far.

    It keeps a pointer into the prediction; while the output follows the prediction the pointer
    moves with it; after a divergence it re-syncs on the longest suffix of the output found in
    the prediction (after the pointer first: edits keep their order).
    """

    predicted: tuple[int, ...]
    pointer: int = 0  # index in `predicted` of the next token expected
    num_seen: int = 0  # output tokens already matched against the pointer

    def propose(self, output: Seq[int], num_tokens: int) -> list[int]:
        new = output[self.num_seen :]
        if list(self.predicted[self.pointer : self.pointer + len(new)]) == list(new):
            self.pointer += len(new)
        else:
            self.pointer = self._resync(output)
        self.num_seen = len(output)
        return list(self.predicted[self.pointer : self.pointer + num_tokens])

    def _resync(self, output: Seq[int]) -> int:
        for n in range(min(MAX_RESYNC, len(output)), 0, -1):
            suffix = output[len(output) - n :]
            index = find(self.predicted, suffix, self.pointer)
            if index < 0:
                index = find(self.predicted, suffix)
            if index >= 0:
                return index + n
        return len(self.predicted)  # nothing matches: no drafts until something does


def propose_drafts(running: list[Sequence], config: SpeculativeConfig, max_model_len: int) -> None:
    """Set `draft_token_ids` of every running sequence about to decode (empty: no guess)."""
    use_ngram = config.method == "ngram" and len(running) <= config.max_running
    for seq in running:
        seq.draft_token_ids = []
        room = min(seq.sampling.max_tokens - seq.num_output_tokens, max_model_len - seq.num_tokens)
        if seq.num_tokens - seq.num_computed_tokens != 1 or room <= 1:
            continue  # still prefilling, or no room for a draft beside the token it samples
        if seq.drafter is not None:
            num = min(room - 1, config.prediction_num_tokens)
            seq.draft_token_ids = seq.drafter.propose(seq.output_token_ids, num)
        elif use_ngram and seq.num_ngram_waits > 0:
            seq.num_ngram_waits -= 1
        elif use_ngram:
            seq.draft_token_ids = ngram_drafts(seq.token_ids, min(room - 1, config.num_tokens))


def back_off_ngram(seq: Sequence, num_accepted: int) -> None:
    """After n-gram drafts all failed, wait 1, 3, 7, ... steps before the next lookup.

    A sequence whose output does not repeat its context then costs almost nothing extra.
    """
    if num_accepted:
        seq.ngram_backoff = 0
        return
    seq.ngram_backoff = min(2 * seq.ngram_backoff + 1, MAX_BACKOFF)
    seq.num_ngram_waits = seq.ngram_backoff
