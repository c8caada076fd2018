"""The lake: every read of a source and every write of an output goes through here.

Sources are pinned snapshots (`snapshot`); outputs carry a record of how their
vectors were made (`meta`); a run writes through one object per output table
(`output`; a module per format: `delta_output`, `parquet_output`) with a
lifecycle of staging (`staging`), one commit per wave and completion; readers of vectors stream them
(`vectors`). Nothing here imports Spark, Ray or the engine. Names load with
their module on first use (`inbedder.exports`), so a Spark worker that stages
files does not import the commit path.
"""

from inbedder.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "inbedder.errors": ("TableError",),
    "columns": ("ERROR", "KEY_HASH", "STAGING", "answer_column", "cluster_column", "clusters_made_stale_by",
                "embedded_text_column", "embedding_column", "quote", "status_column", "vector_columns"),
    "output": ("Completion", "OutputTable", "StateFiles", "WaveId", "WaveWrite", "Written", "existing_output",
               "open_output_table", "output_files"),
    "delta_output": ("DeltaOutput",),
    "parquet_output": ("ParquetOutput", "write_parquet_output"),
    "compaction": ("Compaction", "compact"),
    "freshness": ("SourceState", "files_changed_by_others", "record_source_state", "source_digest",
                  "unchanged_state"),
    "meta": ("ExistingOutput", "OutputMeta", "require_same_model"),
    "paths": ("is_remote", "local_path", "spark_uri"),
    "snapshot": ("Snapshot", "check_readable", "open_snapshot", "table_format", "unreadable_file_reason"),
    "staging": ("StagedFile", "StagedWave", "StagingLease", "remove_staging", "staging_dir", "sweep_staging",
                "write_staged_files"),
    "vectors": ("VectorSource", "open_dataset", "open_output", "rows_by_key"),
})
