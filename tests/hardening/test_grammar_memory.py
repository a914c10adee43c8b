"""Issue 18, done-when 4: compiled grammars are bounded in bytes, not entries.

40 distinct 1 MB regexes (each compiles to about 27 MB) raise a real server process's memory by
less than `structured.cache_mb` + 200 MB. Before the bound, 80 of them took it from 468 MB to
2.8 GB (a 256-entry cache would have held about 7 GB).
"""

from __future__ import annotations

import random
import string
from pathlib import Path

import httpx
import psutil
import pytest
from server_process import TINY, serve, write_config

pytestmark = pytest.mark.slow
CACHE_MB = 64
NUM_REGEXES = 40
SLACK_MB = 200


def megabyte_regex(seed: int) -> str:
    """A 1 MB regex: an alternation of 65,536 random 15-letter words."""
    rng = random.Random(seed)
    words = ("".join(rng.choices(string.ascii_lowercase, k=15)) for _ in range(65_536))
    return "(" + "|".join(words) + ")"


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def test_forty_megabyte_regexes_stay_within_the_cache_bound(tmp_path: Path) -> None:
    config = write_config(tmp_path, TINY + f"structured: {{cache_mb: {CACHE_MB}}}\n")
    with serve(config) as (process, base_url), httpx.Client(timeout=120) as http:

        def ask(regex: str) -> None:
            body = {"model": "tiny", "messages": [{"role": "user", "content": "Pick one."}],
                    "max_tokens": 2, "structured_outputs": {"regex": regex}}  # fmt: skip
            reply = http.post(f"{base_url}/chat/completions", json=body)
            assert reply.status_code == 200, reply.text

        ask("(yes|no)")  # warm: the compile threads, the engine, the first request's buffers
        before = rss_mb(process.pid)
        peak = before
        for seed in range(NUM_REGEXES):
            ask(megabyte_regex(seed))
            peak = max(peak, rss_mb(process.pid))
        assert process.poll() is None
    print(f"server RSS {before:.0f} MB before, peak {peak:.0f} MB over {NUM_REGEXES} regexes")
    assert peak - before < CACHE_MB + SLACK_MB
