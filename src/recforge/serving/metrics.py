"""Prometheus metrics of one app: in its own CollectorRegistry, or aggregated across workers.

Exposed at ``/metrics``: requests and errors by route template and status, a latency
histogram, requests in flight, events stored and refused as duplicates, recommendation lists
served and fallbacks by kind, event-store errors, readiness, model reloads, live worker
processes, the served model's name/version as an info metric, and when the served model was
created and loaded (for its age). The alert rules in ``deploy/prometheus/alerts.yml`` and the
dashboard in ``deploy/grafana/recforge.json`` use exactly these names.

One process (tests, ``recforge serve`` with one worker): every app keeps its counts in its own
registry, no process globals. Several workers (``recforge serve --workers N``): the serve
command creates a fresh directory per launch and sets ``PROMETHEUS_MULTIPROC_DIR`` before the
workers start, so prometheus_client keeps every worker's values in memory-mapped files there;
each worker's ``/metrics`` then reads all of them (`MultiProcessCollector`) and reports totals
across workers: counters and histograms summed, requests in flight and ``recforge_workers``
summed over live workers, the model info as the maximum over live workers (after a reload the
previous version stays listed with value 0). A worker killed without shutting down leaves its
gauges counted until the launch ends; its counts are kept, as totals should be.
"""

from __future__ import annotations

import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from recforge.errors import ConfigError

#: latency buckets in seconds, from sub-millisecond cache hits to multi-second batches
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: the environment variable prometheus_client reads, at import, to share values between processes
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """The metric families of one service instance.

    `multiprocess_dir`: None for per-app counts; the launch's ``PROMETHEUS_MULTIPROC_DIR`` to
    report totals across the worker processes writing there (ConfigError if prometheus_client
    was imported without that variable set, since it would not share values).
    """

    def __init__(self, multiprocess_dir: str | Path | None = None) -> None:
        self.multiprocess_dir = str(multiprocess_dir) if multiprocess_dir is not None else None
        if self.multiprocess_dir is not None and values.ValueClass is values.MutexValue:
            raise ConfigError(f"metrics across workers need {MULTIPROC_ENV} set before prometheus_client "
                              "is imported (`recforge serve --workers N` sets it)")
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("recforge_http_requests", "HTTP requests handled",
                                ["method", "route", "status"], registry=r)
        self.errors = Counter("recforge_http_errors", "HTTP responses with status >= 400",
                              ["route", "status"], registry=r)
        self.latency = Histogram("recforge_http_request_duration_seconds",
                                 "Time from request start to response start",
                                 ["method", "route"], buckets=_BUCKETS, registry=r)
        self.in_flight = Gauge("recforge_http_requests_in_flight", "Requests being handled", registry=r,
                               multiprocess_mode="livesum")
        self.events_stored = Counter("recforge_events_stored", "Events durably stored", registry=r)
        self.events_duplicate = Counter("recforge_events_duplicate",
                                        "Events refused as duplicates (idempotency key seen)", registry=r)
        self.fallbacks = Counter("recforge_recommendation_fallbacks",
                                 "Recommendation lists for users unknown to the model, by kind "
                                 "(features, fold_in, popularity)", ["kind"], registry=r)
        self.recommendation_lists = Counter("recforge_recommendation_lists",
                                            "Recommendation lists served (users and sessions)", registry=r)
        self.store_errors = Counter("recforge_store_errors",
                                    "Event-store operations that failed (database unreachable or refusing), "
                                    "by where: a route, readyz or sync (the reload poll)", ["operation"],
                                    registry=r)
        self.ready = Gauge("recforge_ready", "1 when the worker has a model and its event store answered at "
                           "the last check (readyz or the reload poll), else 0; the minimum across workers",
                           registry=r, multiprocess_mode="livemin")
        self.model_created = Gauge("recforge_model_created_timestamp_seconds",
                                   "When the served artifact was trained (Unix time; meta.json 'created'); "
                                   "the oldest across workers", registry=r, multiprocess_mode="livemin")
        self.model_loaded = Gauge("recforge_model_loaded_timestamp_seconds",
                                  "When the worker loaded the served model (Unix time); the oldest across workers",
                                  registry=r, multiprocess_mode="livemin")
        self.reloads = Counter("recforge_model_reloads", "Model reload attempts", ["result"], registry=r)
        self.workers = Gauge("recforge_workers", "Worker processes serving (summed across workers)",
                             registry=r, multiprocess_mode="livesum")
        self.model_info = Gauge("recforge_model_info", "The model being served (value is 1)",
                                ["name", "version", "fingerprint", "created"], registry=r,
                                multiprocess_mode="livemax")
        self.workers.set(1)
        self.ready.set(1)
        self._model_labels: dict[str, str] | None = None
        if self.multiprocess_dir is None:
            self._exposition = self.registry
        else:
            self._exposition = CollectorRegistry()
            MultiProcessCollector(self._exposition, path=self.multiprocess_dir)

    def set_model(self, info: dict[str, Any], loaded_at: float | None = None,
                  created_fallback: float | None = None) -> None:
        """Mark the served model; the previous one drops out (per app) or to 0 (across workers).

        `loaded_at`: when it was loaded (default now); `created_fallback`: its creation time
        when meta.json has no parsable 'created' (e.g. the file's modification time).
        """
        self.model_loaded.set(time.time() if loaded_at is None else loaded_at)
        created = created_timestamp(info.get("created"))
        if created is None:
            created = created_fallback if created_fallback is not None else time.time()
        self.model_created.set(created)
        labels = {key: str(info.get(key, "")) for key in ("name", "version", "fingerprint", "created")}
        if self.multiprocess_dir is None:
            self.model_info.clear()
        elif self._model_labels is not None:
            self.model_info.labels(**self._model_labels).set(0)  # shared files cannot forget a series
        self.model_info.labels(**labels).set(1)
        self._model_labels = labels

    def render(self) -> bytes:
        """The text exposition: this app's registry, or the totals of every worker."""
        return generate_latest(self._exposition)

    def close(self) -> None:
        """At shutdown: this worker's live gauges stop counting in the totals."""
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)


def created_timestamp(created: Any) -> float | None:
    """Unix time of an artifact's ISO-8601 'created' stamp (UTC when it has no zone); None if unparsable."""
    if not isinstance(created, str) or not created:
        return None
    try:
        stamp = datetime.fromisoformat(created)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    value = stamp.timestamp()
    return value if math.isfinite(value) else None


class MetricsMiddleware:
    """Pure ASGI middleware timing each HTTP request, labelled by its route template."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_holder = {"status": 500}
        m = self.metrics

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = int(message["status"])
                _observe(m, scope, status_holder["status"], time.perf_counter() - start)
                status_holder["observed"] = 1
            await send(message)

        m.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            m.in_flight.dec()
            if "observed" not in status_holder:
                _observe(m, scope, 500, time.perf_counter() - start)


def _observe(m: ServiceMetrics, scope: dict[str, Any], status: int, seconds: float) -> None:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None) or "<unmatched>"
    method = scope.get("method", "")
    m.requests.labels(method=method, route=path, status=str(status)).inc()
    m.latency.labels(method=method, route=path).observe(seconds)
    if status >= 400:
        m.errors.labels(route=path, status=str(status)).inc()
