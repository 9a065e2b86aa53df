"""Server resource sampling from /proc: a process tree's memory and CPU over time."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from moe_ids.loadtest.resources import ResourceSampler, process_tree, read_samples, summarize, write_samples


def test_sampler_follows_a_process_tree(tmp_path: Path) -> None:
    # a parent holding a child that allocates ~40 MB: the tree's RSS must include the child
    code = ("import subprocess, sys, time; "
            "c = subprocess.Popen([sys.executable, '-c', 'b = [1] * (6 << 20); import time; time.sleep(30)']); "
            "time.sleep(30)")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while len(process_tree(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        sampler = ResourceSampler(parent.pid, interval=0.2).start()
        time.sleep(0.7)
        samples = sampler.stop()
    finally:
        for pid in reversed(process_tree(parent.pid)):  # the child this test started, then its parent
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait()
    assert len(samples) >= 3
    assert all(s.processes == 2 for s in samples)
    assert min(s.rss_mb for s in samples) > 40
    summary = summarize(samples)
    assert summary["rss_peak_mb"] >= summary["rss_end_mb"] > 40
    assert abs(summary["rss_growth_mb"]) < 5
    write_samples(samples, tmp_path / "r.csv")
    back = read_samples(tmp_path / "r.csv")
    assert [round(s.rss_mb, 1) for s in back] == [round(s.rss_mb, 1) for s in samples]


def test_gone_process_yields_no_samples() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    sampler = ResourceSampler(proc.pid, interval=0.05).start()
    time.sleep(0.2)
    assert sampler.stop() == []
    assert summarize([]) == {}
