"""Resident memory of a served tritonserver and each of its Python-backend stubs over a long run.

A leak in this deployment would show in one process, not in the sum: the model code (preprocessing, ONNX
Runtime, the metrics monitor) runs in the ``triton_python_backend_stub`` processes, batching and HTTP/gRPC in
``tritonserver`` itself. The sampler therefore records RSS per process role — ``tritonserver`` and one role per
Python model (``moe_ids_preprocess``, ``moe_ids_model``), instances of a model summed — and judges growth per
role and in total, after a warm-up during which allocators, ONNX Runtime arenas and Triton's pools settle.

Growth compares the median RSS of a window just after warm-up with that of the last window of the run:
medians of windows, not single samples, so one transient allocation does not decide the verdict.
"""

from __future__ import annotations

import csv
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SERVER_ROLE = "tritonserver"
TOTAL = "total"
MAX_GROWTH = 0.05  # the soak test's limit: RSS after warm-up may grow by less than 5%


@dataclass
class MemorySample:
    elapsed_s: float
    rss_mb: dict[str, float]  # per role; TOTAL is the sum
    pids: dict[str, list[int]] = field(default_factory=dict)


def process_role(proc: psutil.Process) -> str | None:
    """``tritonserver``, the model name of a Python-backend stub (from its model.py path), or None."""
    try:
        cmd = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    if not cmd:
        return None
    exe = Path(cmd[0]).name
    if exe == "tritonserver":
        return SERVER_ROLE
    if exe == "triton_python_backend_stub" and len(cmd) > 1:
        return Path(cmd[1]).parent.parent.name  # <repository>/<model>/<version>/model.py
    return None


def sample_processes(server_pid: int) -> tuple[dict[str, float], dict[str, list[int]]]:
    """(RSS MB per role incl. TOTAL, pids per role) of the server and its descendants; empty once it is gone."""
    try:
        root = psutil.Process(server_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}, {}
    rss: dict[str, float] = {}
    pids: dict[str, list[int]] = {}
    for proc in procs:
        role = process_role(proc)
        if role is None:
            continue
        try:
            mb = proc.memory_info().rss / 2**20
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        rss[role] = rss.get(role, 0.0) + mb
        pids.setdefault(role, []).append(proc.pid)
    if rss:
        rss[TOTAL] = sum(rss.values())
    return rss, pids


class MemorySampler:
    """Samples per-role RSS of a server's process tree every ``interval`` seconds in a background thread."""

    def __init__(self, server_pid: int, interval: float = 5.0) -> None:
        self.server_pid = server_pid
        self.interval = interval
        self.samples: list[MemorySample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._t0 = 0.0

    def start(self) -> MemorySampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> list[MemorySample]:
        self._stop.set()
        self._thread.join(timeout=self.interval + 10)
        return self.samples

    def __enter__(self) -> MemorySampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while True:
            rss, pids = sample_processes(self.server_pid)
            if rss:
                self.samples.append(MemorySample(round(time.monotonic() - self._t0, 2), rss, pids))
            if self._stop.wait(self.interval):
                break


def roles_of(samples: list[MemorySample]) -> list[str]:
    """Roles in a stable order: server, models alphabetically, total last."""
    seen = {r for s in samples for r in s.rss_mb}
    models = sorted(seen - {SERVER_ROLE, TOTAL})
    return [r for r in (SERVER_ROLE, *models, TOTAL) if r in seen]


def write_csv(samples: list[MemorySample], path: Path) -> Path:
    """One row per sample, one RSS column per role (MB), plus the pids seen (a restart shows as a new pid)."""
    roles = roles_of(samples)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["elapsed_s", *(f"{r}_rss_mb" for r in roles), "pids"])
        for s in samples:
            pids = " ".join(f"{r}:{'+'.join(map(str, p))}" for r, p in sorted(s.pids.items()))
            w.writerow([f"{s.elapsed_s:.1f}", *(f"{s.rss_mb.get(r, float('nan')):.1f}" for r in roles), pids])
    return path


def read_csv(path: Path) -> list[MemorySample]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    samples = []
    for row in rows:
        rss = {k[: -len("_rss_mb")]: float(v) for k, v in row.items() if k.endswith("_rss_mb") and v != "nan"}
        samples.append(MemorySample(float(row["elapsed_s"]), rss))
    return samples


def growth_report(samples: list[MemorySample], warmup_s: float, window_s: float,
                  max_growth: float = MAX_GROWTH) -> dict:
    """Per-role RSS after warm-up vs. at the end, as MB and a fraction; ``passed`` when total growth is below
    ``max_growth``. Needs samples beyond the warm-up; a report with ``passed`` None says there were too few."""
    steady = [s for s in samples if s.elapsed_s >= warmup_s]
    report: dict = {"warmup_s": warmup_s, "window_s": window_s, "max_growth": max_growth,
                    "samples": len(samples), "roles": {}, "passed": None}
    if len(steady) < 2:
        report["reason"] = f"fewer than 2 samples after the {warmup_s:.0f} s warm-up"
        return report
    t_first, t_last = steady[0].elapsed_s, steady[-1].elapsed_s
    head = [s for s in steady if s.elapsed_s <= t_first + window_s]
    tail = [s for s in steady if s.elapsed_s >= t_last - window_s]
    for role in roles_of(samples):
        a = [s.rss_mb[role] for s in head if role in s.rss_mb]
        b = [s.rss_mb[role] for s in tail if role in s.rss_mb]
        if not a or not b:
            continue
        start, end = statistics.median(a), statistics.median(b)
        report["roles"][role] = {
            "after_warmup_mb": round(start, 1), "end_mb": round(end, 1),
            "peak_mb": round(max(s.rss_mb.get(role, 0.0) for s in samples), 1),
            "growth_mb": round(end - start, 1), "growth": round((end - start) / start, 4) if start else 0.0,
        }
    report["steady_s"] = round(t_last - t_first, 1)
    total = report["roles"].get(TOTAL)
    report["passed"] = bool(total is not None and total["growth"] < max_growth)
    return report


def format_report(report: dict) -> str:
    lines = [f"  memory (RSS, median of {report['window_s']:.0f} s windows; warm-up {report['warmup_s']:.0f} s, "
             f"{report['samples']} samples):"]
    for role, r in report["roles"].items():
        lines.append(f"    {role:<20} {r['after_warmup_mb']:>8.1f} -> {r['end_mb']:>8.1f} MB  "
                     f"({r['growth']:+.1%}, peak {r['peak_mb']:.1f})")
    verdict = {True: "PASSED", False: "FAILED", None: "NOT JUDGED"}[report["passed"]]
    lines.append(f"    growth after warm-up < {report['max_growth']:.0%}: {verdict}"
                 + (f" ({report['reason']})" if report.get("reason") else ""))
    return "\n".join(lines)


def plot_memory(samples: list[MemorySample], out: Path, title: str, warmup_s: float | None = None) -> Path:
    """RSS per role over time (total on its own axis scale), warm-up shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roles = roles_of(samples)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.6), sharex=True, constrained_layout=True)
    t = [s.elapsed_s for s in samples]
    for role in roles:
        ys = [s.rss_mb.get(role, float("nan")) for s in samples]
        (bottom if role == TOTAL else top).plot(t, ys, label=role)
    for ax, label in ((top, "RSS MB per process"), (bottom, "RSS MB, server + stubs")):
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
        if warmup_s:
            ax.axvspan(0, warmup_s, color="tab:gray", alpha=0.15)
    bottom.set_xlabel("seconds since start (shaded: warm-up)")
    fig.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def soak_windows(duration_s: float) -> tuple[float, float]:
    """(warm-up, comparison window) for a run of ``duration_s``: the first fifth settles (the soak shape ramps
    over its first tenth), and a tenth of the run at each end is compared."""
    return 0.2 * duration_s, max(0.1 * duration_s, 2.0)


def record_soak_memory(result, samples: list[MemorySample], duration_s: float) -> dict:
    """Write memory.csv and memory.png next to a load test's reports, add the growth report to its
    summary.json, and fail the run when memory grew by ``MAX_GROWTH`` or more after warm-up."""
    import json

    out = Path(result.out)
    warmup, window = soak_windows(duration_s)
    report = growth_report(samples, warmup, window)
    if samples:
        write_csv(samples, out / "memory.csv")
        plot_memory(samples, out / "memory.png", f"moe-ids soak: resident memory of tritonserver and its "
                    f"Python-backend stubs ({duration_s:.0f} s)", warmup)
        report["files"] = {"csv": "memory.csv", "plot": "memory.png"}
    result.summary["memory"] = report
    if report["passed"] is False:
        result.passed = False
        result.summary["passed"] = False
    (out / "summary.json").write_text(json.dumps(result.summary, indent=2, default=float) + "\n")
    return report
