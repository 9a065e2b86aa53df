"""SLO gates: limits on failure ratio, tail latency and throughput that a load run must meet.

Limits come in three layers, later ones winning key by key: ``gates.json`` next to this module (``default``
then the scenario's entry), a gates file of the same shape given on the command line, then single flags.
A gate whose limit is null is off. A run passes only when every gate that is on passes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from moe_ids.perf.loadtest.locust_csv import AGGREGATED, RequestStats, aggregated_flows_per_s

DEFAULT_GATES_FILE = Path(__file__).with_name("gates.json")

# key -> (metric label, "max" or "min")
GATE_KEYS: dict[str, tuple[str, str]] = {
    "max_failure_ratio": ("failure ratio", "max"),
    "max_p95_ms": ("p95 latency ms", "max"),
    "max_p99_ms": ("p99 latency ms", "max"),
    "min_rps": ("successful requests/s", "min"),
    "min_flows_per_s": ("flows/s", "min"),
}
REQUEST_KEYS = ("max_failure_ratio", "max_p95_ms", "max_p99_ms")


@dataclass
class GateResult:
    scope: str  # "all" or a request name
    key: str
    metric: str
    limit: float
    actual: float
    passed: bool

    def line(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        op = "<=" if GATE_KEYS[self.key][1] == "max" else ">="
        scope = "" if self.scope == "all" else f"[{self.scope}] "
        if self.key == "max_failure_ratio":
            return f"{mark}  {scope}{self.metric} {self.actual:.2%} {op} {self.limit:.2%}"
        return f"{mark}  {scope}{self.metric} {self.actual:,.1f} {op} {self.limit:,.1f}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_keys(entry: dict[str, Any], where: str) -> None:
    for key in entry:
        if key not in GATE_KEYS and key != "requests":
            raise ValueError(f"{where}: unknown gate {key!r}; known: {', '.join(GATE_KEYS)}, requests")
    for name, sub in (entry.get("requests") or {}).items():
        for key in sub:
            if key not in REQUEST_KEYS:
                raise ValueError(f"{where}.requests.{name}: unknown gate {key!r}; known: {', '.join(REQUEST_KEYS)}")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if key == "requests":
            reqs = {n: dict(v) for n, v in (out.get("requests") or {}).items()}
            for name, sub in (value or {}).items():
                reqs[name] = {**reqs.get(name, {}), **sub}
            out["requests"] = reqs
        else:
            out[key] = value
    return out


def _layer(doc: dict[str, Any], scenario: str, where: str) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for section in ("default", scenario):
        part = doc.get(section) or {}
        _check_keys(part, f"{where}:{section}")
        entry = _merge(entry, part)
    return entry


def resolve_gates(scenario: str, gates_file: Path | None = None,
                  overrides: dict[str, float | None] | None = None) -> dict[str, Any]:
    """The gates of ``scenario``: defaults file, then ``gates_file``, then ``overrides`` (None = not given)."""
    gates = _layer(json.loads(DEFAULT_GATES_FILE.read_text()), scenario, DEFAULT_GATES_FILE.name)
    if gates_file is not None:
        try:
            doc = json.loads(Path(gates_file).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"gates file {gates_file}: {exc}") from exc
        gates = _merge(gates, _layer(doc, scenario, str(gates_file)))
    for key, value in (overrides or {}).items():
        if key not in GATE_KEYS:
            raise ValueError(f"unknown gate {key!r}")
        if value is not None:
            gates[key] = value
    return gates


def _actual(key: str, row: RequestStats, flows_per_s: float) -> float:
    return {"max_failure_ratio": row.failure_ratio, "max_p95_ms": row.p95_ms, "max_p99_ms": row.p99_ms,
            "min_rps": row.success_rps, "min_flows_per_s": flows_per_s}[key]


def _judge(key: str, limit: float, actual: float) -> bool:
    if math.isnan(actual):
        return False
    return actual <= limit if GATE_KEYS[key][1] == "max" else actual >= limit


def evaluate(gates: dict[str, Any], rows: dict[str, RequestStats]) -> list[GateResult]:
    """Check every gate that is on; a run with no requests at all fails every gate."""
    empty = RequestStats(AGGREGATED, 0, 0, 0.0, math.nan, math.nan, math.nan, math.nan, math.nan)
    agg = rows.get(AGGREGATED, empty)
    flows = aggregated_flows_per_s(rows)
    results = []
    for key, (metric, _) in GATE_KEYS.items():
        limit = gates.get(key)
        if limit is None:
            continue
        actual = _actual(key, agg, flows)
        results.append(GateResult("all", key, metric, float(limit), actual, _judge(key, float(limit), actual)))
    for name, sub in (gates.get("requests") or {}).items():
        row = rows.get(name, RequestStats(name, 0, 0, 0.0, math.nan, math.nan, math.nan, math.nan, math.nan))
        for key in REQUEST_KEYS:
            limit = sub.get(key)
            if limit is None:
                continue
            actual = _actual(key, row, row.flows_per_s)
            results.append(GateResult(name, key, GATE_KEYS[key][0], float(limit), actual,
                                      _judge(key, float(limit), actual)))
    return results
