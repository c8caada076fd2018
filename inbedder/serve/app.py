"""The FastAPI application: /health, /indexes, /search, /clusters/{question}, and the page at /."""

from __future__ import annotations

import hmac
import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from inbedder.serve.batcher import MicroBatcher
from inbedder.serve.indexes import IndexSet
from inbedder.serve.settings import ServeSettings

if TYPE_CHECKING:
    from inbedder.engine import InBedder

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("templates") / "page.html"


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    question: str
    texts: list[str]
    k: int = 10


def _reason(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def _validation_reason(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return "the body is not valid JSON"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return f"{where}: {first.get('msg', 'invalid')}"


def create_app(settings: ServeSettings, engine: InBedder, indexes: IndexSet) -> FastAPI:
    batcher = MicroBatcher(engine, settings.batch_window_ms, settings.max_batch, settings.batch_max_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        indexes.watch(settings.reload_every_s)
        yield
        indexes.close()
        await batcher.stop()

    app = FastAPI(title="inbedder serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher, app.state.indexes = batcher, indexes

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if settings.token:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() \
                or request.query_params.get("token", "")
            if not hmac.compare_digest(given.encode(), settings.token.encode()):
                return _reason(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError):
        return _reason(422, _validation_reason(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        return _reason(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception):
        log.exception("request failed")
        return _reason(500, f"internal error ({type(exc).__name__}); the server log has the details")

    @app.get("/health")
    async def health():
        return {"status": "ok", "indexes": len(indexes.current()), "batches": batcher.stats.batches,
                "texts": batcher.stats.texts, "largest_batch": batcher.stats.largest, "swaps": indexes.swaps}

    @app.get("/indexes")
    async def list_indexes():
        return {"indexes": [s.describe() for s in indexes.current().values()]}

    @app.post("/search")
    async def search(request: Request):
        body = await request.body()
        try:
            payload = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            return _reason(400, "the body is not UTF-8")
        except ValueError:
            return _reason(400, "the body is not valid JSON")
        try:
            req = SearchRequest.model_validate(payload)
        except ValueError as exc:
            errors = getattr(exc, "errors", lambda: [])()
            first = errors[0] if errors else {}
            where = ".".join(str(p) for p in first.get("loc", ())) or "body"
            return _reason(422, f"{where}: {first.get('msg', 'invalid')}")
        served = indexes.current().get(req.question)  # one object for the whole request (hot swap safe)
        if served is None:
            return _reason(404, f"unknown question {req.question!r}; served: {', '.join(sorted(indexes.current()))}")
        if not req.texts:
            return _reason(422, "texts is empty: give at least one text")
        if len(req.texts) > settings.max_texts:
            return _reason(422, f"{len(req.texts)} texts: at most {settings.max_texts} per request")
        for i, text in enumerate(req.texts):
            if not text.strip():
                return _reason(422, f"texts.{i} is empty")
            if len(text) > settings.max_chars:
                return _reason(422, f"texts.{i} has {len(text)} characters: at most {settings.max_chars}")
        if not 1 <= req.k <= settings.max_k:
            return _reason(422, f"k must be between 1 and {settings.max_k}, got {req.k}")
        answer = await batcher.search(served, req.texts, req.k)
        return {"question": req.question, "question_text": served.manifest.instruction_text,
                "table_version": served.manifest.source_version, "text_column": served.text_column,
                "results": [{"text": t, "hits": hits} for t, hits in zip(req.texts, answer.hits)],
                "timing_ms": {"encode": answer.encode_ms, "search": answer.search_ms}}

    @app.get("/clusters/{question}")
    async def clusters(question: str):
        served = indexes.current().get(question)
        if served is None:
            return _reason(404, f"unknown question {question!r}")
        report = served.clusters or {}
        return {"question": question, "question_text": served.manifest.instruction_text,
                "clusters": [{k: c.get(k) for k in ("cluster", "size", "answer_words", "nearest", "sample_answers")}
                             for c in report.get("clusters", [])],
                "map": served.cluster_map(settings.map_points)}

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(PAGE.read_text())

    return app


def serve(settings: ServeSettings) -> None:
    """Load the model and indexes once, then run uvicorn until stopped."""
    import uvicorn

    from inbedder.engine import InBedder
    from inbedder.serve.indexes import check_index_folder, read_clusters
    from inbedder.serve.settings import check_exposure

    check_exposure(settings)
    for folder in settings.indexes:
        check_index_folder(folder)
    clusters = read_clusters(settings.clusters)
    engine = InBedder.from_pretrained(settings.model, adapter=settings.adapter, dtype=settings.dtype,
                                      device=settings.device, num_threads=settings.threads)
    indexes = IndexSet(settings.indexes, engine, clusters)
    app = create_app(settings, engine, indexes)
    log.info("serving %d index(es) on http://%s:%d", len(indexes.current()), settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
