"""`llmserve chat`: a terminal chat against any OpenAI-compatible server."""
