"""bf16 on a CPU only where the CPU has it natively; benchmarks can say which CPU they ran on."""

from __future__ import annotations

import logging

import pytest
import torch

from inbedder.engine import hardware
from inbedder.engine.loading import resolve_dtype


@pytest.fixture
def flags(monkeypatch):
    def set_flags(*names: str) -> None:
        monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(names))

    return set_flags


def test_bf16_on_a_cpu_without_native_bf16_falls_back_to_fp32_with_a_notice(flags, caplog):
    flags("avx2", "fma")
    with caplog.at_level(logging.WARNING, logger="inbedder.engine.hardware"):
        assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.float32
    assert "no native bf16" in caplog.text and len(caplog.records) == 1
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32


def test_bf16_is_kept_where_the_cpu_has_it_and_on_gpus(flags):
    flags("avx2", "avx512f", "avx512_bf16")
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    flags("avx2")
    assert resolve_dtype("bfloat16", torch.device("cuda")) == torch.bfloat16  # only the CPU is checked


def test_the_machine_record_names_the_flags_that_decide(flags):
    flags("avx2", "amx_bf16", "sse4_2")
    record = hardware.machine_record()
    assert record["cpu_flags"] == ["amx_bf16", "avx2"] and record["native_bf16"] is True
    assert hardware.cpu_bf16_or_fp32(False, "x") is False
