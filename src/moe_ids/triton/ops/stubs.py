"""The Python-backend stub processes of a running tritonserver, found through /proc.

Each instance of a Python-backend model runs in a ``triton_python_backend_stub`` child of tritonserver. When
one dies (OOM killer, a crash in native code, ``kill -9``), Triton 2.51 does not restart it: the model stays
READY while every request to it fails with "Stub process '<instance>' is not healthy" (measured, see
docs/reliability.md). Readiness cannot see that, the process table can: the watchdog compares the stubs of
each model with the ones the server had when it became ready. /proc only, so the serve extra needs nothing more.
"""

from __future__ import annotations

from pathlib import Path

from moe_ids.triton.ops.procfs import children, cmdline, is_alive

STUB_EXECUTABLE = "triton_python_backend_stub"


def stub_model(cmdline: list[str]) -> str | None:
    """Model name of a stub command line (its first argument is <repository>/<model>/<version>/model.py)."""
    if len(cmdline) < 2 or Path(cmdline[0]).name != STUB_EXECUTABLE:
        return None
    return Path(cmdline[1]).parent.parent.name


def backend_stubs(server_pid: int) -> dict[str, list[int]]:
    """Live stub pids of ``server_pid`` per model name (children of the server only: stubs are not nested)."""
    stubs: dict[str, list[int]] = {}
    for pid in children(server_pid):
        model = stub_model(cmdline(pid))
        if model is not None and is_alive(pid):
            stubs.setdefault(model, []).append(pid)
    return stubs


def missing_stubs(expected: dict[str, list[int]], current: dict[str, list[int]]) -> dict[str, list[int]]:
    """Stub pids of ``expected`` that are no longer running, per model."""
    gone = {model: [p for p in pids if p not in current.get(model, [])] for model, pids in expected.items()}
    return {model: pids for model, pids in gone.items() if pids}
