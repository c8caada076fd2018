"""`inbedder serve`: the instruction indexes behind a small HTTP service and one web page.

`indexes` loads each index once (with its table version and fingerprint) and
swaps in a rebuilt one without a restart; `batcher` merges concurrent requests'
texts into one forward pass; `app` is the FastAPI application (API, page, token
check, one-line 4xx errors). Loopback by default; any other host needs a token.
"""

from inbedder.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "app": ("create_app",),
    "indexes": ("IndexSet", "ServedIndex"),
    "batcher": ("MicroBatcher",),
    "settings": ("ServeSettings", "check_exposure"),
})
