"""Constrained decoding and tool calls: grammar specs compiled to token masks, tool-call formats
and the parser that turns a model's text into OpenAI `tool_calls`.
"""
