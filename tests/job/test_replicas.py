from __future__ import annotations

import pytest

from inbedder.job.replicas import replica_count
from inbedder.job.settings import RaySettings


@pytest.mark.parametrize(("settings", "gpus", "expected"), [
    ({}, 0.0, (1, 0.0)),  # CPUs only: one replica using every core
    ({}, 4.0, (4, 1.0)),  # GPUs: one per GPU
    ({"gpus_per_replica": 0.5}, 2.0, (4, 0.5)),  # two replicas share each GPU
    ({"replicas": 2}, 0.0, (2, 0.0)),  # an explicit count wins (small models on CPU: one per core)
    ({"replicas": 1, "gpus_per_replica": 0}, 8.0, (1, 0.0)),  # a CPU replica on a GPU cluster
])
def test_replicas_are_one_per_gpu_else_one_unless_set(settings, gpus, expected):
    assert replica_count(RaySettings(**settings), gpus) == expected
