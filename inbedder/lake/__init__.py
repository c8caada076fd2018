"""The lake: every read of a source and every write of an output goes through here.

Sources are pinned snapshots (`snapshot`); outputs carry a record of how their
vectors were made (`meta`); writes follow a lifecycle of staging, one commit per
wave and clean-up (`staging`, `commit`); readers of vectors stream them
(`vectors`). Nothing here imports Spark, Ray or the engine.
"""

from inbedder.errors import TableError
from inbedder.lake.columns import (ERROR, KEY_HASH, STAGING, answer_column, cluster_column, clusters_made_stale_by,
                                   embedding_column, quote)
from inbedder.lake.commit import (clear_columns, commit_delta_wave, commit_parquet_output, delete_keys,
                                  delta_transaction_version, set_output_meta, write_cluster_labels,
                                  write_parquet_output)
from inbedder.lake.compaction import Compaction, compact
from inbedder.lake.meta import (ExistingOutput, OutputMeta, delta_version, existing_output, output_files,
                                require_same_model)
from inbedder.lake.paths import is_remote, local_path, spark_uri
from inbedder.lake.snapshot import Snapshot, check_readable, open_snapshot, table_format, unreadable_file_reason
from inbedder.lake.staging import StagingLease, remove_staging, staging_dir, sweep_staging
from inbedder.lake.vectors import VectorSource, open_dataset, open_output

__all__ = [
    "ERROR", "KEY_HASH", "STAGING", "Compaction", "ExistingOutput", "OutputMeta", "Snapshot", "StagingLease",
    "TableError", "VectorSource", "answer_column", "check_readable", "clear_columns", "cluster_column",
    "clusters_made_stale_by", "commit_delta_wave", "commit_parquet_output", "compact", "delete_keys",
    "delta_transaction_version", "delta_version", "embedding_column", "existing_output", "is_remote", "local_path",
    "open_dataset", "open_output", "open_snapshot", "output_files", "quote", "remove_staging", "require_same_model",
    "set_output_meta",
    "spark_uri", "staging_dir", "sweep_staging", "table_format", "unreadable_file_reason", "write_cluster_labels",
    "write_parquet_output",
]
