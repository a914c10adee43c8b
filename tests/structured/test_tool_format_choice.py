"""Which tool-call format a model gets: its template, its tokenizer's special tokens, or the
`tool_call_parser` setting (the same names as FORMATS).
"""

from __future__ import annotations

import pytest

from llmserve.config import TOOL_CALL_PARSERS, ModelConfig
from llmserve.structured.tool_formats import FORMATS, detect_tool_call_format


@pytest.mark.parametrize(
    ("template", "specials", "want"),
    [
        (None, frozenset(), "hermes"),
        ("{{ '<tool_call>' }}", frozenset(), "hermes"),
        ("{% if m.role == 'ipython' %}<|python_tag|>{% endif %}", frozenset(), "llama3_json"),
        ("{{ '[TOOL_CALLS]' + calls|tojson }}", frozenset(), "mistral"),
        ("{{ '[TOOL_CALLS]' + name + '[ARGS]' + args }}", frozenset(), "mistral_args"),
        ("{{ messages }}", frozenset({"[TOOL_CALLS]"}), "mistral"),
        ("{{ messages }}", frozenset({"[TOOL_CALLS]", "[ARGS]"}), "mistral_args"),
    ],
)
def test_format_follows_template_and_tokenizer(
    template: str | None, specials: frozenset[str], want: str
) -> None:
    assert detect_tool_call_format(template, specials) == want


def test_setting_names_are_the_formats() -> None:
    assert set(TOOL_CALL_PARSERS) == set(FORMATS)


def test_unknown_setting_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="tool_call_parser must be one of hermes, llama3_json"):
        ModelConfig("m", source="x", tool_call_parser="mistrall")
