"""``moe-ids bench --json``: runs every scenario end to end and reports positive figures (not a timing test)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEYS = ("ceiling_flows_per_s", "served_batched_flows_per_s", "served_single_flows_per_s",
        "bare_single_flows_per_s", "baseline_single_flows_per_s")
SCENARIOS = ("ceiling", "served_batched", "served_single", "bare_single", "baseline_single", "floor_single",
             "floor_bare", "one_hop_batched", "one_hop_single")


def test_bench_json_reports_every_scenario() -> None:
    proc = subprocess.run([sys.executable, "-m", "moe_ids.cli", "bench", "--json", "--seconds", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)  # exactly one JSON object on stdout
    for key in KEYS:
        assert report[key] > 0, key
    assert set(report["ratios"]) == {"batched_vs_ceiling", "single_vs_bare", "single_vs_baseline",
                                     "one_hop_batched_vs_ceiling", "one_hop_single_vs_bare",
                                     "one_hop_single_vs_baseline"}
    assert set(report["goals"]) == set(report["ratios"])  # every ratio printed with its goal
    single = report["scenarios"]["one_hop_single"]["flows_per_s"] / report["scenarios"]["served_single"]["flows_per_s"]
    assert report["one_hop_vs_ensemble"]["single"] == pytest.approx(single, abs=1e-3)
    assert all(value > 0 for value in report["ratios"].values())
    for name in SCENARIOS:
        assert report[f"{name}_p50_ms"] > 0 and report[f"{name}_p99_ms"] >= report[f"{name}_p50_ms"]
        assert report["scenarios"][name]["errors"] == 0, report["scenarios"][name]
    floor = report["floor"]
    assert floor["single_flows_per_s"] > 0 and floor["bare_flows_per_s"] > 0
    assert floor["single_vs_bare"] == pytest.approx(floor["single_flows_per_s"] / floor["bare_flows_per_s"], abs=1e-3)
