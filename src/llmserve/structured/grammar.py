"""The grammar protocol: compile a spec once, then one matcher per sequence fills token masks.

Any constrained-decoding library plugs in by implementing `GrammarCompiler` and `GrammarMatcher`;
`llguidance_compiler.py` is the one llmserve ships.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from llmserve.errors import UnsupportedOperationError
from llmserve.types import GrammarSpec

Bitmask = npt.NDArray[np.int32]  # (rows, ceil(vocab / 32)); bit t of a row set: token t allowed


class InvalidGrammarError(ValueError):
    """The spec does not compile (a bad schema, regex or grammar); the message says why."""


class StructuredOutputUnsupportedError(UnsupportedOperationError):
    """The model's tokenizer is one the grammar library cannot read: no grammar can be enforced."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(
            f"model '{model}' does not support structured output: its tokenizer cannot be read by "
            f"the grammar library (llguidance: {reason}). Send the request without it, or use a "
            "model with a BPE or SentencePiece tokenizer."
        )


class GrammarMatcher(Protocol):
    """Where one sequence stands in its grammar."""

    def consume(self, token_id: int) -> bool:
        """Advance by the sampled token; False if the grammar does not allow it."""
        ...

    @property
    def is_finished(self) -> bool:
        """True when the grammar admits no further token: the sequence ends with `stop`."""
        ...

    @property
    def error_message(self) -> str | None:
        """Why the grammar stopped taking tokens (a parser limit, say); None while it is fine."""
        ...

    def copy(self) -> GrammarMatcher:
        """An independent matcher in the same state (one per choice when n > 1)."""
        ...


class GrammarCompiler(Protocol):
    """Compiles specs for one tokenizer and fills the masks of a batch of matchers.

    Contract: `compile` raises `InvalidGrammarError` for a bad spec and caches what it compiled,
    so that `new_matcher` for a spec compiled before is cheap (the engine thread calls it).
    Thread-safe: the serving layer compiles in worker threads while the engine steps.
    """

    @property
    def vocab_size(self) -> int:
        """Tokens the tokenizer knows: a bitmask row holds exactly ceil(vocab_size / 32) words."""
        ...

    def compile(self, spec: GrammarSpec) -> None: ...

    def new_matcher(self, spec: GrammarSpec) -> GrammarMatcher: ...

    def fill_bitmask(self, rows: Sequence[tuple[GrammarMatcher, int]], bitmask: Bitmask) -> None:
        """Write each matcher's allowed tokens into its row of `bitmask` (other rows untouched)."""
        ...
