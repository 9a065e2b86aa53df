"""Run one load test end to end: optional local server, real Locust headless, reports, SLO gates.

Locust runs as a subprocess (``python -m locust``): it monkey-patches the interpreter for gevent, and a
separate process keeps that away from the caller (the CLI, pytest). Every run is bounded twice: the load shape
stops the test after the run time, and the runner kills Locust's process group if it outlives that plus a
margin. Load goes only to this machine (127.0.0.1 / localhost).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from moe_ids.core.contract import DEFAULT_GRPC_PORT, DEFAULT_HOST, DEFAULT_HTTP_PORT
from moe_ids.perf.loadtest import gates as gates_mod
from moe_ids.perf.loadtest import resources, server_stats
from moe_ids.perf.loadtest.locust_csv import AGGREGATED, aggregated_flows_per_s, read_history, read_stats
from moe_ids.perf.loadtest.scenarios import get_scenario
from moe_ids.perf.loadtest.schedule import ShapePlan

PROTOCOLS: dict[str, str] = {"http": "HttpBinaryUser", "http-json": "HttpJsonUser", "grpc": "GrpcUser"}
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
CSV_PREFIX = "locust"
START_MARGIN_S = 60.0  # Locust start-up, worker connection, report writing


class LoadTestError(RuntimeError):
    """The run could not be carried out (bad option, server or Locust failure): not a gate failure."""


@dataclass
class LoadTestConfig:
    scenario: str = "realtime"
    protocol: str = "http"
    users: int = 8
    spawn_rate: float = 8.0
    duration_s: float = 60.0
    host: str | None = None
    out: Path | None = None
    shape: str = "constant"
    serve: bool = False
    model_dir: Path | None = None
    gates_file: Path | None = None
    gate_overrides: dict[str, float | None] = field(default_factory=dict)
    workers: int = 0
    imputation: str | None = None
    flow_seed: int = 0
    stop_timeout_s: float = 5.0
    shape_options: dict[str, float] = field(default_factory=dict)  # step_count, spike_start, ...

    def plan(self) -> ShapePlan:
        return ShapePlan(self.shape, self.users, self.spawn_rate, self.duration_s, **self.shape_options)


@dataclass
class LoadTestResult:
    out: Path
    passed: bool
    summary: dict[str, Any]


def parse_duration(text: str | float) -> float:
    """Seconds from ``90``, ``90s``, ``2m``, ``1h30m`` (Locust's ``--run-time`` spellings)."""
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip().lower()
    if not s:
        raise ValueError("duration: empty")
    if s.replace(".", "", 1).isdigit():
        return float(s)
    total, number = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    for ch in s:
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number:
            total += float(number) * units[ch]
            number = ""
        else:
            raise ValueError(f"duration: cannot read {text!r}; use e.g. 60s, 5m, 1h30m")
    if number:
        raise ValueError(f"duration: {text!r} ends without a unit")
    return total


def normalize_host(host: str | None, protocol: str) -> str:
    """The Locust ``--host`` URL for ``protocol``; refuses any machine but this one."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: unknown {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    scheme = "grpc" if protocol == "grpc" else "http"
    if not host:
        port = DEFAULT_GRPC_PORT if protocol == "grpc" else DEFAULT_HTTP_PORT
        return f"{scheme}://{DEFAULT_HOST}:{port}"
    parts = urlsplit(host if "://" in host else f"{scheme}://{host}")
    if parts.hostname not in LOCAL_HOSTS:
        raise ValueError(f"host: {parts.hostname!r} refused; load tests target this machine only "
                         f"({', '.join(sorted(LOCAL_HOSTS))})")
    if parts.port is None:
        raise ValueError(f"host: {host!r} has no port")
    if parts.scheme not in ("http", "grpc"):
        raise ValueError(f"host: scheme {parts.scheme!r} not supported (http:// or grpc://)")
    hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{hostname}:{parts.port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((DEFAULT_HOST, 0))
        return s.getsockname()[1]


def default_out_dir(scenario: str) -> Path:
    from moe_ids.core.artifacts import project_root

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return project_root() / "results" / f"loadtest-{scenario}-{stamp}"


def locust_command(cfg: LoadTestConfig, host_url: str, out: Path, role: str = "local",
                   master_port: int | None = None) -> list[str]:
    """The Locust command line for the local runner, the master or a worker."""
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), PROTOCOLS[cfg.protocol],
           "--headless", "--host", host_url, "--scenario", cfg.scenario, "--flow-seed", str(cfg.flow_seed),
           "--shape", cfg.shape]
    for key, value in cfg.shape_options.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    if cfg.imputation:
        cmd += ["--imputation", cfg.imputation]
    if role == "worker":
        return cmd + ["--worker", "--master-host", DEFAULT_HOST, "--master-port", str(master_port)]
    cmd += ["--users", str(cfg.users), "--spawn-rate", str(cfg.spawn_rate),
            "--run-time", f"{int(round(cfg.duration_s))}s", "--stop-timeout", f"{int(cfg.stop_timeout_s)}s",
            "--csv", str(out / CSV_PREFIX), "--csv-full-history", "--html", str(out / "report.html"),
            "--only-summary", "--exit-code-on-error", "0"]
    if role == "master":
        cmd += ["--master", "--master-bind-host", DEFAULT_HOST, "--master-bind-port", str(master_port),
                "--expect-workers", str(cfg.workers), "--expect-workers-max-wait", "60"]
    return cmd


def _kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop a process group this runner started (TERM, then KILL)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def run_locust(cfg: LoadTestConfig, host_url: str, out: Path) -> int:
    """Run Locust (locally or as master + K workers) to completion; returns the master's exit code."""
    limit = cfg.duration_s + cfg.stop_timeout_s + START_MARGIN_S
    procs: list[subprocess.Popen] = []
    try:
        if cfg.workers > 0:
            port = _free_port()
            master = _spawn(locust_command(cfg, host_url, out, "master", port), out / "locust.log")
            procs.append(master)
            for i in range(cfg.workers):
                procs.append(_spawn(locust_command(cfg, host_url, out, "worker", port),
                                    out / f"locust-worker-{i + 1}.log"))
        else:
            master = _spawn(locust_command(cfg, host_url, out), out / "locust.log")
            procs.append(master)
        try:
            code = master.wait(timeout=limit)
        except subprocess.TimeoutExpired as exc:
            raise LoadTestError(f"Locust ran past {limit:.0f} s and was stopped; see {out / 'locust.log'}") from exc
        deadline = time.monotonic() + 15
        for worker in procs[1:]:  # workers quit when the master tells them; give them a moment
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        return code
    finally:
        for proc in procs:
            _kill_group(proc)


@contextlib.contextmanager
def local_server(cfg: LoadTestConfig, out: Path) -> Iterator[Any]:
    """A tritonserver on free 127.0.0.1 ports serving the model, stopped on exit."""
    import tempfile

    from moe_ids.core.artifacts import default_model_dir
    from moe_ids.triton.ops.bootstrap import ensure_model
    from moe_ids.triton.ops.server import TritonServer
    from moe_ids.triton.repository import build_repository, options_for_model

    model_dir = ensure_model(cfg.model_dir or default_model_dir())  # trains and exports when missing
    with tempfile.TemporaryDirectory(prefix="moe-ids-loadtest-") as tmp:
        repo = build_repository(model_dir, Path(tmp) / "repository", options_for_model(model_dir))
        with TritonServer(repo, log_path=out / "tritonserver.log") as server:
            yield server


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_loadtest(cfg: LoadTestConfig) -> LoadTestResult:
    """Run the configured test and write reports, plot and summary.json; gates decide ``passed``."""
    get_scenario(cfg.scenario)
    if cfg.scenario == "overload":  # its own two-phase run and verdict (src/moe_ids/perf/loadtest/overload.py)
        from moe_ids.perf.loadtest.overload import run_overload

        return run_overload(cfg)
    cfg.plan()  # validates users / duration / shape options before anything starts
    if cfg.workers < 0:
        raise ValueError(f"workers: must be 0 or more, got {cfg.workers}")
    gates_mod.resolve_gates(cfg.scenario, cfg.gates_file, cfg.gate_overrides)  # a bad gates file fails now
    if cfg.serve and cfg.host:
        raise ValueError("host: give either --serve (start a local server) or --host, not both")
    host_url = None if cfg.serve else normalize_host(cfg.host, cfg.protocol)
    out = Path(cfg.out or default_out_dir(cfg.scenario)).resolve()
    out.mkdir(parents=True, exist_ok=True)

    samples: list[resources.Sample] = []
    server_pid = None
    memory = None
    with contextlib.ExitStack() as stack:
        if cfg.serve:
            server = stack.enter_context(local_server(cfg, out))
            host_url = normalize_host(server.grpc_url if cfg.protocol == "grpc" else server.http_url, cfg.protocol)
            server_pid = server.pid
            sampler = resources.ResourceSampler(server.pid, interval=min(5.0, max(1.0, cfg.duration_s / 30)))
            stack.callback(sampler.stop)
            sampler.start()
            samples = sampler.samples
            if cfg.scenario == "soak":  # RSS per process (server, each backend stub): moe_ids.perf.soak
                from moe_ids.perf.soak import MemorySampler

                memory = stack.enter_context(MemorySampler(server.pid, interval=sampler.interval))
        assert host_url is not None
        stats_url = host_url.split("://", 1)[1]
        problem = server_stats.model_ready(cfg.protocol, stats_url)
        if problem:
            raise LoadTestError(f"{problem}; start one with `moe-ids serve` or pass --serve")
        before = server_stats.snapshot(cfg.protocol, stats_url)
        started = time.time()
        code = run_locust(cfg, host_url, out)
        wall = time.time() - started
        after = server_stats.snapshot(cfg.protocol, stats_url)
    if samples:
        resources.write_samples(samples, out / "server_resources.csv")
    run = {"host": host_url, "served_locally": cfg.serve, "server_pid": server_pid, "wall_s": round(wall, 1),
           "locust_exit_code": code,
           "server": server_stats.difference(before, after), "server_resources": resources.summarize(samples)}
    result = analyze(cfg, out, run)
    if memory is not None:
        from moe_ids.perf.soak import record_soak_memory

        record_soak_memory(result, memory.samples, cfg.duration_s)
    return result


def analyze(cfg: LoadTestConfig, out: Path, run: dict[str, Any] | None = None) -> LoadTestResult:
    """Gates, plot and summary.json from the Locust CSVs in ``out`` (of this run, or of an earlier or
    multi-machine one whose CSV prefix was ``out/locust``)."""
    scenario = get_scenario(cfg.scenario)
    plan = cfg.plan()
    gates = gates_mod.resolve_gates(cfg.scenario, cfg.gates_file, cfg.gate_overrides)
    if run is None:  # re-analysis: keep what the original run recorded about itself
        keys = ("host", "served_locally", "server_pid", "wall_s", "locust_exit_code", "server", "server_resources")
        previous = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
        run = {k: previous.get(k) for k in keys}
        run["host"] = run["host"] or cfg.host or "-"
        run["server"], run["server_resources"] = run["server"] or {}, run["server_resources"] or {}
    stats_csv = out / f"{CSV_PREFIX}_stats.csv"
    if not stats_csv.exists():
        raise LoadTestError(f"no Locust statistics at {stats_csv} (Locust exit code {run['locust_exit_code']})"
                            f"\n{_tail(out / 'locust.log')}")
    rows = read_stats(stats_csv, {k.name: k.batch for k in scenario.kinds})
    results = gates_mod.evaluate(gates, rows)
    passed = bool(results) and all(r.passed for r in results)
    plot_path = None
    history = read_history(out / f"{CSV_PREFIX}_stats_history.csv") if (
        out / f"{CSV_PREFIX}_stats_history.csv").exists() else []
    if history:
        from moe_ids.perf.loadtest.plots import plot_history

        memory = resources.read_samples(out / "server_resources.csv")
        plot_path = plot_history(history, out / "latency.png",
                                 f"moe-ids loadtest: {cfg.scenario} over {cfg.protocol}, {cfg.shape} "
                                 f"shape, {cfg.users} users", memory)
    summary = {
        "scenario": cfg.scenario,
        "description": scenario.description,
        "protocol": cfg.protocol,
        **{k: run[k] for k in ("host", "served_locally", "server_pid", "wall_s", "locust_exit_code")},
        "shape": asdict(plan),
        "workers": cfg.workers,
        "imputation": cfg.imputation,
        "requests": {name: row.to_dict() for name, row in rows.items()},
        "flows_per_s": aggregated_flows_per_s(rows),
        "server": run["server"],
        "server_resources": run["server_resources"],
        "load_generator_cpu_bound": _client_cpu_bound(out),
        "gates": [r.to_dict() for r in results],
        "passed": passed,
        "files": {"html": "report.html", "plot": plot_path.name if plot_path else None,
                  "stats_csv": stats_csv.name, "history_csv": f"{CSV_PREFIX}_stats_history.csv",
                  "failures_csv": f"{CSV_PREFIX}_failures.csv", "log": "locust.log"},
        "out": str(out),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return LoadTestResult(out, passed, summary)


def _client_cpu_bound(out: Path) -> bool:
    """Whether Locust warned that a load-generating process hit its CPU limit (figures then bound the client)."""
    for log in out.glob("locust*.log"):
        if "CPU usage" in log.read_text(errors="replace"):
            return True
    return False


def format_summary(summary: dict[str, Any]) -> str:
    """The one-screen text summary printed after every run."""
    if summary.get("overload"):
        from moe_ids.perf.loadtest.overload import format_overload

        return format_overload(summary)
    shape = summary["shape"]
    lines = [
        f"moe-ids loadtest  scenario={summary['scenario']}  protocol={summary['protocol']}  "
        f"host={summary['host']}{' (started here)' if summary['served_locally'] else ''}",
        f"  {summary['description']}",
        f"  shape={shape['shape']}  users={shape['users']}  spawn-rate={shape['spawn_rate']:g}  "
        f"run-time={shape['duration']:g}s  workers={summary['workers']}"
        + (f"  wall={summary['wall_s']}s" if summary["wall_s"] is not None else ""),
        "",
        f"  {'request':<30} {'reqs':>8} {'fails':>7} {'req/s':>9} {'flows/s':>10} "
        f"{'p50':>6} {'p95':>6} {'p99':>6} {'max':>7}  (ms)",
    ]
    reqs = summary["requests"]
    names = sorted(n for n in reqs if n != AGGREGATED) + ([AGGREGATED] if AGGREGATED in reqs else [])
    for name in names:
        r = reqs[name]
        flows = summary["flows_per_s"] if name == AGGREGATED else r["flows_per_s"]
        lines.append(f"  {name:<30} {r['requests']:>8} {r['failures']:>7} {r['rps']:>9.1f} {flows:>10,.0f} "
                     f"{_ms(r['p50_ms'])} {_ms(r['p95_ms'])} {_ms(r['p99_ms'])} {_ms(r['max_ms'], 7)}")
    if summary.get("server"):
        lines += ["", f"  {'server model':<30} {'requests':>9} {'flows':>9} {'mean batch':>11} "
                      f"{'queue ms':>9} {'compute ms':>11}"]
        for model, s in summary["server"].items():
            batch = f"{s['mean_batch']:.1f}" if s["executions"] else "-"
            lines.append(f"  {model:<30} {s['requests']:>9} {s['flows']:>9} {batch:>11} "
                         f"{s['mean_queue_ms']:>9.2f} {s['mean_compute_ms']:>11.2f}")
    res = summary.get("server_resources") or {}
    if res:
        lines += ["", f"  server memory {res['rss_start_mb']:.0f} -> {res['rss_end_mb']:.0f} MB "
                      f"(peak {res['rss_peak_mb']:.0f}, growth {res['rss_growth_mb']:+.0f}), "
                      f"CPU {res['cpu_cores_mean']:.2f} cores"]
    if summary.get("memory"):
        from moe_ids.perf.soak import format_report

        lines += ["", format_report(summary["memory"])]
    if summary.get("load_generator_cpu_bound"):
        lines += ["", "  WARNING: Locust ran out of CPU; these figures measure the load generator as much as the "
                      "server (try --workers)"]
    lines += ["", "  SLO gates:"]
    lines += [f"    {g_line(g)}" for g in summary["gates"]] or ["    (none)"]
    verdict = "PASSED" if summary["passed"] else "FAILED"
    lines += ["", f"  gates {verdict}   (report.html, latency.png, {CSV_PREFIX}_*.csv, summary.json in:)",
              f"  {summary['out']}/"]
    return "\n".join(lines)


def g_line(g: dict[str, Any]) -> str:
    return gates_mod.GateResult(**g).line()


def _ms(value: float, width: int = 6) -> str:
    return f"{'-':>{width}}" if value != value else f"{value:>{width}.0f}"
