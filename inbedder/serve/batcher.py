"""Micro-batching: texts of concurrent requests share one forward pass (a short wait window, a max batch)."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from inbedder.engine import InBedder

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    texts: list[str]
    question: str
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    batches: int = 0
    texts: int = 0
    largest: int = 0


class MicroBatcher:
    """`await encode(texts, question)`: the first waiting text opens a window of `window_ms`; every text queued
    by then (up to `max_batch`) goes through the engine together, one call per question, on one thread."""

    def __init__(self, engine: InBedder, window_ms: float = 5.0, max_batch: int = 64):
        self.engine, self.window, self.max_batch = engine, window_ms / 1000, max_batch
        self.queue: asyncio.Queue[_Pending] | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbedder-forward")
        self.stats = BatchStats()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def encode(self, texts: list[str], question: str) -> np.ndarray:
        assert self.queue is not None, "start() first"
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(texts, question, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            batch, size = [first], len(first.texts)
            deadline = loop.time() + self.window
            while size < self.max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self.queue.get(), left)
                except asyncio.TimeoutError:
                    break
                batch.append(nxt)
                size += len(nxt.texts)
            await self._forward(batch, loop)

    async def _forward(self, batch: list[_Pending], loop) -> None:
        by_question: dict[str, list[_Pending]] = {}
        for p in batch:
            by_question.setdefault(p.question, []).append(p)
        self.stats.batches += 1
        self.stats.texts += sum(len(p.texts) for p in batch)
        self.stats.largest = max(self.stats.largest, sum(len(p.texts) for p in batch))
        for question, pending in by_question.items():
            texts = [t for p in pending for t in p.texts]
            try:
                vectors = await loop.run_in_executor(self.pool, self.engine.encode, texts, question)
            except Exception as exc:  # noqa: BLE001 - handed to each waiting request
                for p in pending:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            start = 0
            for p in pending:
                if not p.future.done():
                    p.future.set_result(np.asarray(vectors[start: start + len(p.texts)]))
                start += len(p.texts)
