"""The output table of a run: one object per format, opened once, with a write lifecycle.

A run opens its output once (`open_output_table`). The object owns what the run
holds on the table: its handle (Delta: loaded once, then brought up to date commit
by commit), what it held before the run (`existing`), the state the planner reads,
the staging lease, and the write lifecycle of Ray Data's datasinks: `start` (claim
staging, number the waves), `write` (one wave, one commit), then `complete`
(deletions, the record, the source state) or `abort` (staging released). The job
never asks which format it writes; a format is one subclass (`delta_output`,
`parquet_output`) registered in `FORMATS`. docs/architecture.md says what a third
format (Iceberg, Lance) would take.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from inbedder.errors import TableError
from inbedder.lake.freshness import SourceState
from inbedder.lake.meta import ExistingOutput, OutputMeta
from inbedder.lake.paths import is_remote
from inbedder.lake.staging import StagedWave, StagingLease, remove_staging, staging_dir, sweep_staging

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WaveId:
    """A wave's transaction identity. Delta records (run, wave) with the commit, so a retried run skips
    the waves it committed before; the attempt names the process, so its own commits are told apart
    from another writer's."""

    run_id: str
    attempt: str
    wave: int

    @property
    def staging(self) -> str:
        """The wave's staging folder under the output's staging root."""
        return f"{self.run_id}/{self.attempt}/wave-{self.wave}"

    def commit_metadata(self) -> dict[str, str]:
        return {"inbedder.run_id": self.run_id, "inbedder.writer": self.attempt, "inbedder.wave": str(self.wave)}


@dataclass(frozen=True)
class WaveWrite:
    """What one wave asks of the output."""

    rows: StagedWave
    new_keys: bool  # every key is one the output lacked when the plan read it (it may be appended)
    stale: tuple[str, ...] = ()  # vectors this run did not compute, nulled where a row's text changed
    gone: pa.Array | None = None  # keys that left the source, deleted in the same commit


@dataclass(frozen=True)
class Written:
    version: int | None  # the output's version after the commit (None: no log, or committed before)
    how: str  # "append", "merge", "skipped" (this wave was committed by an earlier try) or "buffered"


@dataclass(frozen=True)
class StateFiles:
    """Where the planner reads which vectors the output holds: files whose status bits it trusts, and
    files it reads by their vectors (written before the bits existed, or changed by another writer)."""

    by_bits: tuple[str, ...]
    by_vectors: tuple[str, ...]
    bits: frozenset[str]  # instructions whose status column the `by_bits` files carry
    schema: pa.Schema | None  # read every file with this schema (None: each file's own)


@dataclass(frozen=True)
class Completion:
    """What a run hands its output at the end."""

    run_id: str
    meta: OutputMeta  # the record to store
    source_state: SourceState  # what this run read (kept where the format has a log to keep it in)
    gone_rows: int  # keys that left the source and must leave the output (0: keep them)
    gone_keys: Callable[[], pa.Array]  # those keys; read only when a format deletes by key
    source_keys: Callable[[], pa.Array]  # every source key; read only by a format that rewrites the table


class OutputTable(ABC):
    """One output table, opened once per run."""

    format: ClassVar[str]
    # gone keys can leave in a wave's own commit (one rewrite of their files instead of two)
    deletes_with_a_wave: ClassVar[bool] = False

    def __init__(self, path: str, key: str, target_file_bytes: int | None = None):
        self.path, self.key, self.target_file_bytes = path, key, target_file_bytes
        _check_folder(path)
        self.existing: ExistingOutput | None = self.read_existing()
        self._lease: StagingLease | None = None
        self._next_wave = 0
        self._run: tuple[str, str] | None = None
        self.waves_written = 0
        self.gone_deleted = False  # the gone keys left with a wave's commit

    # --- what the output holds ----------------------------------------------------------

    def read_existing(self) -> ExistingOutput | None:
        return self.read_existing_at(self.path)

    @classmethod
    @abstractmethod
    def read_existing_at(cls, path: str) -> ExistingOutput | None:
        """The output as it is (None: there is none yet); a path that can't be this format's output is refused."""

    @property
    @abstractmethod
    def version(self) -> int | None:
        """The output's current version (None: a format without versions)."""

    def files(self) -> list[str]:
        return self.files_at(self.path)

    @classmethod
    @abstractmethod
    def files_at(cls, path: str) -> list[str]:
        """The data files that make up the output now."""

    @abstractmethod
    def unchanged_state(self, digest: str) -> SourceState | None:
        """The recorded state when the output holds exactly what `digest` describes, else None (plan)."""

    @abstractmethod
    def clear_columns(self, columns: list[str]) -> None:
        """Null whole columns (their question changed: the old vectors answer another question)."""

    @abstractmethod
    def state_files(self, usable: list[str]) -> StateFiles | None:
        """Where to read the output's state for a plan (None: it holds no rows). Marks the version whose
        keys the plan holds: a later append checks the log against it."""

    # --- the write lifecycle -------------------------------------------------------------

    def start(self, run_id: str, attempt: str) -> None:
        """Claim this attempt's staging folder and number its waves after the ones the run committed before."""
        self._lease = StagingLease(self.path, f"{run_id}/{attempt}").__enter__()
        self._run = (run_id, attempt)
        self._next_wave = self.committed_wave(run_id) + 1

    @contextmanager
    def writing(self, run_id: str, attempt: str) -> Iterator[OutputTable]:
        """`start`, then `abort` on any failure; a run that ends well calls `complete` inside."""
        self.start(run_id, attempt)
        try:
            yield self
        except BaseException as exc:
            self.abort(exc)
            raise
        if self._lease is not None:  # a run that ended without `complete` (which releases it)
            self._release()

    def committed_wave(self, run_id: str) -> int:
        """The last wave number this run committed (-1: none; a format without a log can't tell)."""
        return -1

    def next_wave(self) -> WaveId:
        if self._run is None:
            raise RuntimeError("OutputTable.start() must come before its waves")
        wave = WaveId(*self._run, self._next_wave)
        self._next_wave += 1
        return wave

    def staging_for(self, wave: WaveId) -> str:
        return staging_dir(self.path, wave.staging)

    @abstractmethod
    def write(self, wave: WaveId, rows: WaveWrite, meta: OutputMeta) -> Written:
        """Commit one wave (a format without a log holds it until `complete`)."""

    @abstractmethod
    def complete(self, done: Completion) -> int:
        """Finish the run's writes: deletions, the record and the source state. Returns the rows deleted."""

    def abort(self, exc: BaseException | None = None) -> None:
        """The run failed: release staging (its staged files go; committed waves stay, a re-run skips them)."""
        log.debug("output %s: run aborted (%s)", self.path, exc)
        self._release()

    def sweep_staging(self) -> int:
        """Remove staging folders no live attempt holds."""
        return sweep_staging(self.path)

    def _release(self) -> None:
        if self._lease is not None:
            lease, self._lease = self._lease, None
            lease.__exit__(None, None, None)
        else:
            self.sweep_staging()

    def _wave_done(self, wave: WaveId) -> None:
        self.waves_written += 1
        remove_staging(self.path, wave.staging)

    # --- labels written by `inbedder cluster` ----------------------------------------------

    @abstractmethod
    def write_cluster_labels(self, keys: pa.Array, hashes: pa.Array, column: str, labels: pa.Array,
                             operation: str) -> None:
        """Set a cluster column by key: the label where the row's text hash still matches, NULL elsewhere."""


FORMATS: dict[str, type[OutputTable]] = {}


def register_format(cls: type[OutputTable]) -> type[OutputTable]:
    FORMATS[cls.format] = cls
    return cls


def output_class(fmt: str) -> type[OutputTable]:
    from inbedder.lake import delta_output, parquet_output  # noqa: F401  (each registers its class)

    try:
        return FORMATS[fmt]
    except KeyError:
        raise TableError(f"unknown output format {fmt!r}: use one of {', '.join(sorted(FORMATS))}") from None


def open_output_table(path: str, fmt: str, key: str, target_file_bytes: int | None = None) -> OutputTable:
    """The run's output table, opened once."""
    return output_class(fmt)(path, key, target_file_bytes)


def existing_output(path: str, fmt: str) -> ExistingOutput | None:
    """What the output at `path` holds before a run (None: nothing yet)."""
    _check_folder(path)
    return output_class(fmt).read_existing_at(path)


def output_files(path: str, fmt: str) -> list[str]:
    return output_class(fmt).files_at(path)


def _check_folder(path: str) -> None:
    if is_remote(path):
        return
    here = Path(path)
    if here.exists() and not here.is_dir():
        raise TableError(f"output {path} is a file, not a folder: choose a folder path for the output table")
    blocking = next((p for p in here.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise TableError(f"output {path} can't be created: {blocking} is a file, not a folder")
