"""Real Locust runs against the session's real tritonserver, through ``moe-ids loadtest``.

About a minute in all: a 20 s smoke run that must pass its SLO gates, a bad-request run that must fail them,
a JSON-over-HTTP run, and a 2-worker distributed gRPC run. Figures are not asserted beyond the gates.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from moe_ids.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def loadtest(out: Path, *args: str) -> tuple[int, dict]:
    code = main(["loadtest", "--out", str(out), *args])
    return code, json.loads((out / "summary.json").read_text())


def test_smoke_mixed_passes_its_gates_and_writes_reports(triton_server, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "smoke"
    code, summary = loadtest(out, "--scenario", "mixed", "--host", triton_server.http_url, "--duration", "20s",
                             "--users", "6", "--spawn-rate", "6")
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert summary["passed"] and all(g["passed"] for g in summary["gates"])
    assert "gates PASSED" in printed and "realtime" in printed
    requests = summary["requests"]
    assert {"realtime", "bulk256", "bulk1024", "Aggregated"} <= set(requests)
    assert requests["Aggregated"]["failures"] == 0 and requests["Aggregated"]["requests"] > 100
    assert summary["flows_per_s"] > requests["Aggregated"]["success_rps"]  # batches count their flows
    # the server saw the same traffic, and dynamic batching formed batches
    server = summary["server"]["moe_ids_model"]
    assert server["flows"] >= requests["Aggregated"]["requests"]
    assert server["mean_batch"] > 1
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "locust" in (out / "report.html").read_text().lower()
    with open(out / "locust_stats_history.csv") as fh:
        assert sum(1 for row in csv.DictReader(fh) if row["Name"] == "Aggregated") >= 15

    # re-analysing the same CSVs with a stricter flag fails that gate, keeps the run's server figures
    code, again = loadtest(out, "--analyze", str(out), "--scenario", "mixed", "--users", "6",
                           "--duration", "20s", "--max-p99-ms", "0.5")
    assert code == 1 and not again["passed"]
    assert [g["key"] for g in again["gates"] if not g["passed"]] == ["max_p99_ms"]
    assert again["server"] == summary["server"] and again["requests"] == summary["requests"]


def test_bad_requests_fail_the_gates_and_the_server_stays_up(triton_server, tmp_path: Path) -> None:
    out = tmp_path / "bad"
    code, summary = loadtest(out, "--scenario", "bad-request", "--host", triton_server.http_url,
                             "--duration", "5s", "--users", "4")
    assert code == 1 and not summary["passed"]
    failed = {g["key"] for g in summary["gates"] if not g["passed"]}
    assert "max_failure_ratio" in failed
    requests = summary["requests"]
    assert requests["valid"]["failures"] == 0 and requests["valid"]["requests"] > 0  # good requests still served
    with open(out / "locust_failures.csv") as fh:
        errors = {row["Name"]: row["Error"] for row in csv.DictReader(fh)}
    assert set(errors) == {"malformed:wrong-width", "malformed:wrong-datatype", "malformed:unknown-imputation",
                           "malformed:missing-input"}
    assert all("HTTP 400" in e for e in errors.values())  # refused as bad input, not a server error
    assert "FEATURES" in errors["malformed:wrong-width"] and "IMPUTATION" in errors["malformed:unknown-imputation"]


def test_http_json_users_report(triton_server, tmp_path: Path) -> None:
    code, summary = loadtest(tmp_path / "json", "--scenario", "missing50", "--protocol", "http-json",
                             "--host", triton_server.http_url, "--duration", "4s", "--users", "4")
    assert summary["requests"]["missing50"]["requests"] > 0
    assert summary["requests"]["missing50"]["failures"] == 0  # bare NaN literals accepted
    assert code == (0 if summary["passed"] else 1)  # latency gates are the smoke run's job; this one reports


def test_grpc_users_report_in_distributed_mode(triton_server, tmp_path: Path) -> None:
    out = tmp_path / "grpc"
    code, summary = loadtest(out, "--scenario", "impute-median", "--protocol", "grpc", "--workers", "2",
                             "--host", triton_server.grpc_url, "--duration", "6s", "--users", "4",
                             "--min-rps", "1", "--min-flows-per-s", "1")
    row = summary["requests"]["impute-median"]
    assert row["requests"] > 0 and row["failures"] == 0
    assert summary["workers"] == 2 and code == (0 if summary["passed"] else 1)
    log = (out / "locust.log").read_text()
    assert "2 workers connected" in log and "to 2 ready workers" in log  # the master spread users over both
    for i in (1, 2):
        assert "Got quit message from master" in (out / f"locust-worker-{i}.log").read_text()  # stopped cleanly
    with open(out / "locust_stats.csv") as fh:
        assert {r["Type"] for r in csv.DictReader(fh) if r["Name"] != "Aggregated"} == {"gRPC"}


def test_serve_starts_and_stops_its_own_server(tmp_path: Path) -> None:
    """--serve: a server on free ports for the run only, its memory sampled, gone afterwards."""
    out = tmp_path / "serve"
    code, summary = loadtest(out, "--serve", "--scenario", "realtime", "--protocol", "grpc", "--shape", "spike",
                             "--users", "6", "--duration", "5s")
    assert summary["served_locally"] and summary["requests"]["single"]["failures"] == 0
    assert code == (0 if summary["passed"] else 1)
    assert summary["server_resources"]["rss_end_mb"] > 50
    assert (out / "server_resources.csv").exists() and (out / "tritonserver.log").exists()
    assert not Path(f"/proc/{summary['server_pid']}").exists()  # stopped when the run ended
