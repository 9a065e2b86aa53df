"""``moe-ids stream bench``: sustained flows/s through the stream with 1, 2, 4 workers against ``moe-ids score`` on
the same flows and machine, and the end-to-end latency at a fixed offered rate.

Everything runs in one session on servers of its own (tritonserver and nats-server on free ports), so the
figures are ratios against a baseline measured minutes apart on the same machine. Throughput is N flows over
the time between the first and the last verdict JetStream stored (worker start-up is not counted; the flows
are published before the workers start); latency is the time from a flow's publication to its verdict's
arrival in VERDICTS, at half the 2-worker throughput.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import topology
from .nats_server import NatsServer
from .publisher import Publisher, PublishSettings, publish_file


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their descendants, so far."""
    from moe_ids.triton.ops import procfs

    stats = (procfs.stat(p) for pid in pids for p in procfs.process_tree(pid))
    return sum(s.cpu_seconds for s in stats if s is not None)


def bench_flows(n: int, path: Path) -> Path:
    """N real flows of the bundled corpus (repeated when N is larger), as a CSV ``moe-ids score`` reads."""
    from moe_ids.data.loading import default_training_csv, load_flows

    features = load_flows(default_training_csv()).features
    rows = np.resize(np.arange(len(features)), n)
    features.iloc[rows].reset_index(drop=True).to_csv(path, index=False)
    return path


def _moe_ids(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moe_ids.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def score_rate(path: Path, triton_url: str, out: Path, triton_pid: int | None = None) -> tuple[float, dict[str, float]]:
    """flows/s of ``moe-ids score`` on the file, as its summary reports it, and the CPU microseconds per flow of
    the client (start-up and CSV reading included) and of tritonserver."""
    import resource

    client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = cpu_seconds([triton_pid or 0])
    done = _moe_ids("score", str(path), "-o", str(out), "--url", triton_url, "-q")
    client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (client_after.ru_utime + client_after.ru_stime) - (client_before.ru_utime + client_before.ru_stime)
    server = cpu_seconds([triton_pid or 0]) - server_before
    if done.returncode != 0:
        raise RuntimeError(f"moe-ids score failed: {done.stderr[-2000:]}")
    # the rate in parentheses, not flows / seconds: the seconds are printed to 0.1 s, which on a run of about a
    # second would quantise the baseline by up to 10%
    match = re.search(r"scored (\d+) flows in [\d.]+ s \(([\d,]+) flows/s\)", done.stderr)
    if not match:
        raise RuntimeError(f"unexpected moe-ids score summary: {done.stderr[-500:]}")
    n = int(match.group(1))
    return float(match.group(2).replace(",", "")), {"moe-ids score": client / n * 1e6, "tritonserver": server / n * 1e6}


async def stored(url: str, stream: str) -> list[tuple[dict[str, Any], float]]:
    """(message, stored at, epoch seconds) of every message in the stream, read by an ordered consumer."""
    import nats

    nc = await nats.connect(servers=[url])
    js = nc.jetstream(timeout=30)
    total = (await js.stream_info(stream)).state.messages
    sub = await js.subscribe(topology.STREAM_SUBJECTS[stream], stream=stream, ordered_consumer=True)
    out: list[tuple[dict[str, Any], float]] = []
    while len(out) < total:
        msg = await sub.next_msg(timeout=30)
        out.append((json.loads(msg.data), msg.metadata.timestamp.timestamp()))
    await nc.close()
    return out


async def stream_count(url: str, stream: str) -> int:
    import nats

    nc = await nats.connect(servers=[url])
    try:
        return int((await nc.jetstream().stream_info(stream)).state.messages)
    finally:
        await nc.close()


def start_workers(n: int, nats_url: str, triton_url: str, logs: Path) -> list[subprocess.Popen]:
    """``n`` worker processes; each writes its log to the path in its ``log_path`` attribute."""
    procs = []
    for i in range(n):
        path = logs / f"worker-{len(list(logs.glob('worker-*')))}-{i}.log"
        log = open(path, "wb")  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, "-m", "moe_ids.cli", "stream", "--nats", nats_url, "--url",
                                       triton_url, "--progress", "0", "--max-runtime", "900"],
                                      stdout=log, stderr=subprocess.STDOUT))
        procs[-1].log_path = path  # type: ignore[attr-defined]
    return procs


_START_UP = re.compile(r"start-up took ([\d.]+) CPU s")


def start_up_cpu(procs: list[subprocess.Popen]) -> float:
    """CPU seconds the workers spent before they began scoring (imports, connecting), from their bind lines:
    not per-flow work, so the per-flow figures leave it out."""
    total = 0.0
    for proc in procs:
        match = _START_UP.search(proc.log_path.read_text(errors="replace"))  # type: ignore[attr-defined]
        if match is None:
            raise RuntimeError(f"worker log {proc.log_path} has no start-up line")  # type: ignore[attr-defined]
        total += float(match.group(1))
    return total


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise RuntimeError(f"timed out waiting for {what}")


def throughput_run(n_workers: int, flows: Path, n: int, triton_pid: int | None,
                   triton_url: str, root: Path) -> tuple[float, dict[str, float]]:
    """Publish N flows, then let ``n_workers`` drain them: flows/s between the first and last verdict, and the CPU
    microseconds per flow each part spent while they drained (workers, nats-server, tritonserver): on shared
    cores the throughput is whatever the sum of those allows."""
    with NatsServer(root / f"js-{n_workers}", port=_free(), monitor_port=_free(),
                    log_path=root / f"nats-{n_workers}.log") as nats_server:
        asyncio.run(publish_file(flows, PublishSettings(nats_url=nats_server.url)))
        servers = {"nats-server": [nats_server.pid or 0], "tritonserver": [triton_pid or 0]}
        before = {name: cpu_seconds(pids) for name, pids in servers.items()}
        procs = start_workers(n_workers, nats_server.url, triton_url, root)
        try:
            wait_for(lambda: asyncio.run(stream_count(nats_server.url, topology.VERDICTS)) >= n, 900,
                     f"{n} verdicts with {n_workers} workers")
            used = {"workers": cpu_seconds([p.pid for p in procs]) - start_up_cpu(procs),
                    **{name: cpu_seconds(pids) - before[name] for name, pids in servers.items()}}
        finally:
            stop_workers(procs)
        times = sorted(t for _, t in asyncio.run(stored(nats_server.url, topology.VERDICTS)))
    return (len(times) - 1) / max(1e-9, times[-1] - times[0]), {k: v / n * 1e6 for k, v in used.items()}


async def paced(url: str, features: pd.DataFrame, rate: float, seconds: float) -> int:
    """Publish flows at ``rate`` per second for ``seconds``, each stamped with its publication time."""
    tick = 0.05
    per_tick = max(1, round(rate * tick))
    values = features.to_numpy(np.float64)
    names = [str(c) for c in features.columns]
    n = 0
    async with Publisher(PublishSettings(nats_url=url)) as pub:
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            began = time.monotonic()
            items = []
            for _ in range(per_tick):
                row = values[n % len(values)]
                body = {"id": f"lat-{n}", "ts": time.time(),
                        "features": {k: (None if v != v else float(v)) for k, v in zip(names, row)}}
                items.append(("flows.bench", f"lat-{n}", json.dumps(body).encode()))
                n += 1
            await pub.publish(items)
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - began)))
    return n


def latency_run(rate: float, seconds: float, flows: Path, triton_url: str, root: Path) -> dict[str, float]:
    features = pd.read_csv(flows, nrows=5000)
    with NatsServer(root / "js-latency", port=_free(), monitor_port=_free(), log_path=root / "nats-lat.log") as srv:
        procs = start_workers(2, srv.url, triton_url, root)
        try:
            wait_for(lambda: all("scoring FLOWS" in p.read_text(errors="replace")
                                 for p in sorted(root.glob("worker-*.log"))[-2:]), 60, "workers to bind")
            sent = asyncio.run(paced(srv.url, features, rate, seconds))
            wait_for(lambda: asyncio.run(stream_count(srv.url, topology.VERDICTS)) >= sent, 120, "the last verdicts")
        finally:
            stop_workers(procs)
        latencies = np.array([t - v["ts"] for v, t in asyncio.run(stored(srv.url, topology.VERDICTS))])
    return {"rate": rate, "flows": float(sent), "p50_ms": float(np.percentile(latencies, 50) * 1000),
            "p99_ms": float(np.percentile(latencies, 99) * 1000)}


def _cpu_line(cpu: dict[str, float]) -> str:
    return "      CPU per flow: " + ", ".join(f"{name} {us:.0f} us" for name, us in cpu.items())


def _free() -> int:
    from moe_ids.triton.ops.server import free_port

    return free_port()


def run_stream_bench(n: int, worker_counts: list[int], latency_seconds: float, json_path: Path | None) -> int:
    from moe_ids.triton.ops.bootstrap import ensure_model
    from moe_ids.triton.ops.server import TritonServer
    from moe_ids.triton.repository import build_repository, options_for_model

    with tempfile.TemporaryDirectory(prefix="moe-ids-stream-bench-") as tmp:
        root = Path(tmp)
        model_dir = ensure_model()
        repository = build_repository(model_dir, root / "repository", options_for_model(model_dir))
        flows = bench_flows(n, root / "flows.csv")
        with TritonServer(repository, log_path=root / "tritonserver.log") as triton:
            began = time.monotonic()
            print(f"stream bench: {n} real flows, tritonserver {triton.grpc_url}, fresh nats-server per run",
                  flush=True)
            # the median of three: one run of the baseline lasts about a second, short enough for a hiccup
            runs = sorted((score_rate(flows, triton.grpc_url, root / "scored.csv", triton.pid) for _ in range(3)),
                          key=lambda run: run[0])
            baseline, score_cpu = runs[1]
            print(f"  moe-ids score (baseline)       {baseline:10,.0f} flows/s", flush=True)
            print(_cpu_line(score_cpu), flush=True)
            rates: dict[int, float] = {}
            cpu: dict[int, dict[str, float]] = {}
            for workers in worker_counts:
                rates[workers], cpu[workers] = throughput_run(workers, flows, n, triton.pid, triton.grpc_url, root)
                print(f"  stream, {workers} worker(s)            {rates[workers]:10,.0f} flows/s   "
                      f"{rates[workers] / baseline:5.2f} x score   (at {time.monotonic() - began:.0f} s)", flush=True)
                print(_cpu_line(cpu[workers]), flush=True)
            reference = rates.get(2, max(rates.values()))
            latency = latency_run(0.5 * reference, latency_seconds, flows, triton.grpc_url, root)
            print(f"  end to end at {latency['rate']:,.0f} flows/s (half of 2 workers' rate), 2 workers: "
                  f"p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms over {latency['flows']:.0f} flows",
                  flush=True)
    figures = {"flows": n, "score_flows_per_s": baseline, "stream_flows_per_s": rates,
               "ratio_to_score": {w: r / baseline for w, r in rates.items()},
               "cpu_us_per_flow": {"score": score_cpu, **cpu}, "latency": latency}
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2))
    return 0
