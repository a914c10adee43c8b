"""The peer: llama.cpp's llama-server, built once from the llama-cpp-python sdist's vendored copy.

    python benchmarks/llama_server.py build     # download the sdist, build llama-server (slow)

Nothing here is committed to the repository: the sdist, the build and the GGUF files live in a
cache folder (LLMSERVE_BENCH_CACHE, default ~/.cache/llmserve-bench).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SDIST = "llama-cpp-python"
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",  # this machine's SIMD (AVX2/AVX-512), as a user building it would get
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # no network during the build
    "-DBUILD_SHARED_LIBS=OFF",
)


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "llmserve-bench"
    return Path(os.environ.get("LLMSERVE_BENCH_CACHE", default))


def llama_cpp_source(cache: Path) -> Path:
    """The vendored llama.cpp tree of the newest llama-cpp-python sdist (downloaded once)."""
    unpacked = sorted(cache.glob("llama_cpp_python-*/vendor/llama.cpp"))
    if unpacked:
        return unpacked[-1]
    cache.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", SDIST]
    subprocess.run([*pip, "-d", str(cache)], check=True)
    sdist = sorted(cache.glob("llama_cpp_python-*.tar.gz"))[-1]
    subprocess.run(["tar", "xzf", str(sdist), "-C", str(cache)], check=True)
    return sorted(cache.glob("llama_cpp_python-*/vendor/llama.cpp"))[-1]


def require_converter_modules() -> None:
    """Exit with what to install if convert_hf_to_gguf.py's imports are missing (checked before
    the long build, not after it)."""
    if importlib.util.find_spec("sentencepiece") is None:
        sys.exit(
            "llama.cpp's convert_hf_to_gguf.py needs sentencepiece: "
            "pip install -e '.[bench]' (or scripts/install.sh dev)"
        )


def build_llama_server(cache: Path) -> Path:
    """Path of the llama-server binary, building it with cmake the first time (tens of minutes)."""
    require_converter_modules()
    source = llama_cpp_source(cache)
    build = source.parent.parent / "build"
    binary = build / "bin" / "llama-server"
    if binary.is_file():
        return binary
    jobs = str(os.cpu_count() or 1)
    subprocess.run(["cmake", "-S", str(source), "-B", str(build), *CMAKE_OPTIONS], check=True)
    subprocess.run(
        [
            "nice",
            "-n",
            "19",
            "cmake",
            "--build",
            str(build),
            "--target",
            "llama-server",
            "-j",
            jobs,
        ],
        check=True,
    )
    return binary


def gguf_model(cache: Path, model_dir: Path, outtype: str) -> Path:
    """The Hugging Face model folder converted to GGUF (f32 or q8_0) with convert_hf_to_gguf.py.

    The benchmark model's word-level tokenizer is not one the converter knows, so it converts a
    copy of the folder (same weights and config) with a Llama-style vocabulary of the same ids.
    The benchmark sends token ids, never text, so the vocabulary's text does not matter.
    """
    out = cache / "gguf" / f"{model_dir.name}-{outtype}.gguf"
    if out.is_file():
        return out
    require_converter_modules()
    staging = cache / "gguf" / f"{model_dir.name}-hf"
    llama_vocab_copy(model_dir, staging)
    source = llama_cpp_source(cache)
    env = os.environ | {"PYTHONPATH": str(source / "gguf-py")}
    convert = [sys.executable, str(source / "convert_hf_to_gguf.py"), str(staging)]
    subprocess.run([*convert, "--outtype", outtype, "--outfile", str(out)], check=True, env=env)
    return out


def llama_vocab_copy(model_dir: Path, staging: Path) -> None:
    """`model_dir`'s config and weights (linked) with a SentencePiece-style BPE vocabulary."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    staging.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        link = staging / name
        if not link.exists():
            link.symlink_to(model_dir / name)
    vocab_size = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"\u2581w{i}": i for i in range(3, vocab_size)}
    tokenizer = Tokenizer(models.BPE(vocab, [], unk_token="<unk>", byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Sequence([decoders.Metaspace(), decoders.ByteFallback()])
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    ).save_pretrained(staging)


def start_llama_server(
    binary: Path,
    gguf: Path,
    slots: int,
    threads: int,
    context_per_slot: int,
    extra_args: tuple[str, ...] = (),
) -> tuple[subprocess.Popen[bytes], str]:
    """A running llama-server with `slots` parallel sequences; returns the process and base URL."""
    port = free_port()
    command = [
        str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
        "-np", str(slots), "-c", str(slots * context_per_slot), "-t", str(threads),
        "-tb", str(threads), "-cb", *extra_args,
    ]  # fmt: skip
    log = (cache_dir() / "llama-server.log").open("ab")  # the last runs' logs, to diagnose
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    base_url = f"http://127.0.0.1:{port}"
    wait_healthy(process, base_url)
    return process, base_url


def wait_healthy(process: subprocess.Popen[bytes], base_url: str, deadline_s: float = 300) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama-server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("llama-server did not become healthy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    print(build_llama_server(cache_dir()))
