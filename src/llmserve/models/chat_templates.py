"""Built-in chat templates, and choosing the template a served model uses."""

from __future__ import annotations

from pathlib import Path

# Meta's Llama-2 chat format:
# <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} </s><s>[INST] {user} [/INST]
LLAMA_2 = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

BUILTIN_TEMPLATES: dict[str, str] = {"llama-2": LLAMA_2, "chatml": CHATML}


def resolve_chat_template(setting: str | None, tokenizer_template: str | None) -> str | None:
    """The Jinja template to use: a built-in name, a file, inline Jinja, or the tokenizer's own.

    Returns None when neither the config nor the tokenizer provides one.
    """
    if setting is None:
        return tokenizer_template
    if setting in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[setting]
    if "{{" in setting or "{%" in setting:
        return setting
    path = Path(setting).expanduser()
    if path.is_file():
        return path.read_text(encoding="utf-8")
    allowed = ", ".join(sorted(BUILTIN_TEMPLATES))
    raise ValueError(
        f"chat_template {setting!r} is not a built-in name ({allowed}), a file, or Jinja text"
    )
