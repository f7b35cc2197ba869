"""Provider health for `/metrics`, read at scrape time (settings.METRICS_COLLECTORS).

The health poller (inference.tasks) keeps the provider rows current; a scrape reads them in one
query, so nothing is counted between scrapes and every worker reports the same values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import DatabaseError
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from inference.models import Provider

logger = logging.getLogger(__name__)


class ProviderHealthCollector(Collector):
    def collect(self) -> Iterable[GaugeMetricFamily]:
        labels = ["provider", "provider_id"]
        healthy = GaugeMetricFamily(
            "gateway_provider_healthy", "1 when the provider passed its last health checks.", labels=labels
        )
        failures = GaugeMetricFamily(
            "gateway_provider_consecutive_failures", "Failed health checks in a row.", labels=labels
        )
        latency = GaugeMetricFamily(
            "gateway_provider_probe_latency_seconds", "Latency of the last health check.", labels=labels
        )
        try:
            rows = list(
                Provider.objects.filter(active=True).values_list(
                    "name", "public_id", "healthy", "consecutive_failures", "latency_ms"
                )
            )
        except DatabaseError:  # the database being down must not take the other metrics with it
            logger.warning("could not read provider health for /metrics", exc_info=True)
            return
        for name, public_id, is_healthy, failed, latency_ms in rows:
            healthy.add_metric([name, public_id], 1.0 if is_healthy else 0.0)
            failures.add_metric([name, public_id], float(failed))
            if latency_ms is not None:
                latency.add_metric([name, public_id], latency_ms / 1000)
        yield from (healthy, failures, latency)
