"""One FAISS index per instruction column: chosen by size and memory, tuned to a recall target, measured.

A thin `build_index` / `build_or_update` over stage modules, as autofaiss does:
`choose` picks the index, `build` trains and fills it, `tune` sets the search
effort for the recall target, `store` writes and loads folders atomically,
`update` follows the table's new versions, `shards` fills IVF shards on Spark
(a strategy of the same builder), `search` answers queries; `kinds` says what each
kind of index can do. Names load with their module on first use
(`inbedder.exports`), so reading a default does not import the builder.
"""

from inbedder.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "inbedder.errors": ("IndexBuildError",),
    "build": ("BuildOptions", "build_index", "build_index_from"),
    "choose": ("IndexChoice", "choose_index"),
    "manifest": ("DEFAULT_MEMORY_BUDGET_GB", "DEFAULT_METRIC", "DEFAULT_RECALL_TARGET", "METRICS", "Manifest"),
    "search": ("Hit", "Searcher"),
    "store": ("load_index",),
    "update": ("build_or_update", "update_index"),
})
