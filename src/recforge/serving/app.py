"""The recommendation service: `create_app(model_dir, ...) -> FastAPI`, no process globals.

Everything a request needs (live model, event store, keys, metrics) is built here and
captured by the route closures, so two apps in one process never share state. Endpoints
are plain ``def`` functions: FastAPI runs them in its thread pool, so vectorized numpy
scoring never blocks the event loop, and the model is shared read-only between threads.

Errors are always one JSON line ``{"detail": "..."}``: 401 missing or wrong key, 403 wrong
scope, 404 unknown ID, 413 body too large, 422 invalid input (malformed JSON included, as
FastAPI's validation errors, with an ``errors`` list), 503 store unavailable (with
``Retry-After``). A 500 only for a bug, without a traceback in the answer. Each status is
declared in the OpenAPI document of the routes that can give it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException

from recforge import __version__
from recforge.errors import DataError, RecforgeError, UnknownIdError
from recforge.models.capabilities import Capability
from recforge.serving import schemas as s
from recforge.serving.auth import HEADER, KeyEntry, KeyRing
from recforge.serving.limits import MAX_BODY_BYTES, BodySizeLimitMiddleware
from recforge.serving.metrics import CONTENT_TYPE, MetricsMiddleware, ServiceMetrics
from recforge.serving.state import LoadedModel, ModelHolder, Ranked, ReloadSync, Runtime, finite
from recforge.serving.store import Event, EventStore, StoreError, default_store_url

log = logging.getLogger("recforge.serving")
WEB_DIR = Path(__file__).resolve().parent / "web"
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _IdConvertor(Convertor[str]):
    """A path segment holding any ID: "/" (sent as %2F) and every other character included, so
    that validation, not routing, judges it (a newline is a 422, not a 404)."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("id", _IdConvertor())
#: IDs in paths are any ID: one with "/" travels as %2F (``{user_id:id}`` takes it whole); the
#: only ambiguity left is an item ID ending in "/similar", which names the similar-items route
UserId = Annotated[str, PathParam(min_length=1, max_length=256, pattern=s.ID_PATTERN,
                                  description="User ID (a string without control characters)")]
ItemId = Annotated[str, PathParam(min_length=1, max_length=256, pattern=s.ID_PATTERN,
                                  description="Item ID (a string without control characters)")]
#: OpenAPI entries of the errors a route can answer beyond 401/403/422
_Responses = dict[int | str, dict[str, Any]]
_E404: _Responses = {404: {"model": s.ErrorOut, "description": "Unknown ID"}}
_E413: _Responses = {413: {"model": s.ErrorOut, "description": "Request body too large"}}
_E503: _Responses = {503: {"model": s.ErrorOut,
                           "description": "Event store unavailable; retry after Retry-After seconds"}}
KQuery = Annotated[int, Query(ge=1, le=s.MAX_K, description=f"Number of items, 1..{s.MAX_K}")]


@dataclass
class Service:
    """What the routes of one app share: built by `create_app`, read-only afterwards."""

    holder: ModelHolder
    store: EventStore
    keys: KeyRing
    metrics: ServiceMetrics
    public_metrics: bool
    sync: ReloadSync
    propagation_timeout: float


def create_app(
    model_dir: str | Path,
    store_url: str | None = None,
    keys_file: str | Path | None = None,
    public_metrics: bool = False,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    table_prefix: str = "",
    launch_id: str | None = None,
    sync_interval: float = 1.0,
    metrics_dir: str | None = None,
    runtime: Runtime = "torch",
    workers: int = 1,
    propagation_timeout: float = 30.0,
) -> FastAPI:
    """Build the service for the artifact in `model_dir`.

    `store_url`: any SQLAlchemy URL; default ``sqlite:///<model_dir>-events.db`` beside the
    artifact. `keys_file`: API keys (see `recforge keys create`); None serves without keys,
    which `recforge serve` allows on a loopback address only. Raises ArtifactError,
    StoreError or ConfigError (one line each) when something cannot be opened.

    Apps sharing a store (same URL and `table_prefix`) are one service: a reload on any of
    them reaches the others within `sync_interval` seconds. `launch_id` is shared by the
    workers of one `recforge serve` launch, so a restarted worker serves the reloaded model;
    `workers` is how many there are: a reload answers ``propagated: true`` once all of them
    serve the new model, or false after `propagation_timeout` seconds.
    `metrics_dir`: the launch's ``PROMETHEUS_MULTIPROC_DIR``, so that ``/metrics`` reports
    totals across its workers (see `recforge.serving.metrics`); None keeps per-app counts.
    `runtime`: ``onnx`` scores a torch model through onnxruntime (`LoadedModel.load`), also
    after reloads.
    """
    loaded = LoadedModel.load(model_dir, runtime)
    keys = KeyRing(keys_file)
    metrics = ServiceMetrics(metrics_dir)
    store = EventStore.open(store_url or default_store_url(model_dir), table_prefix=table_prefix)
    _set_model_metrics(metrics, loaded)
    holder = ModelHolder(loaded)

    def on_swap(new: LoadedModel | None) -> None:
        metrics.reloads.labels(result="ok" if new is not None else "failed").inc()
        if new is not None:
            _set_model_metrics(metrics, new)

    def on_poll(error: Exception | None) -> None:
        metrics.ready.set(0 if error is not None else 1)
        if isinstance(error, StoreError):
            metrics.store_errors.labels(operation="sync").inc()

    sync = ReloadSync(holder, store, launch_id or uuid.uuid4().hex, sync_interval, on_swap,
                      workers=workers, on_poll=on_poll)
    svc = Service(holder, store, keys, metrics, public_metrics, sync, propagation_timeout)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sync.start()
        try:
            yield
        finally:
            sync.stop()
            store.close()
            metrics.close()

    app = FastAPI(
        dependencies=[Depends(_known_query_parameters)],
        title="recforge",
        version=__version__,
        summary="Recommendations, similar items, scores and live events from a recforge model.",
        description=("Send the API key in the `X-API-Key` header. Read keys can use every "
                     "`/v1` endpoint except `/v1/admin/*`, which needs an admin key."),
        lifespan=lifespan,
        responses={401: {"model": s.ErrorOut, "description": "Missing or invalid API key"},
                   403: {"model": s.ErrorOut, "description": "The key's scope does not allow this"},
                   422: {"model": s.ErrorOut, "description": "Invalid input, malformed JSON included"}},
    )
    app.state.service = svc
    _install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    read = _require(keys, "read")
    admin = _require(keys, "admin")
    _ops_routes(app, svc, read)
    _read_routes(app, svc, read)
    _admin_routes(app, svc, admin)
    _web_routes(app)
    return app


# ---------------------------------------------------------------------- auth
_api_key = APIKeyHeader(name=HEADER, auto_error=False, description="API key (`recforge keys create`)")


def _require(keys: KeyRing, scope: str) -> Any:
    """Dependency: the caller's key entry, or 401 (no/wrong key) / 403 (scope too small)."""

    def dependency(key: Annotated[str | None, Security(_api_key)] = None) -> KeyEntry:
        if keys.open:
            return keys.identify(None)  # type: ignore[return-value]
        if not key:
            raise HTTPException(401, f"missing API key: send it in the {HEADER} header",
                                headers={"WWW-Authenticate": "APIKey"})
        entry = keys.identify(key)
        if entry is None:
            raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "APIKey"})
        if not entry.allows(scope):
            raise HTTPException(403, f"key {entry.name!r} has scope {entry.scope!r}; "
                                     f"this needs {scope!r}")
        return entry

    return Depends(dependency)


# ---------------------------------------------------------------------- query parameters
async def _known_query_parameters(request: Request) -> None:
    """422 for a query parameter the route does not declare: a misspelt ``?kk=5`` is refused,
    as unknown body fields are, rather than silently ignored.

    The names come from the OpenAPI document, the same one clients read.
    """
    if not request.query_params:
        return
    route = request.scope.get("route")
    if not getattr(route, "include_in_schema", False):
        return
    allowed = _query_names(request.app).get(((request.method if request.method != "HEAD" else "GET"),
                                              getattr(route, "path_format", "")))
    if allowed is None:
        return
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        takes = f"this endpoint takes {', '.join(sorted(allowed))}" if allowed else "this endpoint takes none"
        raise RequestValidationError([{"type": "extra_forbidden", "loc": ("query", name),
                                       "msg": f"unknown query parameter ({takes})", "input": None}
                                      for name in unknown[:10]])


def _query_names(app: FastAPI) -> dict[tuple[str, str], frozenset[str]]:
    """(method, path template) → the query parameter names the OpenAPI document declares."""
    cached = getattr(app.state, "query_names", None)
    if cached is None:
        cached = {}
        for path, methods in app.openapi().get("paths", {}).items():
            for method, operation in methods.items():
                names = frozenset(p["name"] for p in operation.get("parameters", []) if p.get("in") == "query")
                cached[(method.upper(), path)] = names
        app.state.query_names = cached
    return cached


# ---------------------------------------------------------------------- errors
def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        for err in errors:
            if err.get("type") == "json_invalid":
                where = err.get("ctx", {}).get("error", "")
                detail = f"malformed JSON body{': ' + str(where) if where else ''}"
                return JSONResponse({"detail": detail, "errors": [
                    {"loc": ["body"], "msg": detail, "type": "json_invalid"}]}, status_code=422)
        parts = []
        for err in errors[:10]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "path", "query")) or "body"
            msg = err.get("msg", "invalid")
            if err.get("type") == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == s.ID_PATTERN:
                msg = "must not contain control characters (U+0000 to U+001F, U+007F)"
            elif loc == "body" and err.get("type") == "missing":
                msg = "a JSON object is required"
            elif loc == "body" and err.get("type") in ("model_attributes_type", "dict_type"):
                msg = "must be a JSON object sent with Content-Type: application/json"
            parts.append(f"{loc}: {msg}")
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        detail = "; ".join(parts) + more
        slim = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                for e in errors[:50]]
        return JSONResponse({"detail": detail, "errors": slim}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":  # FastAPI's
            detail = "malformed JSON body: not UTF-8 JSON text"
            return JSONResponse({"detail": detail, "errors": [
                {"loc": ["body"], "msg": detail, "type": "json_invalid"}]}, status_code=422)
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RecforgeError)
    async def _recforge(request: Request, exc: RecforgeError) -> JSONResponse:
        headers = None
        if isinstance(exc, UnknownIdError):
            status = 404
        elif isinstance(exc, StoreError):
            status, headers = 503, {"Retry-After": "1"}
            route = getattr(request.scope.get("route"), "path_format", None) or "<unmatched>"
            request.app.state.service.metrics.store_errors.labels(operation=route).inc()
        elif isinstance(exc, DataError | ValueError):
            status = 422
        else:
            status = 503
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (logged by the server)"}, status_code=500)


def _set_model_metrics(metrics: ServiceMetrics, lm: LoadedModel) -> None:
    """The served model's info, creation and load times (the artifact's mtime when meta.json
    has no parsable creation time)."""
    try:
        written = (lm.directory / "meta.json").stat().st_mtime
    except OSError:
        written = None
    metrics.set_model(lm.info, loaded_at=lm.loaded_at, created_fallback=written)


_ABS_PATH = re.compile(r"(?<![\w.~-])/[^\s'\":,;()]+")


def _public_error(message: str, given: str | None, directories: list[Path]) -> str:
    """A reload error for the caller, without the server's absolute paths.

    The artifact's resolved path becomes the path as the caller gave it (or the served
    directory's name when reloading in place); any other absolute path becomes ``…``.
    """
    for directory in directories:
        forms = {str(directory.absolute())}
        with contextlib.suppress(OSError, RuntimeError):  # a symlink loop
            forms.add(str(directory.resolve()))
        for form in sorted(forms, key=len, reverse=True):
            if form != "/":
                message = message.replace(form, given if given is not None else directory.name)
    return _ABS_PATH.sub(lambda m: m.group(0) if given is not None and m.group(0).startswith(given) else "…",
                         message)


# ---------------------------------------------------------------------- response helpers
def _model(lm: LoadedModel) -> s.ModelInfo:
    return s.ModelInfo(**lm.info)


def _rec_items(lm: LoadedModel, ranked: Ranked, explanations: list[dict[str, Any]] | None) -> list[s.RecItem]:
    ids = lm.model.item_map_.ids
    return [
        s.RecItem(item_id=str(ids[i]), score=finite(sc), rank=r + 1, title=lm.title(int(i)),
                  explanation=s.Explanation(**explanations[r]) if explanations else None)
        for r, (i, sc) in enumerate(zip(ranked.items, ranked.scores, strict=True))
    ]


def _events(store: EventStore, lm: LoadedModel, user_ids: list[str], all_users: bool) -> dict[str, list[str]]:
    """Stored event items per user: of every user when `all_users` or for a sequence model (whose
    known users' events continue their sequence), else of the unknown ones only (they need them
    for fold-in)."""
    every = all_users or lm.model.supports(Capability.SEQUENCES)
    wanted = user_ids if every else [u for u in user_ids if lm.user_idx(u) < 0]
    return store.items_for_users(wanted) if wanted else {}


def _explain(lm: LoadedModel, user_id: str, ranked: Ranked, events: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The model's own explanation for a known user; similarity to the history otherwise.

    A sequence model's own `explain` reads the training sequence only, so a known user whose
    stored events continued it is explained by similarity to the history and the events.
    """
    moved = lm.model.supports(Capability.SEQUENCES) and bool(events.get(user_id))
    if ranked.fallback is None and not moved:
        own = lm.explain_known(user_id, ranked)
        if own is not None:
            return own
    return lm.explain(ranked, _user_history(lm, user_id, events.get(user_id, [])), "similar_to_history")


def _user_history(lm: LoadedModel, user_id: str, event_items: list[str]) -> np.ndarray:
    """Known item indices the user interacted with: training ∪ stored events."""
    uidx = lm.user_idx(user_id)
    train = lm.train_history(uidx)[0] if uidx >= 0 else np.empty(0, np.int64)
    return np.union1d(train, lm.known_items(event_items)).astype(np.int64)


def _known_item(lm: LoadedModel, item_id: str) -> int:
    idx = lm.item_idx(item_id)
    if idx < 0:
        raise UnknownIdError(f"unknown item: {item_id}")
    return idx


# ---------------------------------------------------------------------- routes
def _ops_routes(app: FastAPI, svc: Service, read: Any) -> None:
    @app.get("/healthz", response_model=s.Status, tags=["operations"],
             summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=s.Status, tags=["operations"], responses=_E503,
             summary="Readiness: a model is loaded and the event store answers")
    def readyz() -> Any:
        try:
            svc.store.ping()
        except StoreError:
            svc.metrics.ready.set(0)
            svc.metrics.store_errors.labels(operation="readyz").inc()
            return JSONResponse({"detail": "not ready"}, status_code=503, headers={"Retry-After": "1"})
        svc.metrics.ready.set(1)
        return {"status": "ready"}

    metrics_deps = [] if svc.public_metrics else [read]

    @app.get("/metrics", tags=["operations"], dependencies=metrics_deps,
             response_class=Response, summary="Prometheus metrics (text exposition format)")
    def metrics() -> Response:
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE)


def _read_routes(app: FastAPI, svc: Service, read: Any) -> None:
    store, holder, metrics = svc.store, svc.holder, svc.metrics

    @app.get("/v1/model", response_model=s.ModelInfo, dependencies=[read], tags=["model"],
             summary="The model being served")
    def model_info() -> Any:
        return _model(holder.current)

    @app.get("/v1/users", response_model=s.Users, dependencies=[read], tags=["users"],
             summary="User IDs the model was trained on, in index order")
    def users(offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Any:
        ids = holder.current.model.user_map_.ids
        return {"users": [str(u) for u in ids[offset:offset + limit]], "total": len(ids),
                "offset": offset, "limit": limit}

    @app.get("/v1/users/{user_id:id}/recommendations", response_model=s.Recommendations,
             dependencies=[read], tags=["recommendations"], responses=_E503,
             summary="Top-k items for a user; unknown users get their events folded in, or popularity")
    def user_recommendations(
        user_id: UserId,
        k: KQuery = 10,
        exclude_seen: Annotated[bool, Query(description="Leave out training and event items")] = True,
        explain: Annotated[bool, Query(description="Say why: the history items or features behind each")] = False,
    ) -> Any:
        lm = holder.current
        events = _events(store, lm, [user_id], exclude_seen or explain)
        ranked = lm.recommend([user_id], k, exclude_seen, events)[0]
        metrics.recommendation_lists.inc()
        if ranked.fallback:
            metrics.fallbacks.labels(kind=ranked.fallback).inc()
        expl = _explain(lm, user_id, ranked, events) if explain else None
        return {"user_id": user_id, "items": _rec_items(lm, ranked, expl),
                "fallback": ranked.fallback, "model": _model(lm)}

    @app.post("/v1/recommendations", response_model=s.BatchRecommendations, dependencies=[read],
              tags=["recommendations"], responses={**_E413, **_E503},
              summary="A batch of users, or an anonymous session of items (folded into the model)")
    def batch_recommendations(body: s.RecommendationsIn) -> Any:
        lm = holder.current
        lm.check_features(body.features)
        if "items" in body.model_fields_set:
            idx = lm.model.item_map_.lookup(body.items)
            unknown = [i for i, j in zip(body.items, idx, strict=True) if j < 0]
            session = idx[idx >= 0]  # in the given order: a sequence model reads it as one
            ranked = lm.session(session, body.k, body.features)
            metrics.recommendation_lists.inc()
            if ranked.fallback:
                metrics.fallbacks.labels(kind=ranked.fallback).inc()
            expl = lm.explain(ranked, np.unique(session), "similar_to_session") if body.explain else None
            result = {"user_id": None, "items": _rec_items(lm, ranked, expl), "fallback": ranked.fallback}
            return {"results": [result], "unknown_items": unknown, "model": _model(lm)}
        user_ids = body.user_ids
        events = _events(store, lm, user_ids, body.exclude_seen or body.explain)
        results = []
        metrics.recommendation_lists.inc(len(user_ids))
        for user_id, ranked in zip(user_ids, lm.recommend(user_ids, body.k, body.exclude_seen, events,
                                                          body.features), strict=True):
            if ranked.fallback:
                metrics.fallbacks.labels(kind=ranked.fallback).inc()
            expl = _explain(lm, user_id, ranked, events) if body.explain else None
            results.append({"user_id": user_id, "items": _rec_items(lm, ranked, expl),
                            "fallback": ranked.fallback})
        return {"results": results, "unknown_items": [], "model": _model(lm)}

    @app.get("/v1/users/{user_id:id}/history", response_model=s.History, dependencies=[read],
             tags=["users"], responses=_E503, summary="A user's training items (with ratings) and stored events")
    def history(user_id: UserId, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Any:
        lm = holder.current
        ids = lm.model.item_map_.ids
        items: list[dict[str, Any]] = []
        for ev in store.user_events(user_id, limit):
            idx = lm.item_idx(ev["item_id"])
            items.append({"item_id": ev["item_id"], "title": lm.title(idx), "rating": ev["rating"],
                          "source": "event", "type": ev["type"], "timestamp": ev["timestamp"]})
        uidx = lm.user_idx(user_id)
        if uidx >= 0 and len(items) < limit:
            train, ratings = lm.train_history(uidx)
            order = np.argsort(-ratings, kind="stable") if ratings is not None else np.arange(len(train))
            for j in order[: limit - len(items)]:
                items.append({"item_id": str(ids[train[j]]), "title": lm.title(int(train[j])),
                              "rating": None if ratings is None else finite(ratings[j]),
                              "source": "training"})
        return {"user_id": user_id, "known": uidx >= 0, "items": items}

    # before /v1/items/{item_id:id}, which would take ".../similar" as part of the ID
    @app.get("/v1/items/{item_id:id}/similar", response_model=s.Similar, dependencies=[read],
             tags=["items"], responses=_E404, summary="The k most similar items")
    def similar(item_id: ItemId, k: KQuery = 10) -> Any:
        lm = holder.current
        idx = _known_item(lm, item_id)
        ranked = lm.similar(idx, k)
        ids = lm.model.item_map_.ids
        items = [{"item_id": str(ids[i]), "score": finite(sc), "rank": r + 1, "title": lm.title(int(i))}
                 for r, (i, sc) in enumerate(zip(ranked.items, ranked.scores, strict=True))]
        return {"item_id": item_id, "title": lm.title(idx), "items": items, "model": _model(lm)}

    @app.get("/v1/items/{item_id:id}", response_model=s.Item, dependencies=[read], tags=["items"],
             responses=_E404, summary="Item metadata (title, features)")
    def item(item_id: ItemId) -> Any:
        lm = holder.current
        idx = _known_item(lm, item_id)
        features: dict[str, Any] = {}
        frame = lm.model.item_features_
        if frame is not None and item_id in frame.index:
            row = frame.loc[item_id]
            if getattr(row, "ndim", 1) == 2:
                row = row.iloc[0]
            features = {str(c): _json_value(v) for c, v in row.items()}
        return {"item_id": item_id, "title": lm.title(idx),
                "popularity": int(lm.model.item_popularity_[idx]), "features": features}

    @app.post("/v1/score", response_model=s.Scores, dependencies=[read], tags=["recommendations"],
              responses=_E413, summary="Scores of (user, item) pairs; unknown IDs get the model's cold-start value")
    def score(body: s.ScoreIn) -> Any:
        lm = holder.current
        users = [p.user_id for p in body.pairs]
        items = [p.item_id for p in body.pairs]
        uidx = lm.model.user_map_.lookup(users)
        iidx = lm.model.item_map_.lookup(items)
        values = lm.model.predict_idx(uidx, iidx)
        return {"scores": [
            {"user_id": u, "item_id": i, "score": finite(v), "known_user": bool(a >= 0),
             "known_item": bool(b >= 0)}
            for u, i, v, a, b in zip(users, items, values, uidx, iidx, strict=True)
        ], "model": _model(lm)}

    @app.post("/v1/events", response_model=s.EventsOut, dependencies=[read], tags=["events"],
              responses={**_E413, **_E503},
              summary="Append interactions: durable before the answer, idempotent by key")
    def events(body: s.EventsIn) -> Any:
        batch = [Event(user_id=e.user_id, item_id=e.item_id, rating=e.rating, type=e.type,
                       timestamp=e.timestamp, idempotency_key=e.idempotency_key) for e in body.events]
        status = store.add_events(batch)
        stored = sum(status)
        metrics.events_stored.inc(stored)
        metrics.events_duplicate.inc(len(status) - stored)
        return {"stored": stored, "duplicates": len(status) - stored, "results": [
            {"idempotency_key": e.idempotency_key, "status": "stored" if ok else "duplicate"}
            for e, ok in zip(batch, status, strict=True)
        ]}


def _admin_routes(app: FastAPI, svc: Service, admin: Any) -> None:
    @app.post("/v1/admin/reload", response_model=s.Reloaded, dependencies=[admin], tags=["admin"],
              responses={422: {"model": s.ErrorOut, "description": "The artifact cannot be served; the old "
                                                                   "model stays"}, **_E413},
              summary="Swap to a new artifact; if it fails to load or validate, the old one stays",
              description="The worker that receives the call loads and validates the artifact "
                          "(checksums, finite weights, a trial of every scoring path), swaps, and "
                          "publishes it in the store; the other workers sharing the store follow. "
                          "The answer waits until every worker of this launch serves the new model: "
                          "`propagated` is true then, false if some did not within the timeout.")
    def reload(body: s.ReloadIn | None = None) -> Any:
        current = svc.holder.current
        target = body.model_dir if body is not None else None
        try:
            new, old = svc.holder.reload(target)
        except Exception as exc:  # anything wrong with the new artifact keeps the old model
            svc.metrics.reloads.labels(result="failed").inc()
            msg = str(exc) if isinstance(exc, RecforgeError) else f"{type(exc).__name__}: {exc}"
            msg = msg.splitlines()[0] if msg else type(exc).__name__
            log.warning("reload failed, still serving %s: %s", current.info["version"], msg)
            places = [Path(target)] if target is not None else [current.directory]
            raise HTTPException(422, f"reload failed; still serving model {current.info['name']} "
                                     f"version {current.info['version']}: "
                                     f"{_public_error(msg, target, places)}") from None
        svc.metrics.reloads.labels(result="ok").inc()
        _set_model_metrics(svc.metrics, new)
        log.info("reloaded model %s version %s", new.info["name"], new.info["version"])
        serving = 0
        try:
            generation = svc.sync.publish(new)
            serving = svc.sync.wait_propagated(generation, new.info["version"], svc.propagation_timeout)
        except StoreError as exc:
            log.warning("reloaded here, but could not tell the other workers: %s", exc)
        propagated = serving >= svc.sync.workers
        if not propagated:
            log.warning("reload: %d of %d workers serve version %s", serving, svc.sync.workers,
                        new.info["version"])
        return {"model": _model(new), "previous": _model(old), "propagated": propagated,
                "workers": svc.sync.workers, "serving": serving}


def _web_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")


def _json_value(value: Any) -> Any:
    """A feature value as plain JSON (numpy scalars unwrapped, NaN → None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return finite(value)
    if isinstance(value, str | int | bool) or value is None:
        return value
    return str(value)

