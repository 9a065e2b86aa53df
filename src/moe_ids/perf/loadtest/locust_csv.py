"""Reading Locust's CSV reports back into numbers the gates and the summary use.

Locust writes ``<prefix>_stats.csv`` (one row per request name plus ``Aggregated``, totals over the run) and
``<prefix>_stats_history.csv`` (one row a second: users, current req/s, rolling-window percentiles).
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path

AGGREGATED = "Aggregated"


def _num(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "", "N/A") else math.nan
    except ValueError:
        return math.nan


@dataclass
class RequestStats:
    """Totals of one request name (or of all: ``Aggregated``) over the run."""

    name: str
    requests: int
    failures: int
    rps: float  # all requests per second, as Locust reports it
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    avg_ms: float
    batch: int = 0  # flows per request; 0 when unknown (Aggregated)

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 1.0

    @property
    def success_rps(self) -> float:
        return self.rps * (1 - self.failure_ratio) if self.requests else 0.0

    @property
    def flows_per_s(self) -> float:
        return self.success_rps * self.batch

    def to_dict(self) -> dict[str, float | int | str]:
        out = asdict(self)
        out.update(failure_ratio=self.failure_ratio, success_rps=self.success_rps, flows_per_s=self.flows_per_s)
        return out


def read_stats(path: Path, batches: dict[str, int] | None = None) -> dict[str, RequestStats]:
    """Rows of ``_stats.csv`` by request name; ``batches`` maps a name (before any ``:``) to its batch size."""
    batches = batches or {}
    rows: dict[str, RequestStats] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            name = row["Name"]
            rows[name] = RequestStats(
                name=name, requests=int(row["Request Count"]), failures=int(row["Failure Count"]),
                rps=_num(row["Requests/s"]), p50_ms=_num(row["50%"]), p95_ms=_num(row["95%"]),
                p99_ms=_num(row["99%"]), max_ms=_num(row["Max Response Time"]),
                avg_ms=_num(row["Average Response Time"]), batch=batches.get(name.split(":", 1)[0], 0))
    return rows


def aggregated_flows_per_s(rows: dict[str, RequestStats]) -> float:
    """Flows scored per second over all request kinds (each kind's successful req/s times its batch)."""
    return sum(r.flows_per_s for n, r in rows.items() if n != AGGREGATED)


@dataclass
class HistoryPoint:
    t: float  # seconds since the first sample
    users: int
    rps: float
    failures_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    total_requests: int = 0
    timestamp: float = 0.0  # unix time


RATE_WINDOW = 3  # samples (~seconds) over which throughput is averaged: workers report every 3 s


def read_history(path: Path, name: str = AGGREGATED) -> list[HistoryPoint]:
    """The per-second samples of ``name`` from ``_stats_history.csv``.

    Locust's own ``Requests/s`` column is a trailing average that lags a spike by up to ten seconds; where
    the file has running totals, throughput is recomputed from them over the last RATE_WINDOW samples.
    """
    points: list[HistoryPoint] = []
    t0: float | None = None
    totals: list[tuple[float, float, float]] = []  # timestamp, total requests, total failures
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("Name") != name:
                continue
            ts = _num(row["Timestamp"])
            t0 = ts if t0 is None else t0
            rps, fps = _num(row["Requests/s"]), _num(row["Failures/s"])
            total, failed = _num(row.get("Total Request Count")), _num(row.get("Total Failure Count"))
            if not math.isnan(total):
                totals.append((ts, total, 0.0 if math.isnan(failed) else failed))
                first = totals[max(0, len(totals) - 1 - RATE_WINDOW)]
                if ts > first[0]:
                    rps = (total - first[1]) / (ts - first[0])
                    fps = (totals[-1][2] - first[2]) / (ts - first[0])
            points.append(HistoryPoint(ts - t0, int(_num(row["User Count"]) or 0), rps, fps, _num(row["50%"]),
                                       _num(row["95%"]), _num(row["99%"]), 0 if math.isnan(total) else int(total),
                                       ts))
    return points
