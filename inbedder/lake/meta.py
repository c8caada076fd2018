"""How an output's vectors were made (stored with the table), and what an output holds before a run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from inbedder.errors import TableError
from inbedder.lake.columns import META_KEY


@dataclass
class OutputMeta:
    """How the vectors in an output were made; stored with the table."""

    model: str
    fingerprint: str
    template: str
    dim: int
    key: str
    instructions: dict[str, str]
    text: str = ""  # the column the vectors embed ("" in tables written before it was recorded)

    def to_properties(self) -> dict[str, str]:
        props = {f"{META_KEY}.model": self.model, f"{META_KEY}.fingerprint": self.fingerprint,
                 f"{META_KEY}.template": self.template, f"{META_KEY}.dim": str(self.dim),
                 f"{META_KEY}.key": self.key}
        props.update({f"{META_KEY}.instruction.{n}": q for n, q in self.instructions.items()})
        if self.text:
            props[f"{META_KEY}.text"] = self.text
        return props

    def to_description(self) -> str:
        return json.dumps({META_KEY: self.__dict__}, sort_keys=True)

    @classmethod
    def from_delta(cls, metadata: Any) -> OutputMeta | None:
        """Table properties, or the description a first commit carries before they are set."""
        found = cls.from_properties(dict(metadata.configuration))
        if found is None and getattr(metadata, "description", None):
            try:
                return cls(**json.loads(metadata.description)[META_KEY])
            except (ValueError, KeyError, TypeError):
                return None
        return found

    @classmethod
    def from_fields(cls, schema: pa.Schema) -> OutputMeta | None:
        """A table written by `inbedder.spark.embed` or `inbedder.ray.Embed`: each vector field carries its
        record (Arrow field metadata, or Spark's field metadata in the Parquet footer). Vectors of two models
        in one table are refused."""
        records = [json.loads(f.metadata[META_KEY.encode()]) for f in schema
                   if f.metadata and META_KEY.encode() in f.metadata]
        spark_row = (schema.metadata or {}).get(b"org.apache.spark.sql.parquet.row.metadata")
        if not records and spark_row:
            records = [f["metadata"][META_KEY] for f in json.loads(spark_row).get("fields", [])
                       if META_KEY in f.get("metadata", {})]
        if not records:
            return None
        models = {(r["model"], r["fingerprint"]) for r in records}
        if len(models) > 1:
            raise TableError(f"the vector columns were made by {len(models)} different models "
                             f"({', '.join(sorted(m for m, _ in models))}): their vectors are not comparable")
        first = records[0]
        return cls(first["model"], first["fingerprint"], first["template"], int(first["dim"]), first.get("key") or "",
                   {r["instruction"]: r["question"] for r in records}, first.get("text") or "")

    @classmethod
    def from_properties(cls, props: dict[str, str]) -> OutputMeta | None:
        if f"{META_KEY}.fingerprint" not in props:
            return None
        prefix = f"{META_KEY}.instruction."
        return cls(props[f"{META_KEY}.model"], props[f"{META_KEY}.fingerprint"], props[f"{META_KEY}.template"],
                   int(props[f"{META_KEY}.dim"]), props[f"{META_KEY}.key"],
                   {k[len(prefix):]: v for k, v in props.items() if k.startswith(prefix)},
                   props.get(f"{META_KEY}.text", ""))


@dataclass
class ExistingOutput:
    format: str
    version: int | None
    meta: OutputMeta | None
    schema: pa.Schema


def require_same_model(where: str, recorded: tuple[str, str], used: tuple[str, str], fix: str,
                       error: type[TableError] = TableError) -> None:
    """Vectors of two models are not comparable: refuse to mix them, naming both (model name, fingerprint)."""
    if recorded[1] != used[1]:
        raise error(f"{where} holds vectors from model {recorded[0]!r} (fingerprint {recorded[1]}); this uses "
                    f"{used[0]!r} ({used[1]}): their vectors are not comparable. {fix}")
