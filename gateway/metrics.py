"""Prometheus metrics: the registry, the `/metrics` view and the hot path's counting functions.

Names follow the OpenTelemetry semantic conventions where one exists, in the Prometheus form of
an OTel name (dots become underscores, the unit is a suffix): `http_server_request_duration_seconds`
(http.server.request.duration), `gen_ai_client_operation_duration_seconds`
(gen_ai.client.operation.duration), `gen_ai_server_time_to_first_token_seconds`
(gen_ai.server.time_to_first_token) and `gen_ai_client_token_usage_total` (gen_ai.client.token.usage,
kept as a counter so `rate()` gives tokens per second by model and project). Gateway-only
series are prefixed `gateway_`.

Several web workers: when PROMETHEUS_MULTIPROC_DIR is set (`make run` sets and empties it before
the workers start), every worker writes its samples to memory-mapped files there and a scrape on
any worker adds up all of them. prometheus_client picks that mode when it is first imported, so
the variable must be in the environment before the process starts, not set later.

The counting functions below sit on the chat hot path (3 ms CPU budget per request): each looks up
a cached labelled child in a dict and observes, a few microseconds. Provider health and Celery
queue depth are read at scrape time instead, by collectors that cost nothing between scrapes.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway import errors

logger = logging.getLogger(__name__)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Seconds. Proxied calls span a few milliseconds (errors, cached answers) to minutes (long
# generations), so the buckets are wider than prometheus_client's web-request defaults.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HTTP_REQUEST_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP requests, by route template, method and status (to the response start for streams).",
    ["http_route", "http_request_method", "http_response_status_code"],
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_DURATION = Histogram(
    "gen_ai_client_operation_duration_seconds",
    "Duration of calls to model providers, by model, provider and outcome.",
    ["gen_ai_operation_name", "gen_ai_request_model", "gen_ai_provider_name", "outcome"],
    buckets=_LATENCY_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "gen_ai_server_time_to_first_token_seconds",
    "Time from sending a request to a provider until its first streamed token arrived.",
    ["gen_ai_request_model", "gen_ai_provider_name"],
    buckets=_TTFT_BUCKETS,
)
TOKEN_USAGE = Counter(
    "gen_ai_client_token_usage",
    "Tokens used, by model, project and token type (input or output).",
    ["gen_ai_request_model", "project_id", "gen_ai_token_type"],
)
STREAMS_IN_FLIGHT = Gauge(
    "gateway_streams_in_flight",
    "Streams being relayed right now (all workers).",
    multiprocess_mode="livesum",
)
RATE_LIMITED = Counter(
    "gateway_rate_limited_requests",
    "Requests refused with 429, by the limit that refused them (requests, tokens, streams).",
    ["limit"],
)

# Labelled children are cached: `.labels()` costs more than the observation itself.
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (id(metric), *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def request_observed(route: str, method: str, status: int, seconds: float) -> None:
    """One HTTP request. `route` is the route template (`/v1/models/{model}`), never the raw path:
    raw paths would give every id its own time series."""
    _child(HTTP_REQUEST_DURATION, route, method, str(status)).observe(seconds)


def upstream_observed(
    model: str, provider: str, seconds: float, time_to_first_token: float | None, outcome: str
) -> None:
    """One call to a provider, when it ended (stream relayed, answer received, or failure)."""
    _child(UPSTREAM_DURATION, "chat", model, provider, outcome).observe(seconds)
    if time_to_first_token is not None:
        _child(TIME_TO_FIRST_TOKEN, model, provider).observe(time_to_first_token)


def tokens_counted(model: str, project_id: str, input_tokens: int, output_tokens: int) -> None:
    if input_tokens:
        _child(TOKEN_USAGE, model, project_id, "input").inc(input_tokens)
    if output_tokens:
        _child(TOKEN_USAGE, model, project_id, "output").inc(output_tokens)


def stream_started() -> None:
    STREAMS_IN_FLIGHT.inc()


def stream_finished() -> None:
    STREAMS_IN_FLIGHT.dec()


def rate_limited(limit: str) -> None:
    _child(RATE_LIMITED, limit).inc()


# --- Scrape-time collectors -------------------------------------------------------------------


class CeleryQueueCollector(Collector):
    """Messages waiting in the Celery broker, read from the broker when scraped."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "gateway_celery_queue_depth", "Messages waiting in the Celery broker queue.", labels=["queue"]
        )
        queue = str(getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery"))
        try:
            depth = _queue_depth(queue)
        except Exception:  # the broker being down must not break the whole scrape
            logger.warning("could not read the Celery queue depth", exc_info=True)
            return
        if depth is not None:
            family.add_metric([queue], depth)
            yield family


def _queue_depth(queue: str) -> int | None:
    url = str(settings.CELERY_BROKER_URL)
    if url.startswith(("redis://", "rediss://", "unix://")):
        client = _broker_client(url)
        # kombu's Redis transport keeps one list per queue and priority step (`celery`,
        # `celery\x06\x163`, ...); plain tasks land in the first.
        names = [queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9))]
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
        return int(sum(pipe.execute()))
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in", ""))
        suffix = f".{queue}.msg"
        return sum(1 for entry in os.scandir(folder) if entry.name.endswith(suffix)) if folder.is_dir() else 0
    return None  # another broker: nothing we know how to count cheaply


@cache
def _broker_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


@cache
def _scrape_registry() -> CollectorRegistry:
    """Collectors that run only when scraped; apps name theirs in settings.METRICS_COLLECTORS."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CeleryQueueCollector())
    for path in settings.METRICS_COLLECTORS:
        registry.register(import_string(path)())
    return registry


def _samples_registry() -> CollectorRegistry:
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def render() -> bytes:
    """The exposition text: every worker's samples, then the scrape-time collectors."""
    return generate_latest(_samples_registry()) + generate_latest(_scrape_registry())


class _PortRegistry(CollectorRegistry):
    """Everything /metrics shows, for the METRICS_PORT exporter thread. That thread lives outside
    Django's request cycle, so it hands back the database connection a collector took."""

    def collect(self) -> Iterator[Metric]:
        try:
            yield from _samples_registry().collect()
            yield from _scrape_registry().collect()
        finally:
            connections.close_all()


def _serve_on_port() -> Any:
    """METRICS_PORT: one worker per machine serves the metrics there, the first to bind the port."""
    if not settings.METRICS_PORT:
        return None
    from prometheus_client import start_http_server

    try:
        server, _ = start_http_server(
            settings.METRICS_PORT, addr=settings.METRICS_ADDR, registry=_PortRegistry()
        )
    except OSError:  # another worker got there first; it serves every worker's samples
        return None
    logger.info("metrics served on their own port", extra={"port": settings.METRICS_PORT})
    return server


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics. Off unless METRICS_ENABLED (an unknown URL then); METRICS_TOKEN, when set,
    is required as `Authorization: Bearer <token>`.

    A sync view on purpose: the scrape reads files and may ask the database (provider health),
    and Django runs it in a thread, off the event loop."""
    if not settings.METRICS_ENABLED:
        return errors.handler404(request)
    if request.method not in ("GET", "HEAD"):
        return errors.json_error(errors.MethodNotAllowed(f"Method {request.method} is not allowed."))
    token = settings.METRICS_TOKEN
    if token:
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
            return errors.json_error(
                errors.AuthenticationError("A valid metrics token is required.", code="invalid_metrics_token")
            )
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)


# --- Process lifetime -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    """Web worker lifetime: the METRICS_PORT exporter, if this worker got the port; when the
    worker exits, its live gauges (streams in flight) stop counting."""
    server = _serve_on_port()
    yield
    if server is not None:
        server.shutdown()
        server.server_close()
    if MULTIPROCESS:
        with contextlib.suppress(Exception):
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
