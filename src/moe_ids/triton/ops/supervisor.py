"""Keeping a served tritonserver up: a watchdog that restarts it when it dies, a bounded number of times.

A crash of the server (or of a backend stub taking it down) restarts it on the same ports and repository.
So does the death of a single Python-backend stub: Triton 2.51 neither restarts a dead stub nor marks its
model unready — every request then fails — so the watchdog compares the stub processes with those the server
had when it became ready (``moe_ids.triton.ops.stubs``) and restarts the server when one is gone;
more than ``max_restarts`` crashes within ``window_s`` means something is persistently wrong, and the
supervisor gives up with the server log's tail rather than flapping forever. SIGTERM and SIGINT end it
cleanly.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Callable

from moe_ids.triton.ops.server import ServerError, TritonServer
from moe_ids.triton.ops.stubs import backend_stubs, missing_stubs

STOP_CHECK_S = 0.05  # how soon run() notices a stop request


class Supervisor:
    """Runs ``server`` until a stop signal, restarting it after unexpected exits."""

    def __init__(self, server: TritonServer, max_restarts: int = 3, window_s: float = 300.0,
                 poll_s: float = 1.0, log: Callable[[str], None] = print) -> None:
        self.server = server
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.poll_s = poll_s
        self.log = log
        self.restarts: deque[float] = deque()
        self._stop_requested = False  # set by request_stop: a plain flag, no lock (see there)
        self.stubs: dict[str, list[int]] = {}  # backend stubs of the ready server, per model

    def watch_stubs(self) -> None:
        """Remember the ready server's backend stubs; call after every (re)start."""
        self.stubs = backend_stubs(self.server.pid) if self.server.running() else {}

    def _failure(self) -> str | None:
        """Why the server needs a restart, or None while it and every backend stub it started are running."""
        if not self.server.running():
            code = self.server.process.returncode if self.server.process else None
            return f"tritonserver exited unexpectedly (exit code {code})"
        gone = missing_stubs(self.stubs, backend_stubs(self.server.pid)) if self.stubs else {}
        if gone:
            return "Python-backend stub of " + ", ".join(f"{m} (pid {', '.join(map(str, p))})"
                                                         for m, p in gone.items()) + " died"
        return None

    def request_stop(self, *_: object) -> None:
        """Ask ``run`` to stop (within ``STOP_CHECK_S``). Only an assignment: this is the SIGTERM / SIGINT handler,
        and a second signal (a wrapper such as ``timeout`` relaying the one it got, a process manager sending
        its own) can interrupt the first handler, and a handler that takes a lock the interrupted code holds
        (``threading.Event.set`` does) deadlocks the process and leaves tritonserver running."""
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def _wait_for_stop(self, seconds: float) -> bool:
        """True as soon as a stop was requested, False after ``seconds`` without one."""
        deadline = time.monotonic() + seconds
        while not self._stop_requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, STOP_CHECK_S))
        return self._stop_requested

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request_stop)

    def run(self) -> int:
        """Block until stopped (0) or the restart budget is spent (1); the server is stopped either way."""
        if not self.stubs:
            self.watch_stubs()
        try:
            while not self._wait_for_stop(self.poll_s):
                failure = self._failure()
                if failure is None:
                    continue
                now = time.monotonic()
                while self.restarts and now - self.restarts[0] > self.window_s:
                    self.restarts.popleft()
                if len(self.restarts) >= self.max_restarts:
                    self.log(f"{failure} again; {self.max_restarts} restarts within "
                             f"{self.window_s:.0f} s already, giving up. Log tail:\n{self.server.log_tail()}")
                    return 1
                self.restarts.append(now)
                self.log(f"{failure}; restarting tritonserver ({len(self.restarts)}/{self.max_restarts})")
                self.server.stop(grace=1.0)
                try:
                    self.server.start()
                    self.watch_stubs()
                    self.log("tritonserver ready again")
                except ServerError as exc:
                    self.stubs = {}
                    self.log(str(exc))
            return 0
        finally:
            self.log("stopping tritonserver")
            self.server.stop()
