"""Model sources (hub id, local folder, built-in), chat templates and the tokenizer adapter."""
