"""Durable async work: the job store, the Files and Batch APIs, background responses.

- `store`: the `JobStore` protocol and its records; `sqlite_store`: `SqliteJobStore` (WAL, in home).
- `wire`: the jobs' JSON objects as typed dicts; `transitions`: which status may follow which.
- `files`: uploads streamed to disk; `objects`: OpenAI's File and Batch objects.
- `validation`: a batch input file checked line by line while streaming over it.
- `lines`: one batch line through the serving layer; `runner`: batches held by a lease.
- `background`: `background: true` responses run from the store, their events kept there.
"""
