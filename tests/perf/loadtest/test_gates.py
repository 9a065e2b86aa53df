"""SLO gates: layering of defaults, file and flags; verdicts on Locust's statistics CSV."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from moe_ids.perf.loadtest.gates import evaluate, resolve_gates
from moe_ids.perf.loadtest.locust_csv import AGGREGATED, aggregated_flows_per_s, read_history, read_stats

STATS_HEADER = ["Type", "Name", "Request Count", "Failure Count", "Median Response Time",
                "Average Response Time", "Min Response Time", "Max Response Time", "Average Content Size",
                "Requests/s", "Failures/s", "50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%",
                "99.99%", "100%"]


def write_stats(path: Path, rows: list[tuple[str, int, int, float, float, float, float]]) -> Path:
    """A Locust-format _stats.csv; each row: name, requests, failures, req/s, p50, p95, p99."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(STATS_HEADER)
        for name, n, fails, rps, p50, p95, p99 in rows:
            w.writerow(["POST" if name != AGGREGATED else "", name, n, fails, p50, p50, 1, p99 * 2, 100, rps,
                        rps * fails / max(n, 1), p50, p50, p50, p95, p95, p95, p99, p99, p99, p99, p99 * 2])
    return path


def test_defaults_layer_scenario_over_default() -> None:
    g = resolve_gates("batch1024")
    assert g["max_failure_ratio"] == 0.001  # from "default"
    assert g["max_p95_ms"] == 1000 and g["min_flows_per_s"] == 3000  # the scenario's own
    assert resolve_gates("mixed")["requests"]["realtime"]["max_p99_ms"] == 300


def test_file_then_flags_override(tmp_path: Path) -> None:
    f = tmp_path / "gates.json"
    f.write_text(json.dumps({"default": {"max_p99_ms": 80}, "mixed": {"requests": {"realtime": {"max_p95_ms": 9}},
                                                                    "min_rps": None}}))
    g = resolve_gates("mixed", f, {"max_p99_ms": 70, "max_p95_ms": None})
    assert g["max_p99_ms"] == 70  # flag beats file beats defaults
    assert g["max_p95_ms"] == 150  # a flag left out (None) keeps the layer below
    assert g["min_rps"] is None  # null in a file switches a gate off
    assert g["requests"]["realtime"] == {"max_p95_ms": 9, "max_p99_ms": 300}


def test_unknown_gate_is_named(tmp_path: Path) -> None:
    f = tmp_path / "gates.json"
    f.write_text(json.dumps({"realtime": {"max_p42_ms": 1}}))
    with pytest.raises(ValueError, match="max_p42_ms"):
        resolve_gates("realtime", f)
    with pytest.raises(ValueError, match="gates file"):
        resolve_gates("realtime", tmp_path / "missing.json")


def test_verdicts_on_stats_csv(tmp_path: Path) -> None:
    stats = write_stats(tmp_path / "s.csv", [
        ("realtime", 9000, 0, 900.0, 4, 10, 20),
        ("bulk256", 100, 0, 10.0, 20, 60, 90),
        (AGGREGATED, 9100, 0, 910.0, 4, 12, 30),
    ])
    rows = read_stats(stats, {"realtime": 1, "bulk256": 256})
    assert aggregated_flows_per_s(rows) == pytest.approx(900 + 2560)
    gates = {"max_failure_ratio": 0.001, "max_p95_ms": 50, "max_p99_ms": 25, "min_rps": 100,
             "min_flows_per_s": 5000, "requests": {"bulk256": {"max_p99_ms": 100}}}
    verdict = {(r.scope, r.key): r.passed for r in evaluate(gates, rows)}
    assert verdict == {("all", "max_failure_ratio"): True, ("all", "max_p95_ms"): True,
                       ("all", "max_p99_ms"): False, ("all", "min_rps"): True,
                       ("all", "min_flows_per_s"): False, ("bulk256", "max_p99_ms"): True}


def test_failures_fail_the_ratio_gate_and_empty_runs_fail_everything(tmp_path: Path) -> None:
    rows = read_stats(write_stats(tmp_path / "s.csv", [(AGGREGATED, 1000, 250, 100.0, 1, 2, 3)]))
    [ratio] = [r for r in evaluate({"max_failure_ratio": 0.01}, rows)]
    assert not ratio.passed and ratio.actual == pytest.approx(0.25)
    assert "FAIL" in ratio.line() and "25.00%" in ratio.line()
    results = evaluate(resolve_gates("realtime"), {})
    assert results and not any(r.passed for r in results)
    assert math.isnan(results[1].actual)


def test_history_rows_of_aggregated_only(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,95%,99%,Total Request Count,"
                    "Total Failure Count\n"
                    "100,2,,Aggregated,0,0,0,0,0,0,0\n"
                    "101,4,POST,realtime,50,0,3,6,9,60,0\n"
                    "101,4,,Aggregated,55,1,3,7,10,66,1\n"
                    "103,4,,Aggregated,40,1,3,7,10,266,5\n")
    points = read_history(path)
    # throughput from the running totals over the last few samples (Locust's own column lags)
    assert [(p.t, p.users, p.rps, p.failures_per_s, p.p99_ms, p.total_requests) for p in points] == [
        (0, 2, 0, 0, 0, 0), (1, 4, 66, 1, 10, 66), (3, 4, 266 / 3, 5 / 3, 10, 266)]


def test_analyze_existing_csvs_and_one_screen_summary(tmp_path: Path) -> None:
    from moe_ids.perf.loadtest.runner import LoadTestConfig, analyze, format_summary

    write_stats(tmp_path / "locust_stats.csv", [("single", 500, 0, 50.0, 4, 9, 12),
                                                (AGGREGATED, 500, 0, 50.0, 4, 9, 12)])
    (tmp_path / "locust_stats_history.csv").write_text(
        "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,95%,99%,Total Request Count\n"
        + "".join(f"{100 + i},4,,Aggregated,50,0,4,9,12,{50 * i}\n" for i in range(10)))
    (tmp_path / "locust.log").write_text("WARNING/locust.runners: CPU usage above 90%! This may constrain\n")
    result = analyze(LoadTestConfig(scenario="realtime", duration_s=10), tmp_path)
    assert not result.passed  # 50 req/s is below realtime's 100 req/s floor
    assert [g["key"] for g in result.summary["gates"] if not g["passed"]] == ["min_rps"]
    assert result.summary["load_generator_cpu_bound"]
    assert (tmp_path / "latency.png").exists() and (tmp_path / "summary.json").exists()
    text = format_summary(result.summary)
    assert "gates FAILED" in text and "Locust ran out of CPU" in text
    lines = [line for line in text.splitlines() if str(tmp_path) not in line]
    assert len(lines) <= 40 and max(map(len, lines)) <= 120
