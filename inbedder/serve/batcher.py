"""Micro-batching: concurrent requests share one forward pass and one index search.

Two stages on two threads. The forward stage runs one engine call per question for every text queued
when a batch closes; the search stage then runs one FAISS search per (index, k) and one read of the
hits' rows per index for the whole batch, while the next batch's forward pass already runs.

When a batch closes decides throughput. Closed-loop clients (each sends its next request when the last
is answered) split into cohorts if a batch closes as soon as its first text arrives: half of them wait
in the queue while the other half is encoded, and every pass runs half full (bench/serve.py measured 7.8
texts per pass with 16 clients). So a batch expects as many requests as the last one held plus any that
were already waiting, and waits for them up to a share of the last pass's time; a lone client is never
held back, and a batch of `max_batch` texts goes at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from inbedder.engine import InBedder
    from inbedder.serve.indexes import ServedIndex

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    served: ServedIndex
    texts: list[str]
    k: int
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)
    vectors: np.ndarray | None = None
    encoded_at: float = 0.0


@dataclass(frozen=True)
class Answer:
    """One request's hits per text, with where its time went (encode includes the wait for its batch)."""

    hits: list[list[dict]]
    encode_ms: float
    search_ms: float


@dataclass
class BatchStats:
    batches: int = 0
    texts: int = 0
    largest: int = 0
    waited: int = 0     # batches that waited for requests they expected


class MicroBatcher:
    """`await search(served, texts, k)`; see the module's docstring for when a batch closes."""

    def __init__(self, engine: InBedder, window_ms: float = 10.0, max_batch: int = 64, max_wait_ms: float = 250.0,
                 wait_share: float = 0.3):
        self.engine, self.max_batch = engine, max_batch
        self.window, self.max_wait, self.wait_share = window_ms / 1000, max_wait_ms / 1000, wait_share
        self.queue: asyncio.Queue[_Pending] | None = None
        self.forward_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbedder-forward")
        self.search_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbedder-search")
        self.stats = BatchStats()
        self._task: asyncio.Task | None = None
        self._searches: set[asyncio.Task] = set()
        self._last_requests, self._last_forward_s = 0, 0.0

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        for pool in (self.forward_pool, self.search_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    async def search(self, served: ServedIndex, texts: list[str], k: int) -> Answer:
        assert self.queue is not None, "start() first"
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(served, texts, k, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiting = self.queue.qsize()
            batch = [await self.queue.get()]
            size = len(batch[0].texts)
            while size < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
                size += len(batch[-1].texts)
            expected = self._last_requests + waiting
            wait = max(self.window, min(self.max_wait, self.wait_share * self._last_forward_s))
            deadline = loop.time() + wait
            self.stats.waited += len(batch) < expected and size < self.max_batch
            while size < self.max_batch and len(batch) < expected:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
                size += len(batch[-1].texts)
            self._last_requests = len(batch)
            started = time.perf_counter()
            await self._forward(batch, loop)
            self._last_forward_s = time.perf_counter() - started
            task = asyncio.create_task(self._search(batch, loop))
            self._searches.add(task)
            task.add_done_callback(self._searches.discard)

    async def _forward(self, batch: list[_Pending], loop: asyncio.AbstractEventLoop) -> None:
        size = sum(len(p.texts) for p in batch)
        self.stats.batches += 1
        self.stats.texts += size
        self.stats.largest = max(self.stats.largest, size)
        by_question: dict[str, list[_Pending]] = {}
        for p in batch:
            by_question.setdefault(p.served.manifest.instruction_text, []).append(p)
        for question, pending in by_question.items():
            texts = [t for p in pending for t in p.texts]
            try:
                vectors = await loop.run_in_executor(self.forward_pool, self.engine.encode, texts, question)
            except Exception as exc:  # noqa: BLE001 - handed to each waiting request
                _fail(pending, exc)
                continue
            now, start = time.perf_counter(), 0
            for p in pending:
                p.vectors, p.encoded_at = vectors[start: start + len(p.texts)], now
                start += len(p.texts)

    async def _search(self, batch: list[_Pending], loop: asyncio.AbstractEventLoop) -> None:
        encoded = [p for p in batch if p.vectors is not None and not p.future.done()]
        by_index: dict[int, list[_Pending]] = {}
        for p in encoded:
            by_index.setdefault(id(p.served), []).append(p)
        for pending in by_index.values():
            try:
                hits = await loop.run_in_executor(self.search_pool, _search_one_index, pending)
            except Exception as exc:  # noqa: BLE001 - handed to each waiting request
                _fail(pending, exc)
                continue
            now = time.perf_counter()
            for p, found in zip(pending, hits, strict=True):
                if not p.future.done():
                    p.future.set_result(Answer(found, (p.encoded_at - p.queued_at) * 1000,
                                               (now - p.encoded_at) * 1000))


def _search_one_index(pending: list[_Pending]) -> list[list[list[dict]]]:
    """One FAISS search per k asked and one read of all the hits' rows, for every request on one index (a
    request holds its index object, so requests that straddle a hot swap are searched on their own version)."""
    import numpy as np

    by_k: dict[int, list[_Pending]] = {}
    for p in pending:
        by_k.setdefault(p.k, []).append(p)
    per_text: dict[int, list] = {}
    for k, members in by_k.items():
        hits, start = pending[0].served.searcher.search_vectors(np.concatenate([p.vectors for p in members]), k), 0
        for p in members:
            per_text[id(p)] = hits[start: start + len(p.texts)]
            start += len(p.texts)
    found = pending[0].served.with_rows([h for p in pending for h in per_text[id(p)]])
    answers, start = [], 0
    for p in pending:
        answers.append(found[start: start + len(p.texts)])
        start += len(p.texts)
    return answers


def _fail(pending: list[_Pending], exc: Exception) -> None:
    for p in pending:
        if not p.future.done():
            p.future.set_exception(exc)
