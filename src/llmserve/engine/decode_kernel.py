"""The engine's compiled kernels: built once per machine, loaded at engine start.

`kernels/decode_attention.cpp` reads each decode's keys and values in place from the paged cache
(no per-layer gather); `kernels/lean_decode.cpp` is the lean decode step (lean_decode.py), which
calls it. They are one extension (`kernels/bindings.cpp`), compiled with torch's C++-extension
JIT into torch's extension folder (`TORCH_EXTENSIONS_DIR`, default
`~/.cache/torch_extensions`); torch holds a lock file there while building, so two processes
never compile it at once, and later starts only load it.
`engine.decode_attention` picks the path: `auto` (the kernel if it builds, else the gather path,
with one log line), `kernel` (the same, but a failed build is logged as a warning), `gather`.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import threading
from pathlib import Path
from typing import Any, Literal

import torch

logger = logging.getLogger(__name__)

DecodeAttention = Literal["auto", "kernel", "gather"]
KERNELS = Path(__file__).with_name("kernels")
SOURCES = [KERNELS / "bindings.cpp", KERNELS / "decode_attention.cpp", KERNELS / "lean_decode.cpp"]
HEADERS = [KERNELS / "decode_attention.h", KERNELS / "lean_decode.h"]
FLAGS = ["-O3", "-march=native", "-fopenmp"]
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.int8)

_lock = threading.Lock()
_state: dict[str, Any] = {"mode": "auto", "module": None, "tried": False}


def configure(mode: DecodeAttention) -> None:
    """Choose the decode path for this process; builds (or loads) the kernel unless `gather`."""
    with _lock:
        _state["mode"] = mode
    if mode != "gather":
        kernel()


def kernel() -> Any | None:
    """The loaded extension, or None (mode `gather`, or it failed to build: logged once)."""
    with _lock:
        if _state["mode"] == "gather":
            return None
        if not _state["tried"]:
            _state["tried"] = True
            _state["module"] = _build(_state["mode"])
        return _state["module"]


def _build(mode: DecodeAttention) -> Any | None:
    try:
        from torch.utils import cpp_extension

        logger.info("loading the compiled kernels (the first start compiles them: 1-2 min)")
        return cpp_extension.load(
            name=_extension_name(),
            sources=[str(source) for source in SOURCES],
            extra_cflags=FLAGS,
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as exc:  # a missing compiler, ninja or header: the gather path still works
        level = logging.WARNING if mode == "kernel" else logging.INFO
        reason = _first_error(str(exc)) or type(exc).__name__
        logger.log(level, "decode attention kernel unavailable (%s); using the gather path", reason)
        return None


def _first_error(text: str) -> str:
    """The compiler's first `error:` line, else the message's last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    return (errors or lines or [""])[0 if errors else -1][:300]


def _extension_name() -> str:
    """One build per source, flags, torch and CPU (`-march=native` binaries are CPU-specific)."""
    digest = hashlib.sha256()
    for source in (*SOURCES, *HEADERS):
        digest.update(source.read_bytes())
    for part in (*FLAGS, torch.__version__, platform.machine(), _cpu_model()):
        digest.update(part.encode())
    return f"llmserve_decode_attention_{digest.hexdigest()[:12]}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":  # `python -m llmserve.engine.decode_kernel`: build it now (install.sh)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    configure("kernel")
    print(
        "decode attention kernel:", "ready" if kernel() is not None else "unavailable (gather path)"
    )
