"""Prometheus metrics of one app, in its own CollectorRegistry (no process globals).

Exposed at ``/metrics``: requests and errors by route template and status, a latency
histogram, events stored and refused as duplicates, model reloads, and the served model's
name/version as an info metric. With several uvicorn workers each worker keeps its own
counts; scrape them per worker or aggregate by the ``instance`` label.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: latency buckets in seconds, from sub-millisecond cache hits to multi-second batches
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """The metric families of one service instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("recforge_http_requests", "HTTP requests handled",
                                ["method", "route", "status"], registry=r)
        self.errors = Counter("recforge_http_errors", "HTTP responses with status >= 400",
                              ["route", "status"], registry=r)
        self.latency = Histogram("recforge_http_request_duration_seconds",
                                 "Time from request start to response start",
                                 ["method", "route"], buckets=_BUCKETS, registry=r)
        self.in_flight = Gauge("recforge_http_requests_in_flight", "Requests being handled", registry=r)
        self.events_stored = Counter("recforge_events_stored", "Events durably stored", registry=r)
        self.events_duplicate = Counter("recforge_events_duplicate",
                                        "Events refused as duplicates (idempotency key seen)", registry=r)
        self.fallbacks = Counter("recforge_recommendation_fallbacks",
                                 "Recommendation lists served by a fallback", ["kind"], registry=r)
        self.reloads = Counter("recforge_model_reloads", "Model reload attempts", ["result"], registry=r)
        self.model_info = Gauge("recforge_model_info", "The model being served (value is 1)",
                                ["name", "version", "fingerprint", "created"], registry=r)

    def set_model(self, info: dict[str, Any]) -> None:
        self.model_info.clear()
        self.model_info.labels(name=str(info.get("name", "")), version=str(info.get("version", "")),
                               fingerprint=str(info.get("fingerprint", "")),
                               created=str(info.get("created", ""))).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


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
    path = getattr(route, "path", None) or "<unmatched>"
    method = scope.get("method", "")
    m.requests.labels(method=method, route=path, status=str(status)).inc()
    m.latency.labels(method=method, route=path).observe(seconds)
    if status >= 400:
        m.errors.labels(route=path, status=str(status)).inc()
