"""`bertclf serve`'s Prometheus metrics (prometheus-client), served at GET /metrics.

Each app has a registry of its own, so that two servers in one process count apart.
"""

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # no `_created` series: a scrape shows what the server counted

# texts per model call: powers of two up to the largest --max-batch-texts worth merging
TEXT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
SECOND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServeMetrics:
    """What the server counts; names start with `bertclf_`."""

    def __init__(self, about: dict, queued_texts, ready):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "bertclf_requests",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "bertclf_request_seconds",
            "Seconds from a request's arrival to the end of its answer, by route",
            ["route"],
            buckets=SECOND_BUCKETS,
            registry=self.registry,
        )
        self.call_texts = Histogram(
            "bertclf_model_call_texts",
            "Texts in one model call (the batcher merges the requests waiting)",
            buckets=TEXT_BUCKETS,
            registry=self.registry,
        )
        self.call_seconds = Histogram(
            "bertclf_model_call_seconds",
            "Seconds one model call takes",
            buckets=SECOND_BUCKETS,
            registry=self.registry,
        )
        self.refused_requests = Counter(
            "bertclf_refused_requests",
            "Requests refused by a limit, by the limit (its bertclf serve option)",
            ["limit"],
            registry=self.registry,
        )
        self.refused_texts = Counter(
            "bertclf_refused_texts",
            "Texts in requests refused by a limit, by the limit (where the texts were read)",
            ["limit"],
            registry=self.registry,
        )
        queue = Gauge(
            "bertclf_queue_texts",
            "Texts waiting for a model call",
            registry=self.registry,
        )
        queue.set_function(queued_texts)
        readiness = Gauge(
            "bertclf_ready",
            "1 when the model has answered its warm-up and the server is not draining",
            registry=self.registry,
        )
        readiness.set_function(lambda: 1.0 if ready() else 0.0)
        Info("bertclf_model", "The model served", registry=self.registry).info(about)

    def refused(self, limit: str, texts: int) -> None:
        self.refused_requests.labels(limit).inc()
        self.refused_texts.labels(limit).inc(texts)

    def model_call(self, texts: int, seconds: float) -> None:
        self.call_texts.observe(texts)
        self.call_seconds.observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text format Prometheus scrapes, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestMetrics:
    """ASGI middleware, outermost: every request counted by route and status and timed, those
    refused by the other middleware (in-flight limit, API key, Host) included. The route is
    the path's template (`/v2/models/{name}/infer`); a path that names no route is `other`, so
    that a client cannot add series."""

    def __init__(self, app, metrics: ServeMetrics, routes):
        self.app, self.metrics, self.routes = app, metrics, routes

    def route(self, path: str) -> str:
        for route in self.routes:
            if route.path_regex.match(path):
                return route.path
        return "other"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = self.route(scope["path"])
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(time.perf_counter() - started)
