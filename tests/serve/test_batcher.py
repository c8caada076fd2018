"""Micro-batching: concurrent requests share forward passes and searches, with the answers they'd get alone."""

from __future__ import annotations

import asyncio
import time

import pytest

from inbedder.serve.batcher import MicroBatcher
from inbedder.serve.indexes import IndexSet


class SlowEngine:
    """The tiny model, with a forward pass as slow as a real one on a CPU (so batches can form)."""

    def __init__(self, engine, seconds: float):
        self.engine, self.seconds, self.calls = engine, seconds, []

    def encode(self, texts, question):
        self.calls.append(len(texts))
        time.sleep(self.seconds)
        return self.engine.encode(texts, question)


@pytest.fixture(scope="module")
def indexes(served, llama):
    return IndexSet((str(served / "index_intent"), str(served / "index_feeling")), llama).current()


def run(batcher, work):
    async def main():
        await batcher.start()
        try:
            return await work()
        finally:
            await batcher.stop()

    return asyncio.run(main())


def test_concurrent_requests_share_a_pass_and_get_what_they_would_alone(indexes, llama):
    engine = SlowEngine(llama, 0.05)
    batcher = MicroBatcher(engine)
    asks = [(indexes["intent"], ["lost my card"], 5), (indexes["feeling"], ["I love the app", "why so slow"], 3),
            (indexes["intent"], ["cancel my loan"], 7), (indexes["intent"], ["refund please", "pin help"], 5)]
    answers = run(batcher, lambda: asyncio.gather(*(batcher.search(s, t, k) for s, t, k in asks)))
    assert batcher.stats.batches == 1 and batcher.stats.largest == 6
    assert engine.calls == [4, 2]  # one forward pass per question: the intent texts, then the feeling texts
    for (served, texts, k), answer in zip(asks, answers):
        vectors = llama.encode(texts, served.manifest.instruction_text)
        alone = served.with_rows(served.searcher.search_vectors(vectors, k))
        assert [[h["key"] for h in hits] for hits in answer.hits] == [[h["key"] for h in hits] for hits in alone]
        assert all(h["row"]["id"] == h["key"] for hits in answer.hits for h in hits)
        assert answer.encode_ms >= 50 and answer.search_ms >= 0


def test_closed_loop_clients_stay_in_one_batch(indexes, llama):
    """Clients that come back at different times (5-40 ms after their answer) would split into two half-full
    cohorts with a fixed 10 ms window; a batch waits for as many requests as the last one held."""
    engine = SlowEngine(llama, 0.2)
    batcher = MicroBatcher(engine, window_ms=10)

    async def client(i: int):
        for _ in range(4):
            await batcher.search(indexes["intent"], [f"text {i}"], 5)
            await asyncio.sleep(0.005 * (i + 1))

    async def clients():
        await asyncio.gather(*(client(i) for i in range(8)))

    run(batcher, clients)
    assert batcher.stats.texts == 32
    assert batcher.stats.texts / batcher.stats.batches >= 6, engine.calls


def test_a_lone_client_never_waits_for_others(indexes, llama):
    batcher = MicroBatcher(SlowEngine(llama, 0.02), window_ms=100)

    async def one_client():
        return [await batcher.search(indexes["feeling"], ["so happy"], 3) for _ in range(4)]

    run(batcher, one_client)
    assert batcher.stats.batches == 4 and batcher.stats.waited == 0


def test_a_failed_forward_pass_fails_its_requests_not_the_batcher(indexes, llama):
    class Broken(SlowEngine):
        def encode(self, texts, question):
            if "boom" in texts:
                raise RuntimeError("boom")
            return super().encode(texts, question)

    batcher = MicroBatcher(Broken(llama, 0.0))

    async def work():
        with pytest.raises(RuntimeError):
            await batcher.search(indexes["intent"], ["boom"], 3)
        return await batcher.search(indexes["intent"], ["lost card"], 3)

    assert len(run(batcher, work).hits[0]) == 3
