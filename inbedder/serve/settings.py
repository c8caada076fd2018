"""What a server runs with, checked once at start-up."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from inbedder.errors import InBedderError

TOKEN_ENV = "INBEDDER_SERVE_TOKEN"


class ServeError(InBedderError):
    """The server can't start as asked."""


@dataclass(frozen=True)
class ServeSettings:
    indexes: tuple[str, ...]
    clusters: tuple[str, ...] = ()       # `inbedder cluster` report folders (clusters.json), matched by question
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    model: str | None = None
    adapter: str | None = None
    max_texts: int = 32                  # per request
    max_chars: int = 4000                # per text
    max_k: int = 100
    batch_window_ms: float = 10.0        # how long a batch waits for the requests it expects, at least ...
    batch_max_wait_ms: float = 250.0     # ... and at most (else a share of the last forward pass's time)
    max_batch: int = 64                  # texts per forward pass
    reload_every_s: float = 2.0          # how often the manifests are checked for a rebuilt index
    map_points: int = 2000               # rows sampled for the 2-D map of a question
    dtype: str = "auto"                  # the model options every model-loading command takes
    device: str | None = None
    threads: int | None = None
    extra: dict = field(default_factory=dict)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(token_file: str | None) -> str | None:
    """The token from --token-file, else from $INBEDDER_SERVE_TOKEN; None when neither is set."""
    if token_file:
        path = Path(token_file)
        if not path.is_file():
            raise ServeError(f"--token-file {token_file} does not exist")
        token = path.read_text().strip()
        if len(token) < 16:
            raise ServeError(f"--token-file {token_file}: the token must be at least 16 characters")
        return token
    return os.environ.get(TOKEN_ENV) or None


def check_exposure(settings: ServeSettings) -> None:
    """Off loopback, every request must carry the token: refuse to start without one."""
    if not is_loopback(settings.host) and not settings.token:
        raise ServeError(f"--host {settings.host} is reachable from other machines: give a token with --token-file "
                         f"or ${TOKEN_ENV} (or serve on 127.0.0.1)")
