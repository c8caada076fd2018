from __future__ import annotations

import pytest

from inbedder.job.replicas import replica_count
from inbedder.job.settings import RaySettings


@pytest.mark.parametrize(("settings", "gpus", "cpus", "expected"), [
    ({}, 0.0, 2.0, (2, 0.0)),  # CPUs only: one single-threaded replica per CPU
    ({}, 0.0, 0.5, (1, 0.0)),  # never none
    ({}, 4.0, 64.0, (4, 1.0)),  # GPUs: one per GPU, whatever the CPU count
    ({"gpus_per_replica": 0.5}, 2.0, 64.0, (4, 0.5)),  # two replicas share each GPU
    ({"replicas": 3}, 0.0, 16.0, (3, 0.0)),  # an explicit count wins
    ({"replicas": 1, "gpus_per_replica": 0}, 8.0, 64.0, (1, 0.0)),  # a CPU replica on a GPU cluster
])
def test_replicas_are_one_per_gpu_else_one_per_cpu_unless_set(settings, gpus, cpus, expected):
    assert replica_count(RaySettings(**settings), gpus, cpus) == expected
