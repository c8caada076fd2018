"""The lake: every read of a source and every write of an output goes through here.

Sources are pinned snapshots (`snapshot`); outputs carry a record of how their
vectors were made (`meta`); writes follow a lifecycle of staging, one commit per
wave and clean-up (`staging`, `commit`); readers of vectors stream them
(`vectors`). Nothing here imports Spark, Ray or the engine.
"""

from inbedder.errors import TableError
from inbedder.lake.columns import (ERROR, KEY_HASH, STAGING, answer_column, cluster_column, clusters_made_stale_by,
                                   embedding_column, quote, status_column, vector_columns)
from inbedder.lake.commit import (AppendCheck, add_status_columns, clear_columns, commit_delta_append,
                                  commit_delta_wave, commit_parquet_output, delete_keys, delta_transaction_version,
                                  set_output_meta, write_cluster_labels, write_parquet_output)
from inbedder.lake.compaction import Compaction, compact
from inbedder.lake.freshness import SourceState, record_source_state, source_digest, unchanged_state
from inbedder.lake.meta import (ExistingOutput, OutputMeta, delta_version, existing_output, output_files,
                                require_same_model, table_schema)
from inbedder.lake.paths import is_remote, local_path, spark_uri
from inbedder.lake.snapshot import Snapshot, check_readable, open_snapshot, table_format, unreadable_file_reason
from inbedder.lake.staging import (StagedFile, StagedWave, StagingLease, remove_staging, staging_dir, sweep_staging,
                                   write_staged_files)
from inbedder.lake.vectors import VectorSource, open_dataset, open_output

__all__ = [
    "AppendCheck", "Compaction", "ERROR", "ExistingOutput", "KEY_HASH", "OutputMeta", "STAGING", "Snapshot",
    "SourceState", "StagedFile", "StagedWave", "StagingLease", "TableError", "VectorSource", "add_status_columns",
    "answer_column", "check_readable", "clear_columns", "cluster_column", "clusters_made_stale_by",
    "commit_delta_append", "commit_delta_wave", "commit_parquet_output", "compact", "delete_keys",
    "delta_transaction_version", "delta_version", "embedding_column", "existing_output", "is_remote", "local_path",
    "open_dataset", "open_output", "open_snapshot", "output_files", "quote", "record_source_state",
    "remove_staging", "require_same_model", "set_output_meta", "source_digest", "spark_uri", "staging_dir",
    "status_column", "sweep_staging", "table_format", "table_schema", "unchanged_state", "unreadable_file_reason",
    "vector_columns", "write_cluster_labels", "write_parquet_output", "write_staged_files",
]
