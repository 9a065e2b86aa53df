"""The scorer worker's own Prometheus metrics and its progress line.

Triton's metrics say how the model is served; these say how the stream is doing: what came in, what went
out (verdicts by class, alerts by severity, dead letters by reason, out-of-distribution verdicts per sensor:
which sensor sends traffic the model does not know), how often flows were redelivered, batch
sizes, the time from a flow's arrival in ``FLOWS`` to its acknowledged verdict, and the consumer's lag as
JetStream reports it (the autoscaler's signal). Each worker has its own registry, so several workers can run in
one process (tests, the benchmark) without clashing.
"""

from __future__ import annotations

import collections
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from moe_ids.core import contract

PREFIX = "moe_ids_stream"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
MAX_SENSOR_LABELS = 64  # distinct sensor label values; later sensors count under OTHER_SENSOR
OTHER_SENSOR = "_other"


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter(f"{PREFIX}_consumed", "Input messages fetched from FLOWS", registry=r)
        self.verdicts = Counter(f"{PREFIX}_verdicts", "Verdicts published and acknowledged", ["prediction"],
                                registry=r)
        self.alerts = Counter(f"{PREFIX}_alerts", "Alerts published", ["severity"], registry=r)
        self.out_of_distribution = Counter(
            f"{PREFIX}_out_of_distribution", "Verdicts on flows unlike the model's training data, by sensor: a "
            "sensor whose share stays far above the model's calibrated rate (alpha in metadata.json) sends "
            "another network's or another extractor's traffic",
            ["sensor"], registry=r)
        self.scored_by_sensor = Counter(f"{PREFIX}_sensor_verdicts", "Verdicts published, by sensor (the "
                                        "denominator of the out-of-distribution share)", ["sensor"], registry=r)
        self._sensors: set[str] = set()
        self.dlq = Counter(f"{PREFIX}_dead_letters", "Input messages dead-lettered to dlq.flows", ["reason"],
                           registry=r)
        self.redeliveries = Counter(f"{PREFIX}_redeliveries", "Input messages delivered more than once",
                                    registry=r)
        self.duplicate_publishes = Counter(f"{PREFIX}_duplicate_publishes",
                                           "Output publishes JetStream dropped as duplicates (redelivered flows)",
                                           registry=r)
        self.backoffs = Counter(f"{PREFIX}_backoffs", "Waits while Triton was unavailable", ["error"], registry=r)
        self.batch_size = Histogram(f"{PREFIX}_batch_size", "Messages per micro-batch", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.latency = Histogram(f"{PREFIX}_end_to_end_seconds",
                                 "From a flow's arrival in FLOWS to its acknowledged verdict", buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.pending = Gauge(f"{PREFIX}_consumer_pending", "Messages of FLOWS not yet delivered to any worker",
                             registry=r)
        self.ack_pending = Gauge(f"{PREFIX}_consumer_ack_pending", "Messages delivered and not yet acknowledged",
                                 registry=r)
        self._started = time.monotonic()
        self._last_line = (self._started, 0)  # (when, verdicts) at the previous progress line
        self._counts = {"consumed": 0, "verdicts": 0, "attacks": 0, "alerts": 0, "out_of_distribution": 0, "dlq": 0,
                        "redelivered": 0, "batches": 0}
        self.port: int | None = None

    def serve(self, port: int | None, host: str = contract.DEFAULT_HOST) -> None:
        """Expose /metrics on HOST:PORT (0 = a free port, recorded in ``port``); None = not at all. The host is
        the loopback interface unless a container asks for its own interface (``--metrics-host 0.0.0.0``)."""
        if port is None:
            return
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(server.server_address[1])

    def batch(self, n: int) -> None:
        self.consumed.inc(n)
        self.batch_size.observe(n)
        self._counts["consumed"] += n
        self._counts["batches"] += 1

    def redelivered(self) -> None:
        self.redeliveries.inc()
        self._counts["redelivered"] += 1

    def verdicts_published(self, predictions: list[str], severities: list[str | None],
                           latencies_s: list[float], sensors: list[str] | None = None,
                           out_of_distribution: list[bool | None] | None = None) -> None:
        """One micro-batch's verdicts (counted per batch: label lookups per flow would cost more than the flow)."""
        for label, n in collections.Counter(predictions).items():
            self.verdicts.labels(prediction=label).inc(n)
        if sensors is not None:
            flags = out_of_distribution or [None] * len(sensors)
            for sensor, n in collections.Counter(sensors).items():
                self.scored_by_sensor.labels(sensor=self._sensor_label(sensor)).inc(n)
            unfamiliar = collections.Counter(s for s, flag in zip(sensors, flags) if flag)
            for sensor, n in unfamiliar.items():
                self.out_of_distribution.labels(sensor=self._sensor_label(sensor)).inc(n)
            self._counts["out_of_distribution"] += sum(unfamiliar.values())
        for level, n in collections.Counter(s for s in severities if s is not None).items():
            self.alerts.labels(severity=level).inc(n)
            self._counts["alerts"] += n
        for latency in latencies_s:
            self.latency.observe(max(0.0, latency))
        self._counts["verdicts"] += len(predictions)
        self._counts["attacks"] += sum(1 for p in predictions if p == contract.BINARY_LABELS[1])

    def _sensor_label(self, sensor: str) -> str:
        """The sensor as a label value; bounded, since any producer may name a new sensor in every message."""
        if sensor in self._sensors:
            return sensor
        if len(self._sensors) < MAX_SENSOR_LABELS:
            self._sensors.add(sensor)
            return sensor
        return OTHER_SENSOR

    def dead_lettered(self, reason: str) -> None:
        self.dlq.labels(reason=reason).inc()
        self._counts["dlq"] += 1

    def duplicates(self, n: int) -> None:
        if n:
            self.duplicate_publishes.inc(n)

    def backoff(self, error: str) -> None:
        self.backoffs.labels(error=error).inc()

    def lag(self, pending: int, ack_pending: int) -> None:
        self.pending.set(pending)
        self.ack_pending.set(ack_pending)

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def progress_line(self) -> str:
        """The counts so far and two rates: since the previous line (what the worker does now: an average since
        start would still read high long after the stream went quiet) and since start."""
        c, now = self._counts, time.monotonic()
        since, verdicts_then = self._last_line
        self._last_line = (now, c["verdicts"])
        recent = (c["verdicts"] - verdicts_then) / max(1e-9, now - since)
        overall = c["verdicts"] / max(1e-9, now - self._started)
        mean_batch = c["consumed"] / max(1, c["batches"])
        return (f"consumed {c['consumed']} in {c['batches']} batches (mean {mean_batch:.0f}), "
                f"verdicts {c['verdicts']} (attack {c['attacks']}), alerts {c['alerts']}, "
                f"out-of-distribution {c['out_of_distribution']}, dead letters {c['dlq']}, "
                f"redelivered {c['redelivered']}, pending {int(self.pending._value.get())}, "
                f"{recent:,.0f} verdicts/s now, {overall:,.0f} on average")
