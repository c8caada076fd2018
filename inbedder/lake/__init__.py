"""The lake: every read of a source and every write of an output goes through here.

Sources are pinned snapshots (`snapshot`); outputs carry a record of how their
vectors were made (`meta`); writes follow a lifecycle of staging, one commit per
wave and clean-up (`staging`, `commit`); readers of vectors stream them
(`vectors`). Nothing here imports Spark, Ray or the engine. Names load with
their module on first use (`inbedder.exports`), so a Spark worker that stages
files does not import the commit path.
"""

from inbedder.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "inbedder.errors": ("TableError",),
    "columns": ("ERROR", "KEY_HASH", "STAGING", "answer_column", "cluster_column", "clusters_made_stale_by",
                "embedding_column", "quote", "status_column", "vector_columns"),
    "commit": ("AppendCheck", "add_status_columns", "clear_columns", "commit_delta_append", "commit_delta_wave",
               "commit_parquet_output", "delete_keys", "delta_transaction_version", "set_output_meta",
               "write_cluster_labels", "write_parquet_output"),
    "compaction": ("Compaction", "compact"),
    "freshness": ("SourceState", "files_changed_by_others", "record_source_state", "source_digest",
                  "unchanged_state"),
    "meta": ("ExistingOutput", "OutputMeta", "delta_version", "existing_output", "output_files",
             "require_same_model", "table_schema"),
    "paths": ("is_remote", "local_path", "spark_uri"),
    "snapshot": ("Snapshot", "check_readable", "open_snapshot", "table_format", "unreadable_file_reason"),
    "staging": ("StagedFile", "StagedWave", "StagingLease", "remove_staging", "staging_dir", "sweep_staging",
                "write_staged_files"),
    "vectors": ("VectorSource", "open_dataset", "open_output"),
})
