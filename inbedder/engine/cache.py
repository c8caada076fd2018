"""Where converted models and digests are cached (INBEDDER_CACHE overrides): the root is shared with the run
logs, so it lives in `inbedder.fs`."""

from inbedder.fs import cache_root

__all__ = ["cache_root"]
