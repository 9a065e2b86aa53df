"""The run's picture: throughput and p50/p95/p99 latency over time, from Locust's per-second history."""

from __future__ import annotations

import math
from pathlib import Path

from moe_ids.perf.loadtest.locust_csv import HistoryPoint
from moe_ids.perf.loadtest.resources import Sample


def plot_history(points: list[HistoryPoint], out: Path, title: str, memory: list[Sample] | None = None) -> Path:
    """Panels sharing the time axis: req/s (+ failures/s, users), latency percentiles, and server memory
    when the runner sampled it (servers it started)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [p.t for p in points]
    panels = 3 if memory else 2
    fig, axes = plt.subplots(panels, 1, figsize=(10, 3.3 * panels), sharex=True, constrained_layout=True)
    top, bottom = axes[0], axes[1]
    top.plot(t, [p.rps for p in points], label="requests/s", color="tab:blue")
    top.plot(t, [p.failures_per_s for p in points], label="failures/s", color="tab:red")
    top.set_ylabel("requests/s")
    top.grid(alpha=0.3)
    users = top.twinx()
    users.step(t, [p.users for p in points], where="post", color="tab:gray", alpha=0.6, label="users")
    users.set_ylabel("users")
    users.set_ylim(bottom=0)
    lines = top.get_legend_handles_labels()
    more = users.get_legend_handles_labels()
    top.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize="small")
    for attr, label, color in (("p50_ms", "p50", "tab:green"), ("p95_ms", "p95", "tab:orange"),
                               ("p99_ms", "p99", "tab:red")):
        # before the first responses Locust writes 0 for every percentile: leave those out, not plot a dip
        ys = [math.nan if p.total_requests == 0 or p.p50_ms == p.p95_ms == p.p99_ms == 0 else getattr(p, attr)
              for p in points]
        bottom.plot(t, ys, label=label, color=color)
    bottom.set_ylabel("latency ms (10 s window)")
    bottom.grid(alpha=0.3)
    bottom.legend(loc="upper left", fontsize="small")
    if memory:
        t0 = points[0].timestamp if points else memory[0].t  # both carry unix times
        axes[2].plot([m.t - t0 for m in memory], [m.rss_mb for m in memory], color="tab:purple")
        axes[2].set_ylabel("server RSS MB")
        axes[2].set_ylim(0, max(m.rss_mb for m in memory) * 1.15)  # growth shows against the whole
        axes[2].grid(alpha=0.3)
    axes[-1].set_xlabel("seconds since start")
    fig.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
