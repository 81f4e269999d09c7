"""A typed Python client of the recforge service: `Client` (sync) and `AsyncClient`, on httpx.

One method per endpoint; answers come back as the service's own response models
(`recforge.serving.schemas`, pydantic), so fields are typed and checked::

    from recforge.client import Client

    with Client("http://127.0.0.1:8000", api_key=KEY) as rf:
        for item in rf.recommendations("1", k=10).items:
            print(item.rank, item.item_id, item.title, item.score)
        rf.send_events([{"user_id": "1", "item_id": "50", "rating": 5}])

    async with AsyncClient("http://127.0.0.1:8000", api_key=KEY) as rf:
        similar = await rf.similar("50", k=5)

Retries: a 503 (the event store briefly unavailable) or a failed connection is retried up
to `retries` times, waiting ``backoff · 2^attempt`` seconds (at most `max_backoff`, with
jitter; a ``Retry-After`` header is honoured up to `max_backoff`). Every endpoint is safe
to retry: reads change nothing, and events carry idempotency keys — the client gives each
event without one a fresh key before the first try, so a retried post never stores an
event twice. Any other error status raises `ApiError` (status, the service's one-line
``detail``); a connection still failing after the retries raises httpx's own error.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import quote

import anyio
import httpx
from pydantic import BaseModel

from recforge import __version__
from recforge.errors import RecforgeError
from recforge.serving import schemas as s

__all__ = ["ApiError", "AsyncClient", "Client", "Retry"]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
HEADER = "X-API-Key"
#: events per request: the service's limit
MAX_EVENTS = s.MAX_EVENTS


class ApiError(RecforgeError):
    """The service answered an error status; `detail` is its one-line explanation."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.errors = errors or []


@dataclass(frozen=True)
class Retry:
    """When and how long to wait before trying a request again."""

    retries: int = 3
    backoff: float = 0.1
    max_backoff: float = 2.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before attempt `attempt` + 1, or None when no retry is left."""
        if attempt >= self.retries:
            return None
        wait = min(self.backoff * 2**attempt, self.max_backoff) * random.uniform(0.5, 1.0)
        header = response.headers.get("retry-after") if response is not None else None
        if header is not None:
            with contextlib.suppress(ValueError):  # an HTTP date: keep the backoff
                wait = max(wait, min(float(header), self.max_backoff))
        return wait


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    body: Any = None
    accept: frozenset[int] = field(default_factory=frozenset)  # error statuses `parse` handles


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: model.model_validate_json(response.content)


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        detail = str(body.get("detail", response.reason_phrase))
        errors = body.get("errors") if isinstance(body.get("errors"), list) else None
    except ValueError:
        detail, errors = response.text[:200] or response.reason_phrase, None
    return ApiError(response.status_code, detail, errors)


def _id(value: str) -> str:
    """An ID as one path segment: every reserved character percent-encoded ("a/b" → "a%2Fb"),
    dots too, so that an ID ".." is not taken for a parent-directory step by URL normalization."""
    return quote(value, safe="").replace(".", "%2E")


def _event(event: s.EventIn | Mapping[str, Any]) -> dict[str, Any]:
    """An event as JSON, checked here, with an idempotency key (a fresh one when it has none)."""
    checked = event if isinstance(event, s.EventIn) else s.EventIn.model_validate(dict(event))
    body = checked.model_dump(exclude_none=True)
    body.setdefault("idempotency_key", uuid.uuid4().hex)
    return body


def _merge_events(answers: list[s.EventsOut]) -> s.EventsOut:
    return s.EventsOut(stored=sum(a.stored for a in answers), duplicates=sum(a.duplicates for a in answers),
                       results=[r for a in answers for r in a.results])


def _recommend_body(k: int, exclude_seen: bool, explain: bool, features: Mapping[str, Any] | None,
                    **ids: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {**ids, "k": k, "exclude_seen": exclude_seen, "explain": explain}
    if features is not None:
        body["features"] = dict(features)
    return body


class _Calls:
    """The requests of every endpoint, shared by `Client` and `AsyncClient`."""

    @staticmethod
    def healthz() -> _Call[s.Status]:
        return _Call("GET", "/healthz", _model(s.Status))

    @staticmethod
    def ready() -> _Call[bool]:
        return _Call("GET", "/readyz", lambda r: r.status_code == 200, accept=frozenset({503}))

    @staticmethod
    def metrics() -> _Call[str]:
        return _Call("GET", "/metrics", lambda r: r.text)

    @staticmethod
    def model() -> _Call[s.ModelInfo]:
        return _Call("GET", "/v1/model", _model(s.ModelInfo))

    @staticmethod
    def users(offset: int, limit: int) -> _Call[s.Users]:
        return _Call("GET", "/v1/users", _model(s.Users), params={"offset": offset, "limit": limit})

    @staticmethod
    def recommendations(user_id: str, k: int, exclude_seen: bool, explain: bool) -> _Call[s.Recommendations]:
        params = {"k": k, "exclude_seen": str(exclude_seen).lower(), "explain": str(explain).lower()}
        return _Call("GET", f"/v1/users/{_id(user_id)}/recommendations", _model(s.Recommendations), params=params)

    @staticmethod
    def recommend_users(user_ids: list[str], k: int, exclude_seen: bool, explain: bool,
                        features: Mapping[str, Any] | None) -> _Call[s.BatchRecommendations]:
        return _Call("POST", "/v1/recommendations", _model(s.BatchRecommendations),
                     body=_recommend_body(k, exclude_seen, explain, features, user_ids=user_ids))

    @staticmethod
    def recommend_session(items: list[str], k: int, explain: bool,
                          features: Mapping[str, Any] | None) -> _Call[s.BatchRecommendations]:
        return _Call("POST", "/v1/recommendations", _model(s.BatchRecommendations),
                     body=_recommend_body(k, True, explain, features, items=items))

    @staticmethod
    def history(user_id: str, limit: int) -> _Call[s.History]:
        return _Call("GET", f"/v1/users/{_id(user_id)}/history", _model(s.History), params={"limit": limit})

    @staticmethod
    def item(item_id: str) -> _Call[s.Item]:
        return _Call("GET", f"/v1/items/{_id(item_id)}", _model(s.Item))

    @staticmethod
    def similar(item_id: str, k: int) -> _Call[s.Similar]:
        return _Call("GET", f"/v1/items/{_id(item_id)}/similar", _model(s.Similar), params={"k": k})

    @staticmethod
    def score(pairs: Iterable[tuple[str, str]]) -> _Call[s.Scores]:
        body = {"pairs": [{"user_id": u, "item_id": i} for u, i in pairs]}
        return _Call("POST", "/v1/score", _model(s.Scores), body=body)

    @staticmethod
    def events(batch: list[dict[str, Any]]) -> _Call[s.EventsOut]:
        return _Call("POST", "/v1/events", _model(s.EventsOut), body={"events": batch})

    @staticmethod
    def reload(model_dir: str | None) -> _Call[s.Reloaded]:
        return _Call("POST", "/v1/admin/reload", _model(s.Reloaded),
                     body={"model_dir": model_dir} if model_dir is not None else None)


def _batches(events: Iterable[s.EventIn | Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
    """Keyed events in batches the service accepts (keys made once, before any request)."""
    keyed = [_event(e) for e in events]
    if not keyed:
        raise ValueError("no events to send")
    return [keyed[i:i + MAX_EVENTS] for i in range(0, len(keyed), MAX_EVENTS)]


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": f"recforge-client/{__version__}"}
    if api_key is not None:
        headers[HEADER] = api_key
    return headers


class Client:
    """Synchronous client. `http`: an httpx.Client of your own (e.g. a test client); it is
    left open on `close`. Use it as a context manager, or call `close`."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, *,
                 timeout: float = 10.0, retry: Retry | None = None, http: httpx.Client | None = None) -> None:
        self.retry = retry or Retry()
        self._headers = _headers(api_key)
        self._own = http is None
        self._http = http if http is not None else httpx.Client(base_url=base_url, timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self._http.close()

    def _run(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, call.path, params=call.params, json=call.body,
                                              headers=self._headers)
            except httpx.TransportError:
                wait = self.retry.delay(attempt, None)
                if wait is None:
                    raise
            else:
                if response.status_code < 400 or response.status_code in call.accept:
                    return call.parse(response)
                wait = self.retry.delay(attempt, response) if response.status_code == 503 else None
                if wait is None:
                    raise _error(response)
            time.sleep(wait)
            attempt += 1

    def healthz(self) -> s.Status:
        """Liveness: the process answers."""
        return self._run(_Calls.healthz())

    def ready(self) -> bool:
        """Readiness: True when a model is loaded and the event store answers (no retries)."""
        return self._run(_Calls.ready())

    def metrics(self) -> str:
        """The Prometheus text exposition."""
        return self._run(_Calls.metrics())

    def model(self) -> s.ModelInfo:
        """The model being served."""
        return self._run(_Calls.model())

    def users(self, offset: int = 0, limit: int = 100) -> s.Users:
        """A page of the user IDs the model was trained on."""
        return self._run(_Calls.users(offset, limit))

    def recommendations(self, user_id: str, k: int = 10, *, exclude_seen: bool = True,
                        explain: bool = False) -> s.Recommendations:
        """Top-`k` items for one user (unknown users: fold-in of their events, or popularity)."""
        return self._run(_Calls.recommendations(user_id, k, exclude_seen, explain))

    def recommend_users(self, user_ids: Iterable[str], k: int = 10, *, exclude_seen: bool = True,
                        explain: bool = False, features: Mapping[str, Any] | None = None) -> s.BatchRecommendations:
        """Top-`k` items for each of up to 100 users; `features` rank unknown users of a feature model."""
        return self._run(_Calls.recommend_users(list(user_ids), k, exclude_seen, explain, features))

    def recommend_session(self, items: Iterable[str], k: int = 10, *, explain: bool = False,
                          features: Mapping[str, Any] | None = None) -> s.BatchRecommendations:
        """Top-`k` items for an anonymous session of item IDs (folded into the model)."""
        return self._run(_Calls.recommend_session(list(items), k, explain, features))

    def history(self, user_id: str, limit: int = 100) -> s.History:
        """A user's stored events (newest first) and training items."""
        return self._run(_Calls.history(user_id, limit))

    def item(self, item_id: str) -> s.Item:
        """Item metadata; ApiError 404 for an unknown item."""
        return self._run(_Calls.item(item_id))

    def similar(self, item_id: str, k: int = 10) -> s.Similar:
        """The `k` items most similar to `item_id`."""
        return self._run(_Calls.similar(item_id, k))

    def score(self, pairs: Iterable[tuple[str, str]]) -> s.Scores:
        """Scores of (user ID, item ID) pairs."""
        return self._run(_Calls.score(pairs))

    def send_events(self, events: Iterable[s.EventIn | Mapping[str, Any]]) -> s.EventsOut:
        """Store interactions; each gets an idempotency key if it has none (see `results`), so
        retries never store one twice. More than 1000 go in several requests."""
        return _merge_events([self._run(_Calls.events(batch)) for batch in _batches(events)])

    def send_event(self, user_id: str, item_id: str, *, rating: float | None = None, type: str = "interaction",
                   timestamp: int | None = None, idempotency_key: str | None = None) -> s.EventsOut:
        """Store one interaction (see `send_events`)."""
        return self.send_events([s.EventIn(user_id=user_id, item_id=item_id, rating=rating, type=type,
                                           timestamp=timestamp, idempotency_key=idempotency_key)])

    def reload(self, model_dir: str | None = None) -> s.Reloaded:
        """Serve the artifact in `model_dir` (default: the current one, re-read); needs an admin
        key. ApiError 422 when it cannot be served: the old model stays."""
        return self._run(_Calls.reload(model_dir))


class AsyncClient:
    """Asynchronous client (asyncio or trio); the same methods as `Client`, awaited."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, *,
                 timeout: float = 10.0, retry: Retry | None = None, http: httpx.AsyncClient | None = None) -> None:
        self.retry = retry or Retry()
        self._headers = _headers(api_key)
        self._own = http is None
        self._http = http if http is not None else httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own:
            await self._http.aclose()

    async def _run(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, params=call.params, json=call.body,
                                                    headers=self._headers)
            except httpx.TransportError:
                wait = self.retry.delay(attempt, None)
                if wait is None:
                    raise
            else:
                if response.status_code < 400 or response.status_code in call.accept:
                    return call.parse(response)
                wait = self.retry.delay(attempt, response) if response.status_code == 503 else None
                if wait is None:
                    raise _error(response)
            await anyio.sleep(wait)
            attempt += 1

    async def healthz(self) -> s.Status:
        return await self._run(_Calls.healthz())

    async def ready(self) -> bool:
        return await self._run(_Calls.ready())

    async def metrics(self) -> str:
        return await self._run(_Calls.metrics())

    async def model(self) -> s.ModelInfo:
        return await self._run(_Calls.model())

    async def users(self, offset: int = 0, limit: int = 100) -> s.Users:
        return await self._run(_Calls.users(offset, limit))

    async def recommendations(self, user_id: str, k: int = 10, *, exclude_seen: bool = True,
                              explain: bool = False) -> s.Recommendations:
        return await self._run(_Calls.recommendations(user_id, k, exclude_seen, explain))

    async def recommend_users(self, user_ids: Iterable[str], k: int = 10, *, exclude_seen: bool = True,
                              explain: bool = False,
                              features: Mapping[str, Any] | None = None) -> s.BatchRecommendations:
        return await self._run(_Calls.recommend_users(list(user_ids), k, exclude_seen, explain, features))

    async def recommend_session(self, items: Iterable[str], k: int = 10, *, explain: bool = False,
                                features: Mapping[str, Any] | None = None) -> s.BatchRecommendations:
        return await self._run(_Calls.recommend_session(list(items), k, explain, features))

    async def history(self, user_id: str, limit: int = 100) -> s.History:
        return await self._run(_Calls.history(user_id, limit))

    async def item(self, item_id: str) -> s.Item:
        return await self._run(_Calls.item(item_id))

    async def similar(self, item_id: str, k: int = 10) -> s.Similar:
        return await self._run(_Calls.similar(item_id, k))

    async def score(self, pairs: Iterable[tuple[str, str]]) -> s.Scores:
        return await self._run(_Calls.score(pairs))

    async def send_events(self, events: Iterable[s.EventIn | Mapping[str, Any]]) -> s.EventsOut:
        return _merge_events([await self._run(_Calls.events(batch)) for batch in _batches(events)])

    async def send_event(self, user_id: str, item_id: str, *, rating: float | None = None,
                         type: str = "interaction", timestamp: int | None = None,
                         idempotency_key: str | None = None) -> s.EventsOut:
        return await self.send_events([s.EventIn(user_id=user_id, item_id=item_id, rating=rating, type=type,
                                                 timestamp=timestamp, idempotency_key=idempotency_key)])

    async def reload(self, model_dir: str | None = None) -> s.Reloaded:
        return await self._run(_Calls.reload(model_dir))
