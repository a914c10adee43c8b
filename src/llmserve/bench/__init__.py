"""`llmserve bench`: a load tester with `vllm bench serve`'s flags, definitions and report.

It works against any OpenAI-compatible server (llmserve, vLLM, llama.cpp's server): prompts are
random text sized with the server's own `/tokenize` when it has one, and tokens are counted from
the server's usage (`stream_options.include_usage`), so no tokenizer is needed on the client.
"""
