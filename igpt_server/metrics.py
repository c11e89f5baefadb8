"""Prometheus metrics (``GET /metrics``), one registry per app.

Measured as things happen: request latency by route template, method and status
(``igpt_request_seconds``), tool latency by tool, backend and outcome (``igpt_tool_seconds``),
refusals by reason (``igpt_refusals_total``: rate_limited, busy, session_busy, ...).
Read at scrape time from the live objects (:class:`ServerCollector`): queue depth and running
calls per tool, model pool memory per model and evictions, sessions, bytes stored and free
disk of the data directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from igpt_server.store.limits import free_bytes

if TYPE_CHECKING:
    from igpt_server.services import Services

_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TOOL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class Metrics:
    """The app's metrics and their registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._bound = False
        self.requests = Histogram(
            "igpt_request_seconds",
            "HTTP request latency by route template, method and status.",
            ["route", "method", "status"],
            buckets=_REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.tools = Histogram(
            "igpt_tool_seconds",
            "Tool run latency (admitted runs) by tool, backend and outcome (ok, error, cancelled).",
            ["tool", "backend", "outcome"],
            buckets=_TOOL_BUCKETS,
            registry=self.registry,
        )
        self.refusals = Counter(
            "igpt_refusals",
            "Requests refused by a limit, by reason (rate_limited, turns, busy, session_busy, quota, storage).",
            ["reason"],
            registry=self.registry,
        )

    def bind(self, services: Services) -> None:
        """Also expose the live state of ``services`` (queues, pool, sessions, disk); once."""
        if not self._bound:
            self.registry.register(ServerCollector(services))
            self._bound = True

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ServerCollector(Collector):
    """Gauges read at scrape time from the running services."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        services = self.services
        depth = GaugeMetricFamily("igpt_queue_depth", "Calls waiting for a slot, per tool.", labels=["tool"])
        running = GaugeMetricFamily("igpt_tool_running", "Calls running now, per tool.", labels=["tool"])
        rejected = CounterMetricFamily("igpt_admission_rejected", "Calls refused with 503, per tool.", labels=["tool"])
        for gate in services.runner.admission.gates():
            depth.add_metric([gate.name], gate.waiting)
            running.add_metric([gate.name], gate.running)
            rejected.add_metric([gate.name], gate.rejected)
        yield from (depth, running, rejected)
        memory = GaugeMetricFamily(
            "igpt_model_memory_bytes", "Weights of each model in the pool.", labels=["model", "device", "state"]
        )
        evictions = CounterMetricFamily("igpt_model_evictions", "Evictions of each model.", labels=["model"])
        loads = CounterMetricFamily("igpt_model_loads", "Loads of each model.", labels=["model"])
        for model in services.pool.describe():
            memory.add_metric([model.key, model.device, model.state], model.memory_bytes)
            evictions.add_metric([model.key], model.evictions)
            loads.add_metric([model.key], model.loads)
        yield from (memory, evictions, loads)
        store = services.store
        yield GaugeMetricFamily("igpt_sessions_active", "Sessions in the store.", value=store.count())
        yield GaugeMetricFamily("igpt_disk_used_bytes", "Bytes of every stored artifact.", value=store.used_bytes())
        yield GaugeMetricFamily(
            "igpt_disk_free_bytes", "Free bytes of the data directory's file system.", value=free_bytes(store.data_dir)
        )
