"""Keeping a served tritonserver up: a watchdog that restarts it when it dies, a bounded number of times.

A crash of the server (or of a backend stub taking it down) restarts it on the same ports and repository;
more than ``max_restarts`` crashes within ``window_s`` means something is persistently wrong, and the
supervisor gives up with the server log's tail rather than flapping forever. SIGTERM and SIGINT end it
cleanly.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable

from moe_ids.serving.server import ServerError, TritonServer


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
        self.stopping = threading.Event()

    def request_stop(self, *_: object) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request_stop)

    def run(self) -> int:
        """Block until stopped (0) or the restart budget is spent (1); the server is stopped either way."""
        try:
            while not self.stopping.wait(self.poll_s):
                if self.server.running():
                    continue
                code = self.server.process.returncode if self.server.process else None
                now = time.monotonic()
                while self.restarts and now - self.restarts[0] > self.window_s:
                    self.restarts.popleft()
                if len(self.restarts) >= self.max_restarts:
                    self.log(f"tritonserver died again (exit code {code}); {self.max_restarts} restarts within "
                             f"{self.window_s:.0f} s already, giving up. Log tail:\n{self.server.log_tail()}")
                    return 1
                self.restarts.append(now)
                self.log(f"tritonserver exited unexpectedly (exit code {code}); restarting "
                         f"({len(self.restarts)}/{self.max_restarts})")
                self.server.stop(grace=1.0)
                try:
                    self.server.start()
                    self.log("tritonserver ready again")
                except ServerError as exc:
                    self.log(str(exc))
            return 0
        finally:
            self.log("stopping tritonserver")
            self.server.stop()
