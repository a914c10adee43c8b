"""CPU detection: flags, physical cores, torch threads and the dtype warning users see."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmserve.engine.cpu import (
    CpuInfo,
    cpu_flags,
    default_num_threads,
    dtype_warning,
    num_physical_cores,
)

AVX2_ONLY = CpuInfo(frozenset({"avx", "avx2", "fma"}), "AVX2", 2)
SAPPHIRE = CpuInfo(frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}), "AVX512", 8)


def test_flags_come_from_the_first_processor(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nflags : other\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_hyperthreads_of_one_core_count_once(tmp_path: Path) -> None:
    for cpu, core in {0: 0, 1: 1, 2: 0, 3: 1}.items():  # 4 logical CPUs, 2 cores
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    assert num_physical_cores({0, 1, 2, 3}, tmp_path) == 2
    assert num_physical_cores({0, 2}, tmp_path) == 1
    assert num_physical_cores({0, 1}, tmp_path / "absent") == 2


def test_threads_follow_omp_num_threads_else_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # what Ray sets for a replica's CPUs
    assert default_num_threads(SAPPHIRE) == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_num_threads(SAPPHIRE) == 8


def test_bfloat16_without_native_support_warns_and_suggests_int8() -> None:
    warning = dtype_warning("bfloat16", AVX2_ONLY)
    assert warning is not None
    assert "no native bfloat16" in warning and "2.5x slower" in warning
    assert "quantization: int8" in warning
    assert dtype_warning("bfloat16", SAPPHIRE) is None
    assert dtype_warning("float32", AVX2_ONLY) is None
    assert "no native float16" in (dtype_warning("float16", SAPPHIRE) or "")


def test_summary_names_the_features_that_matter() -> None:
    assert (
        SAPPHIRE.summary()
        == "AVX512 kernels, avx2 avx512f avx512_bf16 avx512_vnni, 8 physical cores"
    )
    assert SAPPHIRE.has_int8_dot and not AVX2_ONLY.has_int8_dot
