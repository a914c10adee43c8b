"""Schemathesis against every route of a real server (fake model): no request gets a 5xx.

A short run of scripts/fuzz.sh (which reaches 5,000 requests per part); each part still runs
schemathesis' whole coverage phase (boundary and wrong-type values of every field).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzzer import fuzz


@pytest.mark.slow
@pytest.mark.timeout(900)  # about a minute alone; several times that on a machine busy elsewhere
def test_fuzzing_every_route_finds_no_server_error(tmp_path: Path) -> None:
    user_routes, admin = fuzz("fake", min_requests=300, examples=10, workdir=tmp_path)
    for figures in (user_routes, admin):
        assert figures.num_requests >= 300
        assert figures.num_server_errors == 0, figures.statuses
        assert figures.num_failed_runs == 0, "a response broke the OpenAPI description"
    assert user_routes.statuses[200] > 0 and admin.statuses[201] > 0  # reached real work
