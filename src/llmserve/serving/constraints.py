"""What a request constrains its output to: a response format, a structured_outputs extra or
forced tool calls, as one `GrammarSpec`, compiled (off the event loop, cached) before admission.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmserve.backends.base import Backend
from llmserve.errors import InvalidRequestError, UnsupportedOperationError
from llmserve.serving.prompts import off_loop
from llmserve.serving.schemas_tools import (
    NamedToolChoice,
    ResponseFormat,
    StructuredOutputs,
    Tool,
    ToolChoice,
)
from llmserve.structured.grammar import StructuredOutputUnsupportedError
from llmserve.structured.tool_formats import FORMATS, ToolCallFormat, forced_calls_lark
from llmserve.types import GrammarSpec


@dataclass(frozen=True)
class ToolPlan:
    """How a chat request uses tools: what the template shows, and how the answer is read."""

    tools: list[dict[str, Any]]  # OpenAI tool definitions, for the chat template
    call_format: ToolCallFormat | None  # the answer is parsed for calls; None: plain content
    max_calls: int | None  # 1 when parallel_tool_calls is false
    grammar: GrammarSpec | None  # forced calls (required or named); None: the model chooses


def response_format_grammar(response_format: ResponseFormat | None) -> GrammarSpec | None:
    """The grammar of OpenAI's `response_format` (None for text)."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return GrammarSpec("json_object")
    if response_format.json_schema is None:
        raise InvalidRequestError(
            "Missing required parameter: 'response_format.json_schema'.",
            param="response_format.json_schema",
        )
    schema = response_format.json_schema.schema_ or {"type": "object"}
    return GrammarSpec("json_schema", json.dumps(schema))


def response_format_what(response_format: ResponseFormat | None) -> str:
    """How a compile error names the format: OpenAI's "schema for response_format 'name'"."""
    schema = response_format.json_schema if response_format else None
    return f"schema for response_format '{schema.name}'" if schema else "response_format"


def structured_outputs_grammar(extra: StructuredOutputs | None) -> GrammarSpec | None:
    """The grammar of vLLM's `structured_outputs` extra; exactly one kind may be set."""
    if extra is None:
        return None
    json_spec = None
    if extra.json_ is not None:
        source = extra.json_ if isinstance(extra.json_, str) else json.dumps(extra.json_)
        json_spec = GrammarSpec("json_schema", source)
    specs = [
        json_spec,
        GrammarSpec("regex", extra.regex) if extra.regex is not None else None,
        GrammarSpec("choice", json.dumps(extra.choice)) if extra.choice is not None else None,
        GrammarSpec("lark", extra.grammar) if extra.grammar is not None else None,
    ]
    chosen = [spec for spec in specs if spec is not None]
    if len(chosen) != 1:
        raise InvalidRequestError(
            "`structured_outputs` must set exactly one of `json`, `regex`, `choice`, `grammar`.",
            param="structured_outputs",
        )
    return chosen[0]


def tool_plan(
    tools: Sequence[Tool] | None,
    tool_choice: ToolChoice | None,
    parallel_tool_calls: bool,
    format_name: str,
) -> ToolPlan | None:
    """How `tools` and `tool_choice` shape the answer (None: no tools were offered)."""
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise InvalidRequestError(
                "`tool_choice` is only allowed when `tools` are specified.", param="tool_choice"
            )
        return None
    definitions = [t.model_dump(exclude_none=True, by_alias=True) for t in tools]
    functions = [d["function"] for d in definitions]
    call_format = FORMATS[format_name]
    if tool_choice == "none":
        return ToolPlan(definitions, None, None, None)
    forced = _forced_functions(functions, tool_choice)
    parallel = parallel_tool_calls and not isinstance(tool_choice, NamedToolChoice)
    grammar = None
    if forced is not None:
        grammar = GrammarSpec("lark", forced_calls_lark(call_format, forced, parallel=parallel))
    return ToolPlan(definitions, call_format, None if parallel else 1, grammar)


def _forced_functions(
    functions: list[dict[str, Any]], tool_choice: ToolChoice | None
) -> list[dict[str, Any]] | None:
    """The functions a call is forced among (None: `auto`, the model may answer in text)."""
    if tool_choice is None or tool_choice == "auto":
        return None
    if tool_choice == "required":
        return functions
    assert isinstance(tool_choice, NamedToolChoice)
    named = [f for f in functions if f["name"] == tool_choice.function.name]
    if not named:
        raise InvalidRequestError(
            f"Invalid value for 'tool_choice': no function named '{tool_choice.function.name}' "
            "was specified in the 'tools' parameter.",
            param="tool_choice",
        )
    return named


def all_calls_grammar(plan: ToolPlan) -> GrammarSpec:
    """A grammar of calls to any offered tool: compiling it checks every tool's parameters."""
    functions = [d["function"] for d in plan.tools]
    call_format = plan.call_format or FORMATS["hermes"]
    return GrammarSpec("lark", forced_calls_lark(call_format, functions, parallel=False))


async def compile_tools(backend: Backend, plan: ToolPlan) -> None:
    """Check the tools by compiling their calls' grammar; forced calls need it to be enforced.

    A model without structured output (its tokenizer is one llguidance cannot read) still reads
    calls in `auto` mode: they are parsed, not forced, and the tools' schemas go unchecked.
    """
    spec = plan.grammar or all_calls_grammar(plan)
    try:
        await compile_checked(backend, spec, "tools", "tools")
    except StructuredOutputUnsupportedError as exc:
        if plan.grammar is not None:
            raise _unsupported(exc, "tool_choice") from None


def _unsupported(exc: StructuredOutputUnsupportedError, param: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"`{param}` needs structured output, which this model's tokenizer does not support: {exc}",
        param=param,
    )


async def compile_checked(backend: Backend, spec: GrammarSpec, param: str, what: str) -> None:
    """Compile `spec` in a worker thread (cached by the backend); a bad one is a 400 on `param`.

    StructuredOutputUnsupportedError passes through when `param` is `tools` (`auto` survives it).
    """
    try:
        await off_loop(backend.compile_grammar, spec)
    except StructuredOutputUnsupportedError as exc:
        if param == "tools":
            raise
        raise _unsupported(exc, param) from None
    except UnsupportedOperationError as exc:
        raise InvalidRequestError(str(exc), param=param) from None
    except ValueError as exc:
        raise InvalidRequestError(f"Invalid {what}: {exc}", param=param) from None


async def output_grammar(
    backend: Backend,
    response_format: ResponseFormat | None,
    structured_outputs: StructuredOutputs | None,
) -> GrammarSpec | None:
    """The compiled grammar of `response_format` or `structured_outputs` (the extra wins)."""
    output_format = response_format_grammar(response_format)
    if output_format is not None:
        what = response_format_what(response_format)
        await compile_checked(backend, output_format, "response_format", what)
    extra = structured_outputs_grammar(structured_outputs)
    if extra is not None:
        await compile_checked(backend, extra, "structured_outputs", "structured_outputs")
    return extra or output_format
