"""One FAISS index per instruction column: chosen by size and memory, tuned to a recall target, measured.

A thin `build_index` / `build_or_update` over stage modules, as autofaiss does:
`choose` picks the index, `build` trains and fills it, `tune` sets the search
effort for the recall target, `store` writes and loads folders atomically,
`update` follows the table's new versions, `shards` fills IVF shards on Spark
(a strategy of the same builder), `search` answers queries.
"""

from inbedder.errors import IndexBuildError
from inbedder.index.build import BuildOptions, build_index, build_index_from
from inbedder.index.choose import IndexChoice, choose_index
from inbedder.index.manifest import METRICS, Manifest
from inbedder.index.search import Hit, Searcher
from inbedder.index.store import load_index
from inbedder.index.update import build_or_update, update_index

__all__ = ["METRICS", "BuildOptions", "Hit", "IndexBuildError", "IndexChoice", "Manifest", "Searcher",
           "build_index", "build_index_from", "build_or_update", "choose_index", "load_index", "update_index"]
