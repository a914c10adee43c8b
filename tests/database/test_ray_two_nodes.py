"""`serve --ray --database postgresql://…` on a two-node local Ray cluster
(`ray.cluster_utils.Cluster`), each node with its own `LLMSERVE_HOME`: both nodes' ingress
replicas serve one service (keys, usage, files, batches, stored responses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import openai
import psycopg
import pytest
from redis_process import free_port

pytest.importorskip("ray.serve", reason="the `ray` extra is not installed (pip install .[ray])")

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(600)]
ADMIN_KEY = "adm-ray-two-nodes"
START_DEADLINE_S = 300.0
T = TypeVar("T")
CONFIG = """
runtime: ray
home: {home}
ingress: {{replicas: 2, num_cpus: 1}}  # one CPU a node: a replica on each node
auth: {{limit_store: "{redis_url}", admin_key: {admin_key}}}
models:
  - {{name: fake-chat, source: fake, backend: fake, fake_token_delay_s: 0.002}}
  - {{name: slow-chat, source: fake, backend: fake, fake_token_delay_s: 0.05}}
jobs: {{lease_s: 1.0}}
"""


def batch_file(model: str, num_lines: int) -> bytes:
    return b"".join(
        json.dumps({"custom_id": f"r-{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": model,
                             "messages": [{"role": "user", "content": str(i)}]}}).encode() + b"\n"
        for i in range(num_lines)
    )  # fmt: skip


def wait_until(check: Callable[[], T], what: str, deadline_s: float = 120.0) -> T:
    deadline = time.monotonic() + deadline_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


@pytest.fixture
def two_node_service(
    tmp_path: Path, database_url: str, redis_url: str
) -> Iterator[tuple[str, Path, Path]]:
    """`llmserve serve --ray-address` on a head and a worker node; (URL, home A, home B)."""
    from ray.cluster_utils import Cluster

    home_a, home_b = tmp_path / "node-a", tmp_path / "node-b"
    # NOTE: Serve's proxy prefers replicas on its own node; off, so requests reach both nodes
    spread = {"RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0"}
    spread["RAY_SERVE_PROXY_PREFER_LOCAL_AZ_ROUTING"] = "0"
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "env_vars": {"LLMSERVE_HOME": str(home_a), **spread}},
    )
    log_path = tmp_path / "serve.log"
    process: subprocess.Popen[str] | None = None
    try:
        cluster.add_node(num_cpus=1, env_vars={"LLMSERVE_HOME": str(home_b), **spread})
        cluster.wait_for_nodes()
        config = tmp_path / "cluster.yaml"
        config.write_text(
            CONFIG.format(home=tmp_path / "driver", redis_url=redis_url, admin_key=ADMIN_KEY)
        )
        port = free_port()
        command = [sys.executable, "-m", "llmserve", "serve", "--config", str(config)]
        command += ["--ray-address", cluster.address, "--port", str(port)]
        command += ["--database", database_url]
        env = {**os.environ, "LLMSERVE_HOME": str(tmp_path / "driver"), "RAY_DEDUP_LOGS": "0"}
        with log_path.open("w") as log:
            process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
            )
        wait_until(
            lambda: (
                "is serving an OpenAI-compatible API" in log_path.read_text()
                or process.poll() is not None
            ),
            "the Ray service to start",
            START_DEADLINE_S,
        )
        assert process.poll() is None, log_path.read_text()[-3000:]
        yield f"http://127.0.0.1:{port}", home_a, home_b
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
        cluster.shutdown()


def test_both_nodes_serve_one_service_from_postgres(
    two_node_service: tuple[str, Path, Path],
) -> None:
    url, home_a, home_b = two_node_service
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    created = httpx.post(f"{url}/admin/keys", json={"name": "ray"}, headers=admin, timeout=60)
    assert created.status_code == 201, created.text
    secret = created.json()["key"]
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0, timeout=60)
    content = batch_file("fake-chat", 20)
    uploaded = sdk.files.create(file=("in.jsonl", content), purpose="batch")

    def both_homes_hold_a_copy() -> bool:
        assert sdk.files.content(uploaded.id).content == content
        return all((home / "files" / uploaded.id).exists() for home in (home_a, home_b))

    # each node's replica downloads the file into its own home when a request lands there
    wait_until(both_homes_hold_a_copy, "a download through a replica on each node")
    stored = sdk.responses.create(model="fake-chat", input="Remember me.")
    for _ in range(6):  # the follow-ups land on both nodes' replicas
        follow_up = sdk.responses.create(
            model="fake-chat", input="And now?", previous_response_id=stored.id
        )
        assert follow_up.status == "completed"
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    final = wait_until(
        lambda: (found := sdk.batches.retrieve(batch.id)).status == "completed" and found,
        "the batch to complete",
    )
    outputs = sdk.files.content(str(final.output_file_id)).text.splitlines()
    assert sorted(json.loads(o)["custom_id"] for o in outputs) == sorted(
        f"r-{i}" for i in range(20)
    )
    usage = httpx.get(f"{url}/admin/usage", headers=admin, timeout=60).json()
    (row,) = [r for r in usage["data"] if r["key_name"] == "ray"]
    assert row["requests"] == 1 + 6 + 20  # the stored response, its follow-ups, the batch lines
    revoked = httpx.delete(f"{url}/admin/keys/ray", headers=admin, timeout=60)
    assert revoked.status_code == 200
    body = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}
    bearer = {"Authorization": f"Bearer {secret}"}
    statuses = {
        httpx.post(f"{url}/v1/chat/completions", json=body, headers=bearer, timeout=60).status_code
        for _ in range(6)
    }
    assert statuses == {401}  # on both nodes' replicas, at their next request


def test_a_replica_killed_mid_batch_leaves_the_batch_to_the_other(
    two_node_service: tuple[str, Path, Path], database_url: str
) -> None:
    url, _, _ = two_node_service
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    created = httpx.post(f"{url}/admin/keys", json={"name": "kill"}, headers=admin, timeout=60)
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=created.json()["key"], max_retries=2)
    num_lines = 80
    uploaded = sdk.files.create(
        file=("in.jsonl", batch_file("slow-chat", num_lines)), purpose="batch"
    )
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    wait_until(lambda: done_count(sdk, batch.id) >= 5, "the batch to start")
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT lease_holder FROM batches WHERE id = %s", (batch.id,))
        holder = str(row.fetchone()[0])  # type: ignore[index]
    os.kill(int(holder.split("-")[-2]), signal.SIGKILL)  # host-pid-random: the replica running it
    assert done_count(sdk, batch.id) < num_lines  # killed mid-run
    final = wait_until(
        lambda: (found := sdk.batches.retrieve(batch.id)).status == "completed" and found,
        "another replica to finish the batch",
    )
    outputs = sdk.files.content(str(final.output_file_id)).text.splitlines()
    ids = sorted(json.loads(o)["custom_id"] for o in outputs)
    assert ids == sorted(f"r-{i}" for i in range(num_lines))  # every line exactly once
    assert final.request_counts is not None
    assert final.request_counts.completed == num_lines


def done_count(sdk: openai.OpenAI, batch_id: str) -> int:
    counts = sdk.batches.retrieve(batch_id).request_counts
    return 0 if counts is None else counts.completed + counts.failed
