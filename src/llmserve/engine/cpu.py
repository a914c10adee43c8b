"""What this CPU offers the engine: SIMD features, native bf16/fp16, and the cores it may use."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# x86 (/proc/cpuinfo "flags") and aarch64 ("Features") names of the instructions that matter.
NATIVE_BF16 = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
NATIVE_FP16 = frozenset({"avx512_fp16", "amx_fp16", "fphp"})
INT8_DOT = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})
SHOWN_FLAGS = ("avx2", "avx512f", *sorted(NATIVE_BF16 | NATIVE_FP16 | INT8_DOT))

# Measured (issue 15): on a 2-core AMD EPYC with AVX2 and no native bf16, the engine with
# `dtype: bfloat16` made 30.9 tokens/s at 32 streams against float32's 76.5.
BF16_EMULATED_SLOWDOWN = 2.5


@dataclass(frozen=True)
class CpuInfo:
    """The CPU flags, torch's kernel level (e.g. AVX2, AVX512) and the usable physical cores."""

    flags: frozenset[str]
    capability: str
    num_physical_cores: int

    @property
    def has_native_bf16(self) -> bool:
        return bool(self.flags & NATIVE_BF16)

    @property
    def has_native_fp16(self) -> bool:
        return bool(self.flags & NATIVE_FP16)

    @property
    def has_int8_dot(self) -> bool:
        """VNNI-style int8 dot products: int8 GEMMs need no 7-bit activations to avoid overflow."""
        return bool(self.flags & INT8_DOT)

    def summary(self) -> str:
        shown = [flag for flag in SHOWN_FLAGS if flag in self.flags]
        return (
            f"{self.capability} kernels, {' '.join(shown) or 'no AVX2'}, "
            f"{self.num_physical_cores} physical cores"
        )


def detect_cpu() -> CpuInfo:
    import torch

    return CpuInfo(
        flags=cpu_flags(),
        capability=torch.backends.cpu.get_cpu_capability(),
        num_physical_cores=num_physical_cores(os.sched_getaffinity(0)),
    )


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first processor's feature flags (empty where /proc/cpuinfo does not exist)."""
    if not cpuinfo.is_file():
        return frozenset()
    for line in cpuinfo.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def num_physical_cores(cpus: set[int], sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """Distinct physical cores among `cpus` (hyper-threads of one core count once)."""
    cores = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return len(cpus)
        cores.add((package, core))
    return max(1, len(cores))


def default_num_threads(cpu: CpuInfo) -> int:
    """torch threads: OMP_NUM_THREADS when set (Ray sets it to a replica's CPUs), else the cores."""
    configured = os.environ.get("OMP_NUM_THREADS", "")
    return (
        int(configured) if configured.isdigit() and int(configured) > 0 else cpu.num_physical_cores
    )


def dtype_warning(dtype: str, cpu: CpuInfo) -> str | None:
    """Why `dtype` is a poor choice on this CPU, or None when it is not."""
    if dtype == "bfloat16" and not cpu.has_native_bf16:
        return (
            "this CPU has no native bfloat16 (no avx512_bf16/amx_bf16): bfloat16 matmuls are "
            f"emulated, about {BF16_EMULATED_SLOWDOWN}x slower than float32 at 32 streams. "
            "Use dtype: float32, or quantization: int8 for less memory and more speed."
        )
    if dtype == "float16" and not cpu.has_native_fp16:
        return (
            "this CPU has no native float16 (no avx512_fp16/amx_fp16): float16 matmuls are "
            "emulated and slower than float32. Use dtype: float32, or quantization: int8."
        )
    return None
