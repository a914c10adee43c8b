"""One chat's state: model, system prompt, sampling fields, the conversation, the last stats."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Fields `/set` accepts, with the type each value must have.
SAMPLING_FIELDS: dict[str, type] = {
    "temperature": float,
    "top_p": float,
    "max_tokens": int,
    "seed": int,
    "top_k": int,
    "min_p": float,
    "presence_penalty": float,
    "frequency_penalty": float,
    "repetition_penalty": float,
    "stop": str,
}


@dataclass(frozen=True)
class ReplyStats:
    """How fast one reply came: time to first token, decode speed, tokens (from usage)."""

    ttft_s: float
    decode_s: float  # from the first to the last text chunk
    num_tokens: int | None

    def describe(self) -> str:
        """`TTFT 85 ms · 41.2 tokens/s · 64 tokens` (tokens/s after the first, as vLLM's TPOT)."""
        parts = [f"TTFT {self.ttft_s * 1000:.0f} ms"]
        if self.num_tokens is not None and self.num_tokens > 1 and self.decode_s > 0:
            parts.append(f"{(self.num_tokens - 1) / self.decode_s:.1f} tokens/s")
        if self.num_tokens is not None:
            parts.append(f"{self.num_tokens} tokens")
        return " · ".join(parts)


@dataclass
class ChatSession:
    """What the next request sends, and what the last reply took."""

    model: str
    system: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    last_stats: ReplyStats | None = None
    show_stats: bool = False  # print the stats after every reply (`/stats on`)

    def request_body(self) -> dict[str, Any]:
        """The streamed chat completion request for the conversation so far."""
        system = [{"role": "system", "content": self.system}] if self.system else []
        return {
            "model": self.model,
            "messages": system + self.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.sampling,
        }

    def set_field(self, name: str, text: str) -> str:
        """`/set NAME VALUE`; `none` removes the field. Returns what changed; ValueError if bad."""
        if name not in SAMPLING_FIELDS:
            raise ValueError(f"unknown field `{name}`; one of: {', '.join(SAMPLING_FIELDS)}")
        if text.lower() in ("none", "default", ""):
            self.sampling.pop(name, None)
            return f"{name} is back to the server's default"
        kind = SAMPLING_FIELDS[name]
        try:
            self.sampling[name] = kind(text)
        except ValueError:
            raise ValueError(f"{name} takes {kind.__name__} values, not {text!r}") from None
        return f"{name} = {self.sampling[name]}"

    def save(self, path: Path) -> None:
        """Write model, system prompt, sampling fields and messages as JSON."""
        state: dict[str, Any] = {"model": self.model, "system": self.system}
        state |= {"sampling": self.sampling, "messages": self.messages}
        path.write_text(json.dumps(state, indent=2, ensure_ascii=False), encoding="utf-8")

    def load(self, path: Path) -> None:
        """Replace this session's state with a file written by `save`; ValueError if invalid."""
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            messages = [
                {"role": str(m["role"]), "content": str(m["content"])} for m in state["messages"]
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot load {path}: {exc}") from None
        self.model = str(state.get("model") or self.model)
        self.system = str(state.get("system") or "")
        self.sampling = dict(state.get("sampling") or {})
        self.messages = messages
