"""The Python-backend stub processes of a running tritonserver, found through /proc.

Each instance of a Python-backend model runs in a ``triton_python_backend_stub`` child of tritonserver. When
one dies (OOM killer, a crash in native code, ``kill -9``), Triton 2.51 does not restart it: the model stays
READY while every request to it fails with "Stub process '<instance>' is not healthy" (measured, see
docs/reliability.md). Readiness cannot see that, the process table can: the watchdog compares the stubs of
each model with the ones the server had when it became ready. /proc only, so the serve extra needs nothing more.
"""

from __future__ import annotations

import os
from pathlib import Path

STUB_EXECUTABLE = "triton_python_backend_stub"


def children(pid: int) -> list[int]:
    """Direct children of a process (every thread's), from /proc; empty once it is gone."""
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
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


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [part.decode(errors="replace") for part in fh.read().split(b"\0") if part]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (a killed stub stays a zombie until Triton reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stub_model(cmdline: list[str]) -> str | None:
    """Model name of a stub command line (its first argument is <repository>/<model>/<version>/model.py)."""
    if len(cmdline) < 2 or Path(cmdline[0]).name != STUB_EXECUTABLE:
        return None
    return Path(cmdline[1]).parent.parent.name


def backend_stubs(server_pid: int) -> dict[str, list[int]]:
    """Live stub pids of ``server_pid`` per model name (children of the server only: stubs are not nested)."""
    stubs: dict[str, list[int]] = {}
    for pid in children(server_pid):
        model = stub_model(_cmdline(pid))
        if model is not None and _alive(pid):
            stubs.setdefault(model, []).append(pid)
    return stubs


def missing_stubs(expected: dict[str, list[int]], current: dict[str, list[int]]) -> dict[str, list[int]]:
    """Stub pids of ``expected`` that are no longer running, per model."""
    gone = {model: [p for p in pids if p not in current.get(model, [])] for model, pids in expected.items()}
    return {model: pids for model, pids in gone.items() if pids}
