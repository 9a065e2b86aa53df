"""Serving benchmark: what Triton delivers against the in-process ceiling and a naive Flask deployment.

All scenarios run on the same machine, one after another, on real held-out flows; client and server share the
cores, as they would on a single box. Scenarios:

- ceiling: numpy preprocessing + ONNX Runtime in this process, 1,024 flows per call (no server at all);
- served batched: the ``moe_ids`` ensemble over gRPC, 1,024 flows per request, 4 requests in flight;
- served single: the ensemble over gRPC, 1 flow per request, 32 in flight (dynamic batching at work);
- bare single: the classifier step ``moe_ids_model`` alone, 1 flow per request with pre-computed
  TABULAR/TEMPORAL/MISSING_MASK, 32 in flight — the cost of the preprocessing hop is the gap to ``served single``;
- baseline single: Flask + PyTorch per request (``moe_ids.perf.baseline_app``), JSON, 32 in flight;
- floor single / floor bare: the served single and bare single loads against do-nothing Python models of the
  same shape (``moe_ids.perf.bench_floor``): the best ``single_vs_bare`` two Python-backend hops allow here.

Load is closed-loop: each finished request immediately sends the next, so "in flight" is exact. gRPC requests
are KServe v2 ``ModelInferRequest`` protobufs built once and sent as futures on one channel (no client thread
per request); the Flask client uses one thread per in-flight request, as HTTP/1.0 without pipelining needs.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from moe_ids.core import contract

BATCH = 1024
BATCHED_IN_FLIGHT = 4
SINGLE_IN_FLIGHT = 32
MAX_ERRORS = 50
GOALS = {"batched_vs_ceiling": 0.90, "single_vs_bare": 0.95, "single_vs_baseline": 15.0,
         "one_hop_batched_vs_ceiling": 0.90, "one_hop_single_vs_bare": 0.95, "one_hop_single_vs_baseline": 15.0}
ONE_HOP_MODEL = "moe_ids_one_hop"  # the one-hop layout's model, served beside the ensemble under its own name


def add_one_hop_model(repository: Path, model_dir: Path, opts) -> str:
    """The one-hop layout's ``moe_ids`` model, renamed, in ``repository`` next to the ensemble: both layouts are
    measured by the same server in the same session."""
    import shutil
    import tempfile

    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from moe_ids.triton.repository import HEADER, build_repository

    with tempfile.TemporaryDirectory(prefix="one-hop-") as tmp:
        built = build_repository(model_dir, Path(tmp), opts)
        target = Path(repository) / ONE_HOP_MODEL
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(built / contract.ENSEMBLE_MODEL), target)
    config = text_format.Parse((target / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    config.name = ONE_HOP_MODEL
    (target / "config.pbtxt").write_text(HEADER + text_format.MessageToString(config))
    return ONE_HOP_MODEL


@dataclass
class Result:
    """Throughput and per-request latency of one scenario."""

    name: str
    flows_per_s: float
    requests: int
    flows_per_request: int
    in_flight: int
    p50_ms: float
    p99_ms: float
    errors: int = 0
    notes: dict = field(default_factory=dict)
    latencies_s: list = field(default_factory=list, repr=False)  # raw samples, for merging rounds
    elapsed_s: float = 0.0

    def public(self) -> dict:
        out = asdict(self)
        out.pop("latencies_s")
        return out


def _summary(name: str, latencies: list[float], flows_per_request: int, elapsed: float, in_flight: int,
             errors: int = 0) -> Result:
    lat = np.asarray(latencies) * 1000.0 if latencies else np.asarray([np.nan])
    return Result(name=name, flows_per_s=len(latencies) * flows_per_request / elapsed, requests=len(latencies),
                  flows_per_request=flows_per_request, in_flight=in_flight, p50_ms=float(np.percentile(lat, 50)),
                  p99_ms=float(np.percentile(lat, 99)), errors=errors, latencies_s=list(latencies),
                  elapsed_s=elapsed)


def merge(parts: list[Result]) -> Result:
    """One result from several rounds of the same scenario: all samples, total time, all errors."""
    first = parts[0]
    merged = _summary(first.name, [v for p in parts for v in p.latencies_s], first.flows_per_request,
                      sum(p.elapsed_s for p in parts), first.in_flight, sum(p.errors for p in parts))
    for p in parts:
        merged.notes.update(p.notes)
    merged.notes["rounds"] = len(parts)
    return merged


def held_out_flows(model_dir: Path, n: int = 4096, seed: int = 0) -> np.ndarray:
    """Real flows of the model's test split (float32, NaN = missing), tiled up to ``n`` rows."""
    from moe_ids.data.corpus import model_split

    corpus, split = model_split(model_dir)
    test = split["test"]
    rows = np.random.default_rng(seed).permutation(test)
    rows = np.resize(rows, n)
    return corpus.features[rows].astype(np.float32)


class Ceiling:
    """numpy preprocessing + ONNX Runtime in-process, 1,024 flows per call: no server, no IPC, no network."""

    def __init__(self, model_dir: Path, x: np.ndarray, threads: int = 2) -> None:
        from moe_ids.core.artifacts import ONNX_FP32, load_stats
        from moe_ids.core.onnx_runtime import make_session
        from moe_ids.core.preprocessing import Preprocessor

        self.path, self.threads, self.x = model_dir / ONNX_FP32, threads, x
        self.session = make_session(self.path, threads=threads)
        self.pre = Preprocessor(load_stats(model_dir))
        self.batches = [x[s:s + BATCH] for s in range(0, len(x) - BATCH + 1, BATCH)]
        for b in self.batches[:3]:
            self.call(b)

    def call(self, batch: np.ndarray) -> None:
        from moe_ids.core.onnx_runtime import run_onnx

        run_onnx(self.session, *self.pre.transform(batch))

    def run(self, seconds: float) -> Result:
        latencies: list[float] = []
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            self.call(self.batches[i % len(self.batches)])
            latencies.append(time.perf_counter() - t0)
            i += 1
        return _summary("ceiling", latencies, BATCH, time.perf_counter() - start, 1)

    def onnx_only(self, seconds: float) -> float | None:
        """The exporter's ONNX-only figure, for reference: the ceiling minus preprocessing."""
        try:
            from moe_ids.export.throughput import measure_onnx_throughput
        except ImportError:
            return None
        arrays = self.pre.transform(self.x)
        return measure_onnx_throughput(self.path, arrays, batch=BATCH, seconds=seconds, threads=self.threads)


def grpc_request(model: str, arrays: dict[str, np.ndarray]):
    """A serialised-once KServe v2 ``ModelInferRequest`` (FP32 tensors as raw little-endian bytes).

    Building the protobuf once per payload, as perf_analyzer does, keeps the client's share of the two cores
    small: ``tritonclient``'s ``async_infer`` rebuilds it for every call.
    """
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    for name, array in arrays.items():
        request.inputs.add(name=name, datatype="FP32", shape=list(array.shape))
        request.raw_input_contents.append(np.ascontiguousarray(array, dtype="<f4").tobytes())
    return request


def closed_loop_grpc(url: str, requests: list, flows_per_request: int, in_flight: int, seconds: float,
                     name: str, warmup_s: float = 0.5) -> Result:
    """Keep ``in_flight`` gRPC requests outstanding for ``seconds``; each completion sends the next."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    channel = grpc.insecure_channel(url, options=[("grpc.max_send_message_length", 1 << 30),
                                                  ("grpc.max_receive_message_length", 1 << 30)])
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    lock = threading.Lock()
    done = threading.Event()
    state = {"next": 0, "outstanding": 0, "errors": 0, "record": False, "stop": False}
    latencies: list[float] = []
    first_error: list[str] = []

    def send() -> None:
        with lock:
            i = state["next"]
            state["next"] += 1
            state["outstanding"] += 1
        t0 = time.perf_counter()
        future = stub.ModelInfer.future(requests[i % len(requests)], timeout=60)
        future.add_done_callback(lambda f: finish(t0, f))

    def finish(t0: float, future) -> None:
        elapsed = time.perf_counter() - t0
        error = future.exception()
        with lock:
            state["outstanding"] -= 1
            if error is not None:
                state["errors"] += 1
                if not first_error:
                    first_error.append(str(error))
                if state["errors"] >= MAX_ERRORS:  # a broken server fails fast: stop instead of spinning
                    state["stop"] = True
            elif state["record"]:
                latencies.append(elapsed)
            stop = state["stop"]
            if stop and state["outstanding"] == 0:
                done.set()
        if not stop:
            send()

    for _ in range(in_flight):
        send()
    time.sleep(warmup_s)
    with lock:
        state["record"] = True
        start = time.perf_counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not state["stop"]:
        time.sleep(0.05)
    with lock:
        state["record"] = False
        elapsed = time.perf_counter() - start
        state["stop"] = True
        if state["outstanding"] == 0:
            done.set()
    done.wait(timeout=60)
    channel.close()
    result = _summary(name, latencies, flows_per_request, elapsed, in_flight, state["errors"])
    if first_error:
        result.notes["first_error"] = first_error[0][:300]
    return result


def _features_payloads(x: np.ndarray, rows: int, count: int, model: str = contract.ENSEMBLE_MODEL) -> list:
    payloads = []
    for k in range(count):
        start = (k * rows) % max(len(x) - rows + 1, 1)
        payloads.append(grpc_request(model, {contract.INPUT_FEATURES: x[start:start + rows]}))
    return payloads


def _classifier_payloads(model_dir: Path, x: np.ndarray, count: int, model: str = contract.CLASSIFIER_MODEL) -> list:
    from moe_ids.core.artifacts import load_stats
    from moe_ids.core.preprocessing import Preprocessor

    arrays = Preprocessor(load_stats(model_dir)).transform(x[:count])
    return [grpc_request(model, {name: a[k:k + 1] for name, a in
                                                     zip(contract.ONNX_INPUTS, arrays, strict=True)})
            for k in range(count)]


def measure_baseline(model_dir: Path, x: np.ndarray, seconds: float, in_flight: int = SINGLE_IN_FLIGHT,
                     log_path: Path | None = None) -> Result:
    """Flask + PyTorch in its own process (Werkzeug threaded server), single-flow JSON requests."""
    from moe_ids.perf.baseline_app import encode_flow
    from moe_ids.triton.ops.server import free_port

    port = free_port()
    log = open(log_path or os.devnull, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "moe_ids.perf.baseline_app", "--port", str(port),
                             "--model-dir", str(model_dir)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    bodies = [json.dumps({"features": [encode_flow(row)]}) for row in x[:512]]
    try:
        _wait_http(port, proc, timeout=120)
        return _closed_loop_http(port, bodies, in_flight, seconds)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_http(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"baseline Flask app exited with code {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("baseline Flask app did not become healthy")


def _closed_loop_http(port: int, bodies: list[str], in_flight: int, seconds: float,
                      warmup_s: float = 0.5) -> Result:
    latencies: list[list[float]] = [[] for _ in range(in_flight)]
    errors = [0] * in_flight
    t_start = time.perf_counter()
    record_from, record_to = t_start + warmup_s, t_start + warmup_s + seconds

    def worker(k: int) -> None:
        i = k
        headers = {"Content-Type": "application/json"}
        while True:
            t0 = time.perf_counter()
            if t0 >= record_to:
                return
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("POST", "/predict", body=bodies[i % len(bodies)], headers=headers)
                resp = conn.getresponse()
                resp.read()
                conn.close()
                ok = resp.status == 200
            except OSError:
                ok = False
            t1 = time.perf_counter()
            if not ok:
                errors[k] += 1
            elif t0 >= record_from and t1 <= record_to:
                latencies[k].append(t1 - t0)
            i += in_flight

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(in_flight)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    merged = [v for lat in latencies for v in lat]
    return _summary("baseline_single", merged, 1, seconds, in_flight, sum(errors))


def run_benchmark(seconds: float = 10.0, model_dir: Path | None = None, log: Callable[[str], None] = print,
                  work_dir: Path | None = None, rounds: int = 3, **repository_options) -> dict:
    """All scenarios; returns the JSON-ready report (flows/s, p50/p99 per scenario, ratios).

    The served scenarios and the ceiling run interleaved in ``rounds`` rounds (``seconds / rounds`` each), so a
    burst from another process on the shared machine hits every scenario a little instead of one a lot; the
    ratios are what this protects.
    """
    import tempfile

    from moe_ids.core.artifacts import default_model_dir
    from moe_ids.perf.bench_floor import FLOOR_ENSEMBLE, FLOOR_MODEL, add_floor_models
    from moe_ids.triton.ops.bootstrap import ensure_model
    from moe_ids.triton.ops.server import TritonServer
    from moe_ids.triton.repository import build_repository, options_for_model

    model_dir = ensure_model(model_dir or default_model_dir())
    x = held_out_flows(model_dir)
    chunk = seconds / rounds
    parts: dict[str, list[Result]] = {k: [] for k in ("ceiling", "served_batched", "served_single", "bare_single",
                                                      "one_hop_batched", "one_hop_single", "floor_single",
                                                      "floor_bare")}
    ceiling = Ceiling(model_dir, x)
    with tempfile.TemporaryDirectory(prefix="moe-ids-bench-", dir=work_dir) as tmp:
        # the ensemble under its own name (the served_* and bare_* rows), the one-hop layout beside it
        opts = options_for_model(model_dir, **{**repository_options, "layout": "ensemble"})
        repository = build_repository(model_dir, Path(tmp) / "repository", opts)
        add_floor_models(repository, opts)
        add_one_hop_model(repository, model_dir, options_for_model(model_dir, **{**repository_options,
                                                                                 "layout": "one-hop"}))
        with TritonServer(repository, log_path=Path(tmp) / "tritonserver.log") as server:
            url = server.grpc_url
            batched, single = _features_payloads(x, BATCH, 4), _features_payloads(x, 1, 512)
            bare = _classifier_payloads(model_dir, x, 512)
            one_hop_batched = _features_payloads(x, BATCH, 4, ONE_HOP_MODEL)
            one_hop_single = _features_payloads(x, 1, 512, ONE_HOP_MODEL)
            floor_single = _features_payloads(x, 1, 512, FLOOR_ENSEMBLE)
            floor_bare = _classifier_payloads(model_dir, x, 512, FLOOR_MODEL)
            log(f"tritonserver on {url} (gRPC); {rounds} rounds of {chunk:.2f} s per scenario: ceiling "
                f"(in-process, batch {BATCH}), ensemble {BATCH} flows x {BATCHED_IN_FLIGHT} in flight, "
                f"ensemble 1 flow x {SINGLE_IN_FLIGHT}, {contract.CLASSIFIER_MODEL} 1 flow x {SINGLE_IN_FLIGHT}, the "
                f"one-hop layout ({ONE_HOP_MODEL}) batched and single, "
                f"and the same two against do-nothing models ({FLOOR_ENSEMBLE}, {FLOOR_MODEL})")
            for r in range(rounds):
                warm = 0.5 if r == 0 else 0.1
                parts["ceiling"].append(ceiling.run(chunk))
                parts["served_batched"].append(closed_loop_grpc(url, batched, BATCH, BATCHED_IN_FLIGHT, chunk,
                                                                "served_batched", warm))
                parts["served_single"].append(closed_loop_grpc(url, single, 1, SINGLE_IN_FLIGHT, chunk,
                                                               "served_single", warm))
                parts["bare_single"].append(closed_loop_grpc(url, bare, 1, SINGLE_IN_FLIGHT, chunk,
                                                             "bare_single", warm))
                parts["one_hop_batched"].append(closed_loop_grpc(url, one_hop_batched, BATCH, BATCHED_IN_FLIGHT,
                                                                 chunk, "one_hop_batched", warm))
                parts["one_hop_single"].append(closed_loop_grpc(url, one_hop_single, 1, SINGLE_IN_FLIGHT, chunk,
                                                                "one_hop_single", warm))
                parts["floor_single"].append(closed_loop_grpc(url, floor_single, 1, SINGLE_IN_FLIGHT, chunk,
                                                              "floor_single", warm))
                parts["floor_bare"].append(closed_loop_grpc(url, floor_bare, 1, SINGLE_IN_FLIGHT, chunk,
                                                            "floor_bare", warm))
            stats = _batch_stats(url)
        results = {k: merge(v) for k, v in parts.items()}
        onnx_only = ceiling.onnx_only(min(seconds, 2.0))
        if onnx_only:
            results["ceiling"].notes["onnx_only_flows_per_s"] = round(onnx_only)
        log(f"baseline: Flask + PyTorch per request, JSON, {SINGLE_IN_FLIGHT} in flight ({seconds:g} s)")
        results["baseline_single"] = measure_baseline(model_dir, x, seconds, log_path=Path(tmp) / "flask.log")
    return build_report(results, seconds, opts, stats)


def _batch_stats(url: str) -> dict[str, float]:
    """Mean flows per execution of each composing model over the whole run (dynamic batching at work)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    out = {}
    for model in (contract.PREPROCESS_MODEL, contract.CLASSIFIER_MODEL):
        s = client.get_inference_statistics(model).model_stats[0]
        out[model] = round(s.inference_count / max(s.execution_count, 1), 2)
    client.close()
    return out


def build_report(results: dict[str, Result], seconds: float, opts, batch_stats: dict[str, float]) -> dict:
    rate = {k: r.flows_per_s for k, r in results.items()}

    def ratio(a: str, b: str) -> float:
        return round(rate[a] / rate[b], 3) if rate[b] > 0 else 0.0

    report = {
        "ceiling_flows_per_s": round(rate["ceiling"], 1),
        "served_batched_flows_per_s": round(rate["served_batched"], 1),
        "served_single_flows_per_s": round(rate["served_single"], 1),
        "bare_single_flows_per_s": round(rate["bare_single"], 1),
        "baseline_single_flows_per_s": round(rate["baseline_single"], 1),
        "ratios": {
            "batched_vs_ceiling": ratio("served_batched", "ceiling"),
            "single_vs_bare": ratio("served_single", "bare_single"),
            "single_vs_baseline": ratio("served_single", "baseline_single"),
            "one_hop_batched_vs_ceiling": ratio("one_hop_batched", "ceiling"),
            "one_hop_single_vs_bare": ratio("one_hop_single", "bare_single"),
            "one_hop_single_vs_baseline": ratio("one_hop_single", "baseline_single"),  # the cpu default's
        },
        # the cpu layouts side by side, same server, same session (docs/production.md: which one is the default)
        "one_hop_vs_ensemble": {"single": ratio("one_hop_single", "served_single"),
                                "batched": ratio("one_hop_batched", "served_batched")},
        "goals": GOALS,
        # Two do-nothing Python-backend hops against one, same load: the best single_vs_bare attainable here.
        "floor": {
            "single_flows_per_s": round(rate["floor_single"], 1),
            "bare_flows_per_s": round(rate["floor_bare"], 1),
            "single_vs_bare": ratio("floor_single", "floor_bare"),
            "served_single_vs_floor_single": ratio("served_single", "floor_single"),
        },
        "latency_ms": {k: {"p50": round(r.p50_ms, 3), "p99": round(r.p99_ms, 3)} for k, r in results.items()},
        "scenarios": {k: r.public() for k, r in results.items()},
        "mean_flows_per_execution": batch_stats,
        "seconds_per_scenario": seconds,
        "cpu_count": os.cpu_count(),
        "repository": {"preprocess_instances": opts.preprocess_instances,
                       "classifier_instances": opts.classifier_instances, "threads": opts.threads,
                       "queue_policy": opts.queue_policy,
                       "max_queue_delay_us": opts.max_queue_delay_us,
                       "preferred_batch_sizes": list(opts.preferred_batch_sizes)},
    }
    for key, r in results.items():
        report[f"{key}_p50_ms"] = round(r.p50_ms, 3)
        report[f"{key}_p99_ms"] = round(r.p99_ms, 3)
    return report


def format_report(report: dict) -> str:
    lines = [f"{'scenario':<18}{'flows/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'requests':>10}{'errors':>8}"]
    for key, s in report["scenarios"].items():
        lines.append(f"{key:<18}{s['flows_per_s']:>12,.0f}{s['p50_ms']:>10.2f}{s['p99_ms']:>10.2f}"
                     f"{s['requests']:>10}{s['errors']:>8}")
    lines.append("")
    for name, value in report["ratios"].items():
        goal = report["goals"][name]
        lines.append(f"{name:<20}{value:>8.3f}   goal >= {goal:g}   {'met' if value >= goal else 'NOT met'}")
    floor = report["floor"]
    lines.append(f"floor: do-nothing ensemble / do-nothing model {floor['single_vs_bare']:.3f} (the best "
                 f"single_vs_bare two Python-backend hops reach here); served single / do-nothing ensemble "
                 f"{floor['served_single_vs_floor_single']:.3f}")
    layouts = report["one_hop_vs_ensemble"]
    lines.append(f"one-hop / ensemble layout: single {layouts['single']:.3f}, batched {layouts['batched']:.3f}")
    lines.append(f"mean flows per execution (whole run): {report['mean_flows_per_execution']}")
    onnx_only = report["scenarios"]["ceiling"]["notes"].get("onnx_only_flows_per_s")
    if onnx_only:
        lines.append(f"ONNX Runtime alone (no preprocessing), batch {BATCH}: {onnx_only:,.0f} flows/s")
    return "\n".join(lines)
