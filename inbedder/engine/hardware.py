"""What this machine's CPU can do natively: bf16 is ~2x fp32 with AVX-512 BF16 or AMX, ~50x slower without.

Machines of one kind differ (measured 2026-12-01: AVX2-only hosts run a bf16
matmul at 0.7 GFLOP/s against 35 for fp32), so bf16 on CPU is chosen only where
the flags say the CPU has it, and every benchmark records the flags it ran on.
"""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path

log = logging.getLogger(__name__)

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere, which reads as 'no native bf16')."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    return any(f in cpu_flags() for f in NATIVE_BF16_FLAGS)


def cpu_bf16_or_fp32(wanted: bool, what: str) -> bool:
    """bf16 on the CPU only where it is native; otherwise fp32, said once in the log."""
    if wanted and not cpu_has_native_bf16():
        log.warning("%s: this CPU has no native bf16 (no %s); using fp32, which is much faster here",
                    what, " or ".join(NATIVE_BF16_FLAGS))
        return False
    return wanted


def machine_record() -> dict:
    """What a benchmark result must say about the CPU it ran on."""
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo_lines() if line.startswith("model name")), "")
    return {"cpu": model or platform.processor(), "machine": platform.machine(),
            "cpu_flags": sorted(f for f in REPORTED_FLAGS if f in cpu_flags()),
            "native_bf16": cpu_has_native_bf16()}


def _cpuinfo_lines() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []
