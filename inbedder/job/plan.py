"""What a run must do, decided before any model starts. Pure: unit-tested without Spark."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from inbedder.errors import TableError
from inbedder.job.settings import JobConfig
from inbedder.lake import ExistingOutput, OutputMeta, Snapshot, require_same_model

TEXT_TYPES = (pa.string(), pa.large_string())


def default_run_id(config: JobConfig, snapshot_version: int | None) -> str:
    """Stable across re-runs of the same job, so a re-run resumes the same staging and transactions."""
    basis = json.dumps({"in": config.input.path, "v": snapshot_version, "out": config.output.path,
                        "i": config.instructions, "m": config.model.name}, sort_keys=True)
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def check_source(snapshot: Snapshot, config: JobConfig) -> None:
    names = snapshot.schema.names
    wanted = [config.input.key, config.input.text, *config.input.passthrough]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise TableError(f"input {config.input.path} has no column(s) {', '.join(missing)} "
                         f"(it has: {', '.join(names)})")
    text_type = snapshot.schema.field(config.input.text).type
    if text_type not in TEXT_TYPES:
        raise TableError(f"input.text column {config.input.text!r} is {text_type}, not a string column")
    key_type = snapshot.schema.field(config.input.key).type
    if not (pa.types.is_integer(key_type) or pa.types.is_string(key_type) or pa.types.is_large_string(key_type)):
        raise TableError(f"input.key column {config.input.key!r} is {key_type}: use an integer or string key")
    reserved = [c for c in config.input.passthrough
                if c.startswith("_inbedder") or c.endswith(("_embedding", "_answer"))]
    if reserved:
        raise TableError(f"passthrough column(s) {reserved} collide with the output's own column names")


def check_key_unchanged(existing: ExistingOutput | None, snapshot: Snapshot,
                        config: JobConfig) -> None:
    """An output keyed by integers can't take string keys (or the reverse): rows would never match again."""
    key = config.input.key
    if existing is None or key not in existing.schema.names:
        return
    before, now = existing.schema.field(key).type, snapshot.schema.field(key).type

    def kind(t: pa.DataType) -> str:
        return "integer" if pa.types.is_integer(t) else "string" if t in TEXT_TYPES else str(t)

    if kind(before) != kind(now):
        raise TableError(f"output {config.output.path} is keyed by {key!r} of type {before}, but the source's "
                         f"{key!r} is now {now}: no row would match its earlier output. Write to a new output "
                         f"path, or give the source key its earlier type")


def check_existing(existing: ExistingOutput | None, meta: OutputMeta, config: JobConfig) -> None:
    if existing is None:
        return
    if existing.meta is None:
        if config.output.mode == "merge":
            return  # a source table that has not been embedded into yet
        raise TableError(f"output {config.output.path} exists but was not written by inbedder: refusing to modify it")
    require_same_model(f"output {config.output.path}", (existing.meta.model, existing.meta.fingerprint),
                       (meta.model, meta.fingerprint), "Write to a new output path.")
    if existing.meta.key != config.input.key:
        raise TableError(f"output {config.output.path} is keyed by {existing.meta.key!r}, not {config.input.key!r}")


def made_by_this_model(existing: ExistingOutput | None, config: JobConfig) -> bool:
    """The output holds this model's vectors, known from files alone (a hub model can't be known so)."""
    if existing is None or existing.meta is None:
        return False
    from inbedder.engine.embedder import expected_fingerprint

    expected = expected_fingerprint(config.model.name, adapter=config.model.adapter,
                                    max_length=config.model.max_length)
    return expected == existing.meta.fingerprint


def source_settings(config: JobConfig, fingerprint: str) -> dict:
    """Everything besides the source's snapshot that an output's rows depend on: a run with the same
    snapshot and these settings as the output's last run has nothing to do."""
    return {"key": config.input.key, "text": config.input.text, "passthrough": list(config.input.passthrough),
            "filter": config.input.filter, "instructions": dict(config.instructions), "fingerprint": fingerprint,
            "answers": config.model.answers, "mode": config.output.mode, "file_mb": config.output.target_file_mb}


def meta_with(meta: OutputMeta, existing: ExistingOutput | None) -> OutputMeta:
    """The output's record after this run: instructions from before are kept."""
    instructions = dict(existing.meta.instructions) if existing and existing.meta else {}
    instructions.update(meta.instructions)
    return OutputMeta(meta.model, meta.fingerprint, meta.template, meta.dim, meta.key, instructions, meta.text)


@dataclass(frozen=True)
class InstructionPlan:
    """Which recorded vectors a run may keep, per instruction."""

    usable: list[str]  # present in the output and asked the same question: kept where the text is unchanged
    changed: list[str]  # the question changed: every old vector answers another question, so all are cleared
    stale: list[str]  # recorded but not asked now: kept, but nulled where a row's text changes


def plan_instructions(asked: dict[str, str], recorded: dict[str, str], output_columns: set[str]) -> InstructionPlan:
    from inbedder.lake import embedding_column

    changed = [n for n in asked if n in recorded and recorded[n] != asked[n]]
    stale = [n for n in recorded if n not in asked]
    usable = [n for n in asked if embedding_column(n) in output_columns and n not in changed]
    return InstructionPlan(usable, changed, stale)


@dataclass(frozen=True)
class Wave:
    """One commit's worth of rows: those missing exactly `instructions`, hash bucket `bucket` of `buckets`."""

    instructions: tuple[str, ...]
    missing: tuple[bool, ...]  # per asked instruction, in config order
    bucket: int
    buckets: int
    expected_rows: int
    new_keys: bool = False  # every row's key is absent from the output: the wave is appended, not merged


def plan_waves(names: list[str], combos: dict[tuple[bool, ...], int], wave_rows: int,
               new_keys: dict[tuple[bool, ...], int] | None = None) -> list[Wave]:
    """Rows grouped by which instructions they miss (one schema per group), each group cut into waves of
    about `wave_rows` by key hash; groups missing the most instructions first.

    `new_keys` counts, per group, the rows whose key the output lacks: they make waves of their own,
    after the group's other rows, so their commits append instead of merging."""
    waves = []
    for missing, rows in sorted(combos.items(), reverse=True):
        if not rows or not any(missing):
            continue
        chosen = tuple(n for n, m in zip(names, missing) if m)
        fresh = (new_keys or {}).get(missing, 0)
        for count, new in ((rows - fresh, False), (fresh, True)):
            if count:
                buckets = max(1, math.ceil(count / wave_rows))
                waves += [Wave(chosen, missing, b, buckets, math.ceil(count / buckets), new) for b in range(buckets)]
    return waves


@dataclass
class Plan:
    """What a run must embed: the source rows (a cached Spark frame), the rows missing a vector, and how many
    per combination of missing instructions."""

    df: Any
    todo: Any
    combos: dict[tuple[bool, ...], int]
    state: Any | None  # the output's keys and hashes as of the start (None: no output yet)
    instructions: InstructionPlan
    new_keys: dict[tuple[bool, ...], int] = field(default_factory=dict)  # rows per combo whose key is new
    gone_rows: int = 0  # output rows whose key left the source (in `todo` with `_gone`)

    @property
    def rows_to_embed(self) -> int:
        return sum(self.combos.values())

    def waves(self, names: list[str], wave_rows: int) -> list[Wave]:
        return plan_waves(names, self.combos, wave_rows, self.new_keys)
