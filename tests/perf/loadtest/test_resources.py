"""Server resource sampling from /proc: a process tree's memory and CPU over time."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from moe_ids.perf.loadtest.resources import ResourceSampler, read_samples, summarize, write_samples
from moe_ids.triton.ops.procfs import process_tree


def test_sampler_follows_a_process_tree(tmp_path: Path) -> None:
    # a parent holding a child that allocates ~48 MB and then says so: the tree's RSS must include the child
    child = "b = [1] * (6 << 20); print('ready', flush=True); import time; time.sleep(30)"
    code = f"import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"  # the child inherited the pipe
        sampler = ResourceSampler(parent.pid, interval=0.2).start()
        time.sleep(1.0)
        samples = sampler.stop()
    finally:
        for pid in reversed(process_tree(parent.pid)):  # the child this test started, then its parent
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait()
    assert len(samples) >= 2
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
