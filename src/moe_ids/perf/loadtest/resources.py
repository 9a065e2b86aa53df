"""Server memory and CPU over a run, sampled from /proc, for servers the runner started itself.

A soak test is about what grows: resident memory of tritonserver plus its Python-backend stub processes
(the model code runs there), and CPU per request. The sampler walks the server's process tree every few
seconds in a background thread; it reads /proc only, so it costs the load nothing measurable.
"""

from __future__ import annotations

import csv
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from moe_ids.triton.ops import procfs


@dataclass
class Sample:
    t: float  # unix time of the sample (aligns with Locust's history timestamps)
    rss_mb: float  # resident memory of the server and all its descendants
    cpu_s: float  # user + system CPU seconds consumed so far by the same processes
    processes: int


def _usage(pid: int) -> tuple[float, float] | None:
    """(rss bytes, cpu seconds) of one process, None once it is gone."""
    rss, st = procfs.rss_bytes(pid), procfs.stat(pid)
    return None if rss is None or st is None else (rss, st.cpu_seconds)


def sample_tree(pid: int, t: float) -> Sample | None:
    usage = [u for u in (_usage(p) for p in procfs.process_tree(pid)) if u is not None]
    if not usage:
        return None
    return Sample(t, sum(u[0] for u in usage) / 2**20, sum(u[1] for u in usage), len(usage))


class ResourceSampler:
    """Samples a process tree every ``interval`` seconds between ``start()`` and ``stop()``."""

    def __init__(self, pid: int, interval: float = 2.0) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="server-resources", daemon=True)

    def start(self) -> ResourceSampler:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        return self.samples

    def _loop(self) -> None:
        while True:
            s = sample_tree(self.pid, time.time())
            if s is not None:
                self.samples.append(s)
            if self._stop.wait(self.interval):
                break


def write_samples(samples: list[Sample], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "rss_mb", "cpu_s", "processes"])
        for s in samples:
            w.writerow([f"{s.t:.2f}", f"{s.rss_mb:.1f}", f"{s.cpu_s:.2f}", s.processes])


def summarize(samples: list[Sample]) -> dict[str, float]:
    """Start/end/peak memory and mean CPU use; ``rss_growth_mb`` is what a soak test watches."""
    if len(samples) < 2:
        return {}
    first, last = samples[0], samples[-1]
    span = max(last.t - first.t, 1e-9)
    return {
        "rss_start_mb": round(first.rss_mb, 1),
        "rss_end_mb": round(last.rss_mb, 1),
        "rss_peak_mb": round(max(s.rss_mb for s in samples), 1),
        "rss_growth_mb": round(last.rss_mb - first.rss_mb, 1),
        "cpu_cores_mean": round((last.cpu_s - first.cpu_s) / span, 2),
        "samples": len(samples),
    }


def read_samples(path: Path) -> list[Sample]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [Sample(float(r["timestamp"]), float(r["rss_mb"]), float(r["cpu_s"]), int(r["processes"]))
                for r in csv.DictReader(fh)]
