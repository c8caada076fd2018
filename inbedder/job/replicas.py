"""Ray actors that each hold one InBedder engine, and the pool Spark tasks send work to.

The pool is a set of named actors in one namespace, so any process that can
reach the Ray cluster (a Spark Python worker on any executor) finds them by name.
A replica that dies is restarted by Ray; a request that fails because its
replica died is retried on the next replica, so no row is lost or duplicated.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a Spark worker reaching the pool needs no settings (pydantic models take time to build)
    from inbedder.job.settings import JobConfig, ModelSettings, RaySettings

NAMESPACE = "inbedder"


@dataclass(frozen=True)
class PoolHandle:
    """What a Spark task needs to reach the pool: picklable and small."""

    ray_address: str
    actor_names: tuple[str, ...]
    max_in_flight: int
    batch_rows: int
    max_retries: int
    restart_wait_s: float = 600.0


class Replica:
    """One engine. Created through `ray.remote`, never in the driver."""

    def __init__(self, model: ModelSettings, threads: int | None):
        from inbedder.batches import engine_for

        self.settings = model
        self.model = engine_for(model_spec(model, threads))

    def identity(self) -> dict:
        return self.model.metadata() | {"pid": os.getpid()}

    def embed(self, texts: list[str], instructions: dict[str, str]) -> dict:
        """Vectors as one float32 block per instruction; rows the engine rejects get an error."""
        result = self.model.embed(texts, instructions, on_error="row", answers=self.settings.answers,
                                  max_answer_tokens=self.settings.max_answer_tokens)
        return {"vectors": result.vectors, "errors": result.errors, "answers": result.answers,
                "real_tokens": result.stats.real_tokens, "computed_tokens": result.stats.computed_tokens}


def model_spec(model: ModelSettings, threads: int | None = None):
    """The job's model settings as the spec every worker kind loads its engine by (`inbedder.batches`)."""
    from inbedder.batches import ModelSpec

    return ModelSpec(model.name, model.adapter, model.dtype, model.max_length, model.token_budget,
                     model.allow_pickle, threads, model.answers, model.max_answer_tokens)


def replica_count(settings: RaySettings, cluster_gpus: float) -> tuple[int, float]:
    """(replicas, GPUs each): one per GPU; without GPUs, one replica using every core.

    On CPUs, several single-threaded replicas (`ray.replicas` = cores, `model.threads_per_replica: 1`) pay
    off only for small models, whose per-row cost is tokenizing and Python rather than matrix products:
    measured on 2 cores, 1.65x the rows/s with a 2-layer model, the same with the default model, whose two
    copies then take twice the memory and load in 17 s instead of 9."""
    gpus = settings.gpus_per_replica if settings.gpus_per_replica >= 0 else (1.0 if cluster_gpus >= 1 else 0.0)
    if settings.replicas:
        return settings.replicas, gpus
    return (max(1, int(cluster_gpus // gpus)) if gpus > 0 else 1), gpus


def start_pool(config: JobConfig, ray_address: str, run_tag: str) -> tuple[PoolHandle, list]:
    """Create the replicas and wait until each has loaded its model (so start-up is timed apart)."""
    import ray

    settings = config.ray
    count, gpus = replica_count(settings, ray.cluster_resources().get("GPU", 0.0))
    actor_cls = ray.remote(Replica)
    # CPU replicas share the node's cores; a GPU replica needs only a few CPU threads
    threads = config.model.threads_per_replica or (4 if gpus else max(1, (os.cpu_count() or 1) // count))
    names = tuple(f"replica-{run_tag}-{i}" for i in range(count))
    actors = [actor_cls.options(name=n, namespace=NAMESPACE, num_cpus=settings.cpus_per_replica, num_gpus=gpus,
                                max_restarts=-1, max_task_retries=0).remote(config.model, threads)
              for n in names]
    ray.get([a.identity.remote() for a in actors])
    handle = PoolHandle(ray_address, names, settings.max_in_flight, settings.batch_rows, settings.max_retries,
                        settings.restart_wait_s)
    return handle, actors


_connected: str | None = None


def connect(address: str) -> None:
    """Join the Ray cluster once per process (Spark reuses its Python workers)."""
    global _connected
    import ray

    if _connected == address and ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address=address, namespace=NAMESPACE, ignore_reinit_error=True, log_to_driver=False,
             logging_level="ERROR")
    _connected = address


class PoolClient:
    """Sends batches round-robin with bounded requests in flight; yields results in order."""

    def __init__(self, handle: PoolHandle):
        import ray

        connect(handle.ray_address)
        self.handle = handle
        self.actors = [ray.get_actor(n, namespace=NAMESPACE) for n in handle.actor_names]
        self._next = 0

    def _submit(self, texts: list[str], instructions: dict[str, str]):
        actor = self.actors[self._next % len(self.actors)]
        self._next += 1
        return actor.embed.remote(texts, instructions)

    def map(self, batches: Iterator[tuple[object, list[str]]],
            instructions: dict[str, str]) -> Iterator[tuple[object, dict]]:
        """(tag, texts) in -> (tag, result) out, same order, at most max_in_flight pending."""
        pending: deque = deque()
        for tag, texts in batches:
            pending.append([tag, texts, self._submit(texts, instructions), 0])
            while len(pending) >= self.handle.max_in_flight:
                yield self._resolve(pending, instructions)
        while pending:
            yield self._resolve(pending, instructions)

    def _resolve(self, pending: deque, instructions: dict[str, str]) -> tuple[object, dict]:
        """A restarting replica is waited for (up to restart_wait_s); a dead one costs a retry."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        tag, texts, ref, attempt = pending[0]
        waited_since: float | None = None
        while True:
            try:
                result = ray.get(ref)
                pending.popleft()
                return tag, result
            except ActorUnavailableError:
                waited_since = waited_since or time.monotonic()
                if time.monotonic() - waited_since > self.handle.restart_wait_s:
                    raise
                time.sleep(1.0)
            except RayActorError:  # died (or restarted mid-request): the request is lost, send it again
                if attempt >= self.handle.max_retries:
                    raise
                attempt += 1
                time.sleep(min(2.0, 0.2 * attempt))
            ref = self._submit(texts, instructions)
            pending[0][2:] = [ref, attempt]
