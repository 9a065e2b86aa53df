"""The run's picture: throughput and p50/p95/p99 latency over time, from Locust's per-second history."""

from __future__ import annotations

import math
from pathlib import Path

from moe_ids.loadtest.locust_csv import HistoryPoint


def plot_history(points: list[HistoryPoint], out: Path, title: str) -> Path:
    """Two panels sharing the time axis: req/s (+ failures/s, users) on top, latency percentiles below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [p.t for p in points]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, constrained_layout=True)
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
        # before the first response Locust writes 0 for every percentile: leave those out, not plot a dip
        ys = [math.nan if p.total_requests == 0 else getattr(p, attr) for p in points]
        bottom.plot(t, ys, label=label, color=color)
    bottom.set_ylabel("latency ms (10 s window)")
    bottom.set_xlabel("seconds since start")
    bottom.grid(alpha=0.3)
    bottom.legend(loc="upper left", fontsize="small")
    fig.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
