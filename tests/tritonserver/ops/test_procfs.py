"""The one /proc reader, on real processes this test starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from moe_ids.triton.ops import procfs


def _gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # reaped: no /proc entry (pid reuse within the test is not a practical concern)


def test_a_live_process_tree_with_its_command_lines() -> None:
    script = ("import subprocess, sys, time; "
              "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)")
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 10
        while len(procfs.process_tree(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = procfs.process_tree(parent.pid)
        assert tree[0] == parent.pid and len(tree) == 2
        assert procfs.children(parent.pid) == tree[1:]
        assert procfs.cmdline(parent.pid)[-1] == script
        assert procfs.is_alive(tree[1]) and parent.pid in procfs.pids()
        assert procfs.rss_bytes(parent.pid) > 1_000_000  # a Python interpreter is megabytes
    finally:
        for pid in reversed(procfs.process_tree(parent.pid)):
            os.kill(pid, signal.SIGKILL)
        parent.wait()


def test_cpu_seconds_grow_with_work() -> None:
    before = procfs.stat(os.getpid()).cpu_seconds
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    assert procfs.stat(os.getpid()).cpu_seconds >= before + 0.2
    assert procfs.machine_busy_seconds() > 0


def test_a_zombie_is_not_alive_though_its_entry_remains() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while procfs.stat(child.pid).state != "Z" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert procfs.stat(child.pid).state == "Z" and not procfs.is_alive(child.pid)
    child.wait()


def test_a_gone_process_reads_as_nothing() -> None:
    pid = _gone_pid()
    assert procfs.stat(pid) is None and procfs.rss_bytes(pid) is None
    assert procfs.cmdline(pid) == [] and procfs.children(pid) == [] and not procfs.is_alive(pid)
