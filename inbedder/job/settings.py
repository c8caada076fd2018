"""The job's one typed configuration: a YAML file validated field by field.

Every error names the field (`input.key: Field required`); CLI flags override
single fields with `--set section.field=value`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inbedder.index.manifest import DEFAULT_MEMORY_BUDGET_GB, DEFAULT_METRIC, DEFAULT_RECALL_TARGET
from inbedder.settings_files import load_settings

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _column_name(value: str) -> str:
    if not value.strip():
        raise ValueError("a column name can't be empty")
    if "`" in value:
        raise ValueError(f"column {value!r} contains a backtick, which Delta MERGE predicates can't quote: "
                         "rename the column (or copy it to one without) before embedding")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InputConfig(_Strict):
    path: str = Field(description="Parquet dataset or Delta table: local path or s3:// URI")
    format: Literal["auto", "parquet", "delta"] = "auto"
    version: int | None = Field(default=None, ge=0, description="Delta version to pin (default: latest)")
    key: str = Field(description="column that identifies a row; must be unique and non-null")
    text: str = Field(description="string column to embed")
    passthrough: list[str] = Field(default_factory=list, description="columns copied to the output unchanged")
    filter: str | None = Field(default=None, description="Spark SQL predicate selecting the rows to embed")

    @field_validator("key", "text")
    @classmethod
    def _column(cls, value: str) -> str:
        return _column_name(value)

    @field_validator("passthrough")
    @classmethod
    def _columns(cls, value: list[str]) -> list[str]:
        return [_column_name(v) for v in value]

    @model_validator(mode="after")
    def _version_needs_delta(self) -> InputConfig:
        if self.version is not None and self.format == "parquet":
            raise ValueError("version pins a Delta table version; a Parquet input has none")
        return self


class ModelSettings(_Strict):
    name: str | None = Field(default=None, description="hub id, local dir or .gguf (default: embedded SmolLM2)")
    adapter: str | None = Field(default=None, description="an `inbedder train` output folder merged in at load")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_length: int = Field(default=512, ge=8)
    token_budget: int | None = Field(default=None, ge=1)
    answers: bool = False
    max_answer_tokens: int = Field(default=16, ge=1, le=256)
    allow_pickle: bool = False
    threads_per_replica: int | None = Field(default=None, ge=1)


class SparkSettings(_Strict):
    master: str = "local[2]"
    rows_per_partition: int = Field(default=2000, ge=1)
    conf: dict[str, str] = Field(default_factory=dict)


class RaySettings(_Strict):
    address: str = Field(default="local", description="local (start one on 127.0.0.1), auto, or ray://host:port")
    replicas: int | None = Field(default=None, ge=1, description="default: one per GPU, else 1 (using every core; for "
                                     "small models on CPU, one per core with model.threads_per_replica 1)")
    gpus_per_replica: float = Field(default=-1, description="-1: 1 when the cluster has GPUs, else 0")
    cpus_per_replica: float = Field(default=0.5, gt=0)
    max_in_flight: int = Field(default=2, ge=1, description="requests in flight per Spark task (backpressure)")
    batch_rows: int = Field(default=512, ge=1, description="rows per request to a replica (at most: a "
                            "small wave is cut finer, so that every replica gets two requests)")
    object_store_mb: int = Field(default=512, ge=64)
    max_retries: int = Field(default=3, ge=0, description="times a request is retried after a replica dies")
    restart_wait_s: float = Field(default=600.0, gt=0, description="how long a request waits for a restarting "
                                  "replica (it reloads its model) before the task fails")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value not in ("local", "auto") and not value.startswith("ray://") and ":" not in value:
            raise ValueError("use local, auto, ray://host:port or host:port")
        return value


class OutputSettings(_Strict):
    path: str
    format: Literal["delta", "parquet"] = "delta"
    mode: Literal["sidecar", "merge"] = Field(
        default="sidecar", description="sidecar: a table keyed by key; merge: add columns to the source Delta table"
    )
    wave_rows: int = Field(default=20000, ge=1, description="rows per commit; a killed run redoes at most one wave")
    target_file_mb: int | None = Field(default=None, ge=1, description="size of the Delta output's data files "
                                       "(delta.targetFileSize; default: delta-rs's 100 MB)")


class IndexSettings(_Strict):
    out: str | None = Field(default=None, description="build/update one FAISS index per instruction here")
    metric: Literal["cosine", "inner_product", "l2"] = DEFAULT_METRIC
    memory_budget_gb: float = Field(default=DEFAULT_MEMORY_BUDGET_GB, gt=0)
    recall_target: float = Field(default=DEFAULT_RECALL_TARGET, gt=0, le=1)

    def build_options(self):
        """This section as the index builder's options (the same conversion the CLI and Airflow use)."""
        from inbedder.index.build import BuildOptions

        return BuildOptions.from_settings(self.metric, self.memory_budget_gb, self.recall_target)


class JobConfig(_Strict):
    input: InputConfig
    instructions: dict[str, str] = Field(min_length=1)
    model: ModelSettings = Field(default_factory=ModelSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    output: OutputSettings
    index: IndexSettings = Field(default_factory=IndexSettings)
    run_id: str | None = None
    max_error_rate: float = Field(default=1.0, ge=0, le=1)
    report_path: str | None = None
    progress: bool = True

    @field_validator("instructions")
    @classmethod
    def _instructions(cls, value: dict[str, str]) -> dict[str, str]:
        for name, question in value.items():
            if not _NAME.fullmatch(name):
                raise ValueError(f"instruction name {name!r}: use letters, digits and _, not starting with a digit")
            if not question.strip():
                raise ValueError(f"instruction {name!r}: the question is empty")
        return value

    @model_validator(mode="after")
    def _output(self) -> JobConfig:
        same = _same_location(self.input.path, self.output.path)
        if self.output.mode == "merge":
            if self.output.format != "delta":
                raise ValueError("output.mode=merge writes into a Delta table: output.format must be delta")
            if not same:
                raise ValueError("output.mode=merge adds columns to the source table: "
                                 "output.path must equal input.path")
        elif same:
            raise ValueError("output.path equals input.path: a sidecar output must not overwrite its source "
                             "(use output.mode=merge to add columns to a Delta source)")
        return self


def _same_location(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> JobConfig:
    """The job's settings: the YAML file, options from the command line, then `--set` overrides."""
    return load_settings(JobConfig, path, overrides, base)
