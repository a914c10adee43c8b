"""Fuzz every route of a real `llmserve serve` with schemathesis: no answer may be a 5xx.

    scripts/fuzz.sh                        # >= 5,000 requests on /v1 and >= 5,000 on /admin
    scripts/fuzz.sh --requests 20000       # more
    scripts/fuzz.sh --backend local        # tiny-chat on the real engine and the embedding model

The server runs as its own process from a YAML config, with one API key (used for every route
outside /admin) and an admin key (for /admin). Schemathesis reads the server's /openapi.json and
runs its coverage, fuzzing and stateful phases with the checks `not_a_server_error` and
`response_schema_conformance` (every error body must be OpenAI's), positive and negative data.
Before it does, `model` is pinned to the served names (a negative case still sends any string):
with random names nearly every request would stop at 404 and never reach generation. On the real
engine, positive cases also ask for few tokens and choices, so a run takes minutes, not hours.

A part reruns with the next seed until the server has answered `--requests` requests. The figures
come from the server's request log (JSON lines), not from schemathesis: requests answered, by
status (probes of /health log at DEBUG and are not counted).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from llmserve.auth.factory import open_key_store
from llmserve.auth.keys import KeySpec
from llmserve.config import BUILTIN_CHAT_MODEL, BUILTIN_EMBEDDING_MODEL

ADMIN_KEY = "fuzz-admin-key-0123456789abcdef"
FAKE_MODEL = "fake-model"
CHECKS = "not_a_server_error,response_schema_conformance"
# On the real engine: output-length fields every positive case sends, and their largest values.
REAL_ENGINE_CAPS = {"max_tokens": 8, "max_completion_tokens": 8, "max_output_tokens": 8, "n": 2}
REQUEST_LOGGER = "llmserve.requests"  # one line per answered request (api/http/request_log.py)


@dataclass(frozen=True)
class Part:
    """One schemathesis target: the operations it covers and the bearer token it sends."""

    name: str
    path_filter: tuple[str, str]  # a schemathesis option and its regex
    bearer: str


@dataclass
class Figures:
    """What the server answered during one part."""

    statuses: Counter[int]
    num_runs: int = 0
    num_failed_runs: int = 0  # schemathesis runs that reported a failed check

    @property
    def num_requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def num_server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def line(self, name: str) -> str:
        by_status = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"{name}: {self.num_requests} requests, {self.num_server_errors} 5xx, "
            f"{self.num_failed_runs} of {self.num_runs} schemathesis runs failed ({by_status})"
        )


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def served_models(backend: str) -> dict[str, str]:
    """Served name -> YAML model entry, for the fake backend or the real built-in models."""
    if backend == "fake":
        return {FAKE_MODEL: f"  - name: {FAKE_MODEL}\n    source: fake\n    backend: fake\n"}
    return {
        name: f"  - name: {name}\n    source: {name}\n"
        for name in (BUILTIN_CHAT_MODEL, BUILTIN_EMBEDDING_MODEL)
    }


def write_config(home: Path, port: int, backend: str) -> Path:
    """A llmserve.yaml serving the models of `backend` from `home` on 127.0.0.1:`port`."""
    models = "".join(served_models(backend).values())
    path = home / "llmserve.yaml"
    path.write_text(f"host: 127.0.0.1\nport: {port}\nhome: {home}\nmodels:\n{models}")
    return path


def create_api_key(home: Path) -> str:
    """A key for every model, with room for every schemathesis worker."""
    store = open_key_store(home)
    try:
        _, secret = store.create_key(KeySpec(name="fuzz", max_concurrency=64))
    finally:
        store.close()
    return secret


@contextlib.contextmanager
def running_server(config: Path, log_path: Path, port: int) -> Iterator[str]:
    """`llmserve serve --config` in its own process, its log in `log_path`; yields its URL."""
    env = {**os.environ, "LLMSERVE_ADMIN_KEY": ADMIN_KEY}
    command = [sys.executable, "-m", "llmserve", "serve", "--config", str(config)]
    command += ["--log-format", "json"]
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, server, log_path)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)


def wait_for_health(url: str, server: subprocess.Popen[bytes], log_path: Path) -> None:
    """Return once GET /health answers 200 (models load first: up to minutes for real ones)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("the server did not become healthy within 600 s")


def steered_spec(url: str, backend: str, path: Path) -> Path:
    """The server's OpenAPI document with `model` pinned to the names it serves."""
    document: dict[str, Any] = httpx.get(f"{url}/openapi.json", timeout=30).json()
    names = list(served_models(backend))
    chat = [n for n in names if n != BUILTIN_EMBEDDING_MODEL]
    embedding = [n for n in names if n == BUILTIN_EMBEDDING_MODEL] or chat
    for schema_name, schema in document["components"]["schemas"].items():
        if "model" in schema.get("properties", {}):
            pinned = embedding if schema_name == "EmbeddingRequest" else chat
            schema["properties"]["model"] = {"type": "string", "enum": pinned}
        if backend == "local":
            cap_generation(schema)
    for parameter in document["paths"]["/v1/models/{model}"]["get"]["parameters"]:
        parameter["schema"] = {"type": "string", "enum": names}
    path.write_text(json.dumps(document))
    return path


def cap_generation(schema: dict[str, Any]) -> None:
    """Make the output-length fields of `schema` required and small (see REAL_ENGINE_CAPS)."""
    properties = schema.get("properties", {})
    for field, maximum in REAL_ENGINE_CAPS.items():
        if field in properties:
            properties[field] = {"type": "integer", "minimum": 1, "maximum": maximum}
            schema["required"] = sorted({*schema.get("required", []), field})


def status_counts(log_path: Path, offset: int) -> tuple[Counter[int], int]:
    """Statuses of the request-log lines written after byte `offset`, and the new offset."""
    data = log_path.read_bytes()
    end = data.rfind(b"\n", offset) + 1  # a line still being written is read next time
    statuses: Counter[int] = Counter()
    for line in data[offset:end].decode(errors="replace").splitlines():
        entry = json.loads(line) if line.startswith("{") else {}
        if entry.get("logger") == REQUEST_LOGGER:
            statuses[int(entry["status"])] += 1
    return statuses, max(end, offset)


def run_schemathesis(spec: Path, url: str, part: Part, examples: int, seed: int) -> bool:
    """One schemathesis run of `part` (its cache in the spec's folder); True when all passed."""
    option, regex = part.path_filter
    command = [sys.executable, "-m", "schemathesis.cli", "run", str(spec), "--url", url]
    command += ["--header", f"Authorization: Bearer {part.bearer}", option, regex]
    command += ["--checks", CHECKS, "--max-examples", str(examples), "--seed", str(seed)]
    command += ["--workers", "1", "--request-timeout", "120", "--output-truncate", "true"]
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=spec.parent)
    if result.returncode != 0:
        print(result.stdout[-20000:], result.stderr[-5000:], sep="\n", file=sys.stderr)
    return result.returncode == 0


def fuzz_part(
    part: Part, spec: Path, url: str, log_path: Path, min_requests: int, examples: int
) -> Figures:
    """Rerun schemathesis on `part` with new seeds until the server answered `min_requests`."""
    figures = Figures(Counter())
    _, offset = status_counts(log_path, 0)
    while figures.num_requests < min_requests:
        passed = run_schemathesis(spec, url, part, examples, seed=figures.num_runs + 1)
        statuses, offset = status_counts(log_path, offset)
        if not statuses:
            raise RuntimeError(f"the server logged no requests; see {log_path}")
        figures.statuses.update(statuses)
        figures.num_runs += 1
        figures.num_failed_runs += not passed
        print(figures.line(part.name), flush=True)
    return figures


def fuzz(backend: str, min_requests: int, examples: int, workdir: Path) -> list[Figures]:
    """Start a server in `workdir`, fuzz /v1 (and the other user routes), then /admin."""
    port = free_port()
    config = write_config(workdir, port, backend)
    parts = (
        Part("/v1 and user routes", ("--exclude-path-regex", "^/admin"), create_api_key(workdir)),
        Part("/admin", ("--include-path-regex", "^/admin"), ADMIN_KEY),
    )
    log_path = workdir / "server.log"
    with running_server(config, log_path, port) as url:
        spec = steered_spec(url, backend, workdir / "openapi.json")
        return [fuzz_part(p, spec, url, log_path, min_requests, examples) for p in parts]


def main(argv: Sequence[str] | None = None) -> int:
    """Fuzz, print the figures; exit 1 on any 5xx or failed check."""
    parser = argparse.ArgumentParser(prog="scripts/fuzz.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="at least this many per part")
    parser.add_argument("--examples", type=int, default=300, help="max examples per operation")
    parser.add_argument("--backend", choices=("fake", "local"), default="fake")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="llmserve-fuzz-") as tmp:
        results = fuzz(args.backend, args.requests, args.examples, Path(tmp))
    print("\nschemathesis", CHECKS, f"backend={args.backend}")
    for part, figures in zip(("/v1 and user routes", "/admin"), results, strict=True):
        print(figures.line(part))
    bad = any(f.num_server_errors or f.num_failed_runs for f in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
