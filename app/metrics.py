"""Prometheus metrics: job counts read from the database at scrape time, and HTTP latency.

Job state lives in the database and workers may run on other hosts, so job
metrics are not counters this process increments: a collector queries the
database on every scrape. Each app gets its own registry, so several apps in one
process (tests) never clash over metric names.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import queries
from worker.store.models import JobStatus

log = logging.getLogger(__name__)

EPOCH_RATE_WINDOW_SECONDS = 60.0


class JobCollector(Collector):
    """Jobs by status, queue depth and training throughput, from the database."""

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self.session_factory = session_factory

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        try:
            with self.session_factory() as session:
                by_status = queries.count_jobs_by_status(session)
                recent_epochs = queries.count_epoch_events_since(session, EPOCH_RATE_WINDOW_SECONDS)
                total_epochs = queries.count_epochs(session)
        except SQLAlchemyError:
            log.exception("metrics: the database did not answer")
            yield GaugeMetricFamily("netgrow_database_up", "1 if the database answered this scrape.", value=0)
            return
        yield GaugeMetricFamily("netgrow_database_up", "1 if the database answered this scrape.", value=1)
        jobs = GaugeMetricFamily("netgrow_jobs", "Jobs in the database by status.", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], by_status.get(status.value, 0))
        yield jobs
        yield GaugeMetricFamily("netgrow_queue_depth", "Jobs waiting for a worker (status queued).",
                                value=by_status.get(JobStatus.QUEUED.value, 0))
        yield GaugeMetricFamily(
            "netgrow_epochs_per_second",
            f"Epochs finished by all workers over the last {EPOCH_RATE_WINDOW_SECONDS:.0f} s, per second.",
            value=recent_epochs / EPOCH_RATE_WINDOW_SECONDS)
        yield CounterMetricFamily("netgrow_epochs_recorded", "Epochs recorded in the history, all jobs.",
                                  value=total_epochs)


class Metrics:
    """The registry of one app and the instruments its middleware updates."""

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(JobCollector(session_factory))
        self.request_seconds = Histogram(
            "netgrow_http_request_seconds", "Time to the response headers, by endpoint.",
            labelnames=["method", "handler", "status"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))


class RequestTimingMiddleware:
    """Pure ASGI (so SSE streams pass through untouched).

    Requests are labelled by the matched endpoint's name (``read_job``), never by
    the raw path, so job ids cannot blow up the number of series.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = scope.get("route")
                self.metrics.request_seconds.labels(
                    method=scope["method"], handler=getattr(route, "name", None) or "unmatched",
                    status=str(message["status"]),
                ).observe(time.perf_counter() - start)
            await send(message)

        await self.app(scope, receive, timed_send)
