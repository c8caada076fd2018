from __future__ import annotations

from inbedder.job.waves import request_rows


def test_a_small_wave_is_cut_so_every_replica_gets_two_requests_and_a_large_one_keeps_the_batch_size():
    assert request_rows(512, 200, 2) == 50  # 4 requests: both single-threaded replicas work
    assert request_rows(512, 20_000, 2) == 512
    assert request_rows(512, 3, 4) == 1  # never an empty request
    assert request_rows(64, 100, 1) == 50
