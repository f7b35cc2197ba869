"""/metrics: off by default outside dev, token-protected, counting in one process and summed
across two uvicorn workers (prometheus_client's multi-process mode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import metrics
from gateway.redis import sync_client
from tests.live_server import GatewayProcess, free_port

pytestmark = pytest.mark.django_db


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def value(text: str, name: str, **labels: str) -> float | None:
    found = [
        v for n, lbls, v in samples(text) if n == name and all(lbls.get(k) == w for k, w in labels.items())
    ]
    return sum(found) if found else None


@pytest.fixture
def metrics_on(settings) -> None:  # type: ignore[no-untyped-def]
    settings.METRICS_ENABLED = True
    settings.METRICS_TOKEN = ""


def test_off_unless_enabled(client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.METRICS_ENABLED = False
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"


def test_token_is_required_when_set(client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.METRICS_ENABLED = True
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "authentication_error"
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert ok.status_code == 200
    assert ok["Content-Type"].startswith("text/plain")


def test_django_routes_are_counted_by_route_template(client, metrics_on) -> None:  # type: ignore[no-untyped-def]
    route = "/v1/organization/<org:org_id>"
    before = value(metrics.render().decode(), "http_server_request_duration_seconds_count", http_route=route)
    for _ in range(3):
        client.get("/v1/organization/org_doesnotexist0001")  # 401: no credential, still counted
    client.get("/no/such/path")
    text = client.get("/metrics").content.decode()
    counted = value(
        text,
        "http_server_request_duration_seconds_count",
        http_route=route,
        http_request_method="GET",
        http_response_status_code="401",
    )
    assert counted == (before or 0) + 3
    # raw paths never become labels
    assert "org_doesnotexist0001" not in text
    assert value(text, "http_server_request_duration_seconds_count", http_route="unmatched") is not None


def test_hot_path_functions_count(metrics_on) -> None:  # type: ignore[no-untyped-def]
    text = metrics.render().decode()
    tokens_before = value(text, "gen_ai_client_token_usage_total", project_id="proj_metrics1") or 0
    streams_before = value(text, "gateway_streams_in_flight") or 0

    metrics.tokens_counted("m-1", "proj_metrics1", 7, 5)
    metrics.tokens_counted("m-1", "proj_metrics1", 3, 0)
    metrics.upstream_observed("m-1", "prov-a", 0.2, 0.05, "success")
    metrics.upstream_observed("m-1", "prov-a", 0.4, None, "upstream_error")
    metrics.stream_started()
    metrics.stream_started()
    metrics.stream_finished()

    text = metrics.render().decode()
    assert value(text, "gen_ai_client_token_usage_total", project_id="proj_metrics1") == tokens_before + 15
    assert (
        value(text, "gen_ai_client_token_usage_total", project_id="proj_metrics1", gen_ai_token_type="output")
        == 5
    )
    ops = "gen_ai_client_operation_duration_seconds_count"
    assert value(text, ops, gen_ai_request_model="m-1", gen_ai_provider_name="prov-a", outcome="success") == 1
    assert value(text, ops, gen_ai_request_model="m-1", outcome="upstream_error") == 1
    assert value(text, "gen_ai_server_time_to_first_token_seconds_count", gen_ai_request_model="m-1") == 1
    assert value(text, "gateway_streams_in_flight") == streams_before + 1
    metrics.stream_finished()


def test_scrape_time_provider_health_and_queue_depth(metrics_on, settings) -> None:  # type: ignore[no-untyped-def]
    from inference.models import Provider

    Provider.objects.create(name="up", base_url="http://127.0.0.1:1", healthy=True, latency_ms=12.0)
    Provider.objects.create(name="down", base_url="http://127.0.0.1:2", healthy=False, consecutive_failures=3)
    redis = sync_client()
    # A queue of its own: tasks other tests' background work enqueues on "celery" meanwhile
    # would be counted too.
    queue = "metrics-test-queue"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    if redis is not None:
        settings.CELERY_BROKER_URL = settings.REDIS_URL
        redis.delete(queue)
        redis.lpush(queue, "m1", "m2", "m3")
    try:
        text = metrics.render().decode()
    finally:
        if redis is not None:
            redis.delete(queue)
    assert value(text, "gateway_provider_healthy", provider="up") == 1
    assert value(text, "gateway_provider_healthy", provider="down") == 0
    assert value(text, "gateway_provider_consecutive_failures", provider="down") == 3
    assert value(text, "gateway_provider_probe_latency_seconds", provider="up") == pytest.approx(0.012)
    if redis is not None:
        assert value(text, "gateway_celery_queue_depth", queue=queue) == 3


# --- Two workers -------------------------------------------------------------------------------


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[GatewayProcess, Path]]:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    server = GatewayProcess(
        database=True,
        workers=2,
        env={
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
            "METRICS_ENABLED": "true",
            "METRICS_TOKEN": "two-worker-token",
            "METRICS_PORT": str(free_port()),
        },
    )
    server.start(ready=directory)
    yield server, directory
    server.stop()


@pytest.mark.django_db(transaction=True)
def test_two_workers_share_their_counts(two_workers: tuple[GatewayProcess, Path]) -> None:
    server, directory = two_workers
    sent = 0
    # A fresh connection per request lets the kernel hand them to either worker; go on until
    # both workers have counted some (each writes its own histogram file).
    while sent < 40 or len(GatewayProcess.worker_pids(directory, "histogram")) < 2:
        assert sent < 400, "one worker never got a request"
        assert httpx.get(f"{server.url}/v1/version", timeout=5).status_code == 200
        sent += 1
    assert len(GatewayProcess.worker_pids(directory, "histogram")) == 2

    headers = {"Authorization": "Bearer two-worker-token"}
    assert httpx.get(f"{server.url}/metrics", timeout=5).status_code == 401
    for _ in range(6):  # whichever worker answers, the total is the same
        text = httpx.get(f"{server.url}/metrics", headers=headers, timeout=5).text
        count = value(
            text,
            "http_server_request_duration_seconds_count",
            http_route="/v1/version",
            http_request_method="GET",
            http_response_status_code="200",
        )
        assert count == sent
    assert value(text, "gateway_streams_in_flight") == 0
    # the same totals on the separate metrics port, which one of the two workers serves
    port = server.env["METRICS_PORT"]
    separate = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert value(separate, "http_server_request_duration_seconds_count", http_route="/v1/version") == sent
    assert value(separate, "gateway_celery_queue_depth") is not None  # scrape-time collectors too
