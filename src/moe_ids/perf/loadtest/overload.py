"""The overload test: measure capacity, offer about three times as much, and check the server degrades cleanly.

Clean degradation means: no process dies (tritonserver and every Python-backend stub keep their pids, and the
ensemble is still ready afterwards), every request is answered — a valid result or an explicit refusal from
the queue policy, none left without an answer past the client timeout — and accepted requests keep a bounded
latency (Triton rejects what waited past its queueing deadline instead of letting the queue grow).

Capacity is measured first with a short closed-loop run (``calibrate_users`` requests in flight, the best the
server does) unless a figure from an earlier calibration is given. The overload phase then offers
``factor`` x capacity open-loop: enough users that each paces itself to a share of the target rate, so slow
answers do not slow the offered load down (a closed loop would just queue politely). Requests carry
``batch`` real flows (1024): on two shared cores a load generator cannot offer 3x the server's single-flow
capacity, while at 1024 flows per request the server, not Locust, is the bottleneck.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from moe_ids.core import contract
from moe_ids.core.contract import ENSEMBLE_MODEL, PRIORITY_REALTIME
from moe_ids.perf.loadtest import server_stats
from moe_ids.perf.loadtest.locust_csv import read_stats
from moe_ids.perf.loadtest.runner import (
    START_MARGIN_S,
    LoadTestConfig,
    LoadTestError,
    LoadTestResult,
    _kill_group,
    _spawn,
    _tail,
    default_out_dir,
    local_server,
    normalize_host,
)

LOCUSTFILE = Path(__file__).with_name("overload_locustfile.py")
ACCEPTED, REJECTED, FAILED = "accepted", "rejected", "failed"  # request names of overload_locustfile.py
OVERLOAD_TEXTS = contract.OVERLOAD_TEXTS  # Triton's queue-policy refusals and the classifier's after admission


def classify(status: int, error_text: str) -> str:
    """``rejected`` for Triton's explicit overload refusals, ``failed`` for every other error."""
    low = error_text.lower()
    return REJECTED if status != 200 and any(t in low for t in OVERLOAD_TEXTS) else FAILED


@dataclass
class OverloadPlan:
    factor: float = 3.0  # offered load / capacity
    batch: int = 1024  # flows per request
    priority: int = PRIORITY_REALTIME  # real-time requests have a 1 s queueing deadline in the repository
    calibrate_s: float = 15.0
    calibrate_users: int = 8
    capacity_rps: float | None = None  # a figure from an earlier calibration: skips the calibration run
    latency_budget_s: float = 2.0  # users = offered rate x this: enough in flight to stay open-loop
    max_users: int = 2000
    # the goal: under 3x the server keeps answering at its capacity (goodput), and what it accepts is answered
    # within the real-time budget (contract.REALTIME_TIMEOUT_US), transport included
    min_goodput: float = 0.90  # accepted req/s / calibrated capacity
    max_accepted_p99_ms: float = 1000.0


def _locust(host_url: str, out: Path, prefix: str, users: int, duration_s: float, target_rps: float,
            plan: OverloadPlan, seed: int) -> Path:
    """Run the overload Locust file to completion; the path of its stats CSV."""
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "OverloadUser", "--headless",
           "--host", host_url, "--users", str(users), "--spawn-rate", str(max(users, 1)),
           "--run-time", f"{max(1, int(round(duration_s)))}s", "--stop-timeout", "12s",
           "--csv", str(out / prefix), "--only-summary", "--exit-code-on-error", "0",
           "--target-rps", f"{target_rps:.3f}", "--batch", str(plan.batch), "--priority", str(plan.priority),
           "--flow-seed", str(seed)]
    log = out / f"{prefix}.log"
    proc = _spawn(cmd, log)
    limit = duration_s + 12 + START_MARGIN_S
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired as exc:
        raise LoadTestError(f"Locust ran past {limit:.0f} s and was stopped; see {log}") from exc
    finally:
        _kill_group(proc)
    stats = out / f"{prefix}_stats.csv"
    if not stats.exists():
        raise LoadTestError(f"no Locust statistics at {stats}\n{_tail(log)}")
    return stats


def _ready(http_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{http_url}/v2/models/{ENSEMBLE_MODEL}/ready", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def _processes(server_pid: int | None) -> dict[str, list[int]]:
    if server_pid is None:
        return {}
    from moe_ids.triton.ops.procfs import is_alive
    from moe_ids.triton.ops.stubs import backend_stubs

    stubs = backend_stubs(server_pid)
    if is_alive(server_pid):
        stubs["tritonserver"] = [server_pid]
    return stubs


def _cpu_seconds(server_pid: int | None) -> dict[str, float]:
    """CPU seconds used so far by the load generator (waited-for children), the server's process tree and the
    whole machine: on shared cores, overload results only make sense next to who had the CPU."""
    from moe_ids.perf.loadtest.resources import sample_tree

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server = sample_tree(server_pid, time.time()) if server_pid else None
    from moe_ids.triton.ops.procfs import machine_busy_seconds

    return {"load_generator": children.ru_utime + children.ru_stime,
            "server": server.cpu_s if server else math.nan, "machine": machine_busy_seconds()}


def _row(rows: dict, name: str) -> dict[str, Any]:
    r = rows.get(name)
    if r is None:
        return {"requests": 0, "failures": 0, "rps": 0.0, "p50_ms": math.nan, "p99_ms": math.nan,
                "max_ms": math.nan}
    return {"requests": r.requests, "failures": r.failures, "rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
            "max_ms": r.max_ms}


def run_overload(cfg: LoadTestConfig, plan: OverloadPlan | None = None,
                 server_pid: int | None = None) -> LoadTestResult:
    """Calibrate (unless ``plan.capacity_rps``), overload for ``cfg.duration_s`` and judge; HTTP only.

    Process survival is checked by pid for a server started here (``--serve``) or one whose ``server_pid``
    is given; for any other server, by its readiness afterwards."""
    plan = plan or OverloadPlan(calibrate_users=cfg.users)  # --users: requests in flight while calibrating
    if cfg.protocol != "http":
        raise ValueError("overload: runs over HTTP binary tensors only (--protocol http)")
    if cfg.serve and cfg.host:
        raise ValueError("host: give either --serve (start a local server) or --host, not both")
    out = Path(cfg.out or default_out_dir("overload")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if cfg.serve:
            server = stack.enter_context(local_server(cfg, out))
            host_url, server_pid = normalize_host(server.http_url, "http"), server.pid
        else:
            host_url = normalize_host(cfg.host, "http")
        if not _ready(host_url):
            raise LoadTestError(f"{ENSEMBLE_MODEL} is not ready at {host_url}")
        before = _processes(server_pid)
        capacity, calibration = plan.capacity_rps, None
        if capacity is None:
            rows = read_stats(_locust(host_url, out, "calibration", plan.calibrate_users, plan.calibrate_s, 0.0,
                                      plan, cfg.flow_seed))
            calibration = {k: _row(rows, k) for k in (ACCEPTED, REJECTED, FAILED)}
            capacity = calibration[ACCEPTED]["rps"]
            if not capacity:
                raise LoadTestError(f"calibration answered no request; see {out / 'calibration.log'}")
        target = plan.factor * capacity
        users = max(plan.calibrate_users, min(plan.max_users, math.ceil(target * plan.latency_budget_s)))
        stats_url = host_url.split("://", 1)[1]
        counters = server_stats.snapshot("http", stats_url)
        cpu_before = _cpu_seconds(server_pid)
        started = time.time()
        rows = read_stats(_locust(host_url, out, "overload", users, cfg.duration_s, target, plan, cfg.flow_seed))
        wall = time.time() - started
        cpu = {k: round((v - cpu_before[k]) / wall, 2) for k, v in _cpu_seconds(server_pid).items()}
        server = server_stats.difference(counters, server_stats.snapshot("http", stats_url))
        after = _processes(server_pid)
        ready_after = _ready(host_url)
    outcome = {k: _row(rows, k) for k in (ACCEPTED, REJECTED, FAILED)}
    total = sum(o["requests"] for o in outcome.values())
    offered = sum(o["rps"] for o in outcome.values())
    survived = ready_after and (server_pid is None or (bool(before) and before == after))
    checks = {
        "every process survived": survived,
        "every request answered (accepted or rejected)": outcome[FAILED]["requests"] == 0 and total > 0,
        f"accepted >= {plan.min_goodput:.2f} x capacity": outcome[ACCEPTED]["rps"] >= plan.min_goodput * capacity,
        f"accepted p99 <= {plan.max_accepted_p99_ms:.0f} ms": outcome[ACCEPTED]["p99_ms"] <= plan.max_accepted_p99_ms,
    }
    summary = {
        "scenario": "overload", "host": host_url, "served_locally": cfg.serve, "plan": asdict(plan),
        "capacity_rps": round(capacity, 1), "capacity_flows_per_s": round(capacity * plan.batch),
        "calibrated": calibration is not None, "calibration": calibration,
        "target_rps": round(target, 1), "offered_rps": round(offered, 1),
        "offered_factor": round(offered / capacity, 2) if capacity else None,
        "goodput": round(outcome[ACCEPTED]["rps"] / capacity, 3) if capacity else None,
        "users": users, "duration_s": cfg.duration_s, "wall_s": round(wall, 1),
        "requests": total, "outcome": outcome,
        "max_latency_ms": max((o["max_ms"] for o in outcome.values() if o["requests"]), default=math.nan),
        "cpu_cores": cpu,  # mean cores busy during the overload phase: load generator, server tree, machine
        "server": server,  # Triton's own view: successful requests, mean queue/compute ms per model
        "processes_before": before, "processes_after": after, "ready_after": ready_after,
        "checks": checks, "passed": all(checks.values()), "out": str(out),
        "overload": True,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return LoadTestResult(out, summary["passed"], summary)


def format_overload(s: dict[str, Any]) -> str:
    o = s["outcome"]
    how = "calibrated" if s["calibrated"] else "given"
    lines = [
        f"moe-ids loadtest  scenario=overload  protocol=http  host={s['host']}"
        f"{' (started here)' if s['served_locally'] else ''}",
        f"  capacity ({how}): {s['capacity_rps']:.1f} req/s x {s['plan']['batch']} flows = "
        f"{s['capacity_flows_per_s']:,} flows/s",
        f"  offered: target {s['target_rps']:.1f} req/s ({s['plan']['factor']:g}x), achieved {s['offered_rps']:.1f} "
        f"req/s ({s['offered_factor']}x) by {s['users']} open-loop users for {s['duration_s']:g} s",
        "",
        f"  {'outcome':<10} {'requests':>9} {'req/s':>8} {'p50':>7} {'p99':>7} {'max':>7}  (ms)",
    ]
    for name in (ACCEPTED, REJECTED, FAILED):
        r = o[name]
        lines.append(f"  {name:<10} {r['requests']:>9} {r['rps']:>8.1f} {_ms(r['p50_ms'])} {_ms(r['p99_ms'])} "
                     f"{_ms(r['max_ms'])}")
    if s.get("goodput") is not None:
        lines.append(f"  goodput: accepted {s['goodput']:.3f} x capacity")
    for model, m in (s.get("server") or {}).items():
        lines.append(f"  server {model:<20} {m['requests']:>7} answered, {m['failed_requests']:>6} refused/failed; "
                     f"mean in server {m['mean_request_ms']:.0f} ms (queue {m['mean_queue_ms']:.0f}, "
                     f"compute {m['mean_compute_ms']:.0f})")
    c = s.get("cpu_cores") or {}
    if c:
        lines.append(f"  CPU cores busy: load generator {c['load_generator']:.2f}, server {c['server']:.2f}, "
                     f"whole machine {c['machine']:.2f} of {os.cpu_count()}")
    lines += ["", f"  max latency of any request: {_ms(s['max_latency_ms']).strip()} ms; "
                  f"processes before {s['processes_before']}, after {s['processes_after']}; "
                  f"ready after: {s['ready_after']}", ""]
    lines += [f"  {'PASS' if ok else 'FAIL'}  {name}" for name, ok in s["checks"].items()]
    lines += ["", f"  overload {'PASSED' if s['passed'] else 'FAILED'}   reports: {s['out']}/ "
                  "(summary.json, overload_*.csv, calibration_*.csv)"]
    return "\n".join(lines)


def _ms(value: float) -> str:
    return f"{'-':>7}" if value != value else f"{value:>7.0f}"
