"""The job store's tables. `seq` orders lists (newest first) and cursor pages."""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    purpose TEXT NOT NULL,
    filename TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    path TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    estimated_tokens INTEGER NOT NULL,
    doc TEXT NOT NULL,
    lease_holder TEXT NOT NULL DEFAULT '',
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS batches_owner_status ON batches(owner, status);
CREATE TABLE IF NOT EXISTS batch_lines (
    batch_id TEXT NOT NULL REFERENCES batches(id),
    line_no INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    is_error INTEGER NOT NULL,
    line TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    PRIMARY KEY (batch_id, line_no)
);
CREATE TABLE IF NOT EXISTS responses (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    background INTEGER NOT NULL,
    response TEXT NOT NULL,
    request TEXT NOT NULL,
    lease_holder TEXT NOT NULL DEFAULT '',
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS response_events (
    response_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (response_id, seq)
);
"""

# A file's expiry (`expires_after`), added to older files by a guarded ALTER TABLE.
FILE_EXPIRY_COLUMN = ("files", "expires_at", "INTEGER")

# Attempts at each unit of work (a batch line, part = its line number; a background response,
# part 0), counted before the work starts: a unit during which the process died twice is failed,
# not run a third time (jobs/quarantine.py). Own table: an additive change.
ATTEMPTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS job_attempts (
    job_id TEXT NOT NULL,
    part INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    PRIMARY KEY (job_id, part)
);
"""
