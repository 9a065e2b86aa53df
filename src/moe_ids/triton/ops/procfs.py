"""The one reader of /proc: process trees, command lines, states, memory and CPU time.

The watchdog, the container probe, the load tests' resource sampler and the overload verdict all need the same
few facts about tritonserver and its stub processes; reading them here once keeps the parsing (the ``stat`` line's
command name may hold spaces and parentheses, so its fields start after the last ``)``) in one place, and the
serve extra needs no psutil. Every function answers "nothing" for a process that is gone rather than raising.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PROC = "/proc"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class ProcessStat:
    """The fields of ``/proc/<pid>/stat`` the project uses."""

    state: str  # R, S, D, Z, ...
    cpu_seconds: float  # user + system


def pids() -> list[int]:
    """Every process id currently in /proc."""
    return [int(entry) for entry in os.listdir(PROC) if entry.isdigit()]


def children(pid: int) -> list[int]:
    """Direct children of a process (every thread's); empty once it is gone."""
    kids: list[int] = []
    try:
        for tid in os.listdir(f"{PROC}/{pid}/task"):
            with open(f"{PROC}/{pid}/task/{tid}/children") as fh:
                kids += [int(k) for k in fh.read().split()]
    except OSError:
        pass
    return kids


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants, parents first."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children(p)
    return tree


def cmdline(pid: int) -> list[str]:
    """The process's argv; empty once it is gone (or for a kernel thread)."""
    try:
        with open(f"{PROC}/{pid}/cmdline", "rb") as fh:
            return [part.decode(errors="replace") for part in fh.read().split(b"\0") if part]
    except OSError:
        return []


def stat(pid: int) -> ProcessStat | None:
    try:
        with open(f"{PROC}/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return ProcessStat(fields[0], (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)  # utime, stime
    except (OSError, IndexError, ValueError):
        return None


def is_alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (a killed stub stays a zombie until Triton reaps it)."""
    s = stat(pid)
    return s is not None and s.state != "Z"


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"{PROC}/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return None


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (all but idle and iowait)."""
    with open(f"{PROC}/stat") as fh:
        ticks = [int(v) for v in fh.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS
