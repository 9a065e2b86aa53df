"""A short overload run (about 15 s) against a real server with 20 ms queueing deadlines, so rejections are certain.

The same code as ``moe-ids loadtest --scenario overload`` (perf/loadtest/overload.py) with the capacity given rather
than calibrated and a 20 ms budget both for queueing (per priority level) and for waiting after admission: three
times the given rate must end with no process dead, every request answered (a result or an explicit refusal,
none failed or timed out) and the server still ready. Latency is printed, not asserted: the 60 s run's figures are in
docs/reliability.md. That the client SDK turns these refusals into OverloadedError and backs off until the
flood passes is tested in tests/client/test_overload_and_readiness.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from moe_ids.perf.loadtest.overload import (
    ACCEPTED,
    FAILED,
    REJECTED,
    OverloadPlan,
    classify,
    format_overload,
    run_overload,
)
from moe_ids.perf.loadtest.runner import LoadTestConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_queue_server(triton_serving, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with triton_serving(tmp_path_factory.mktemp("overload"), layout="ensemble", realtime_timeout_us=20_000,
                        bulk_timeout_us=20_000, admitted_timeout_us=20_000, warmup_batch_sizes=()) as server:
        yield server


def test_three_times_capacity_is_answered_or_rejected(tiny_queue_server, tmp_path: Path) -> None:
    cfg = LoadTestConfig(scenario="overload", host=tiny_queue_server.http_url, duration_s=8, out=tmp_path)
    plan = OverloadPlan(capacity_rps=40.0, factor=3.0, latency_budget_s=1.0)
    result = run_overload(cfg, plan, server_pid=tiny_queue_server.pid)
    summary = result.summary
    print("\n" + format_overload(summary))
    outcome = summary["outcome"]
    assert outcome[ACCEPTED]["requests"] > 0, "nothing was accepted"
    assert outcome[REJECTED]["requests"] > 0, "a 20 ms queueing deadline never expired at 3x"
    assert outcome[FAILED]["requests"] == 0, (tmp_path / "overload_failures.csv").read_text()
    assert summary["ready_after"] and tiny_queue_server.running()
    assert summary["checks"]["every process survived"]
    assert set(summary["processes_after"]) == {"tritonserver", "moe_ids_preprocess", "moe_ids_model"}
    assert summary["checks"]["every request answered (accepted or rejected)"]
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "overload_stats.csv").is_file()


def test_served_process_set_is_compared(tiny_queue_server) -> None:
    """The survival check sees the server and both stubs, so a death during the run could not go unnoticed."""
    from moe_ids.perf.loadtest.overload import _processes

    procs = _processes(tiny_queue_server.pid)
    assert set(procs) == {"tritonserver", "moe_ids_preprocess", "moe_ids_model"}


def test_only_queue_policy_refusals_count_as_rejections() -> None:
    assert classify(503, "in ensemble 'moe_ids', Exceeds maximum queue size") == REJECTED
    assert classify(400, "Request timeout expired") == REJECTED
    assert classify(500, "Stub process 'moe_ids_model_0_0' is not healthy.") == FAILED
    assert classify(0, "timed out") == FAILED
