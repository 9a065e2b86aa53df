"""Launching a real ``tritonserver`` without containers: the binary that ships in the nvidia-pytriton wheel.

The wheel carries Triton 2.51, its Python backend and one backend stub per Python version. The stub embeds
Python: it loads ``libpython3.X.so`` through the dynamic loader and finds its prefix through ``python3`` on
``PATH`` (it ignores ``PYTHONPATH``), so the server runs with the venv's ``bin`` first on ``PATH`` and the
base interpreter's lib directory on ``LD_LIBRARY_PATH`` — then the stubs import the installed ``moe_ids``.

``TritonServer`` starts the server in its own process group (the backend stubs are its children), binds every
endpoint to 127.0.0.1, waits for ``/v2/health/ready`` and on ``stop()`` sends SIGTERM to the whole group, then
SIGKILL after a grace period. Ports left unset are picked free, and start-up is retried on fresh ports when
another process took one in between.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass
from pathlib import Path

from moe_ids.core import artifacts, contract

READY_TIMEOUT_S = 120.0
# Seconds Triton keeps serving in-flight requests after SIGTERM: the same locally as in docker/triton-entrypoint.sh
# (tests/docker checks the script and the Kubernetes grace period against it)
EXIT_TIMEOUT_S = 30
STOP_GRACE_S = EXIT_TIMEOUT_S + 5.0  # then SIGKILL
PORT_RETRIES = 3


class ServerError(RuntimeError):
    """tritonserver could not be found, started or made ready; the message quotes its log."""


@dataclass(frozen=True)
class TritonInstall:
    """Paths of the tritonserver shipped by nvidia-pytriton."""

    root: Path  # <site-packages>/pytriton/tritonserver
    libs: Path  # <site-packages>/nvidia_pytriton.libs

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.root / "backends" / "python"

    def stub(self, version: str | None = None) -> Path:
        version = version or f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.root / "python_backend_stubs" / version / "triton_python_backend_stub"


def find_triton() -> TritonInstall:
    """Locate the pytriton tritonserver; a clear error when the serve extra is not installed."""
    try:
        import pytriton
    except ImportError as exc:
        raise ServerError("tritonserver not found: install the serve extra (pip install -e '.[serve]')") from exc
    root = Path(pytriton.__file__).resolve().parent / "tritonserver"
    install = TritonInstall(root=root, libs=root.parent.parent / "nvidia_pytriton.libs")
    for path in (install.binary, install.python_backend / "libtriton_python.so", install.stub()):
        if not path.exists():
            raise ServerError(f"tritonserver installation incomplete: {path} is missing")
    return install


def backend_directory(install: TritonInstall, build_dir: Path | None = None) -> Path:
    """A Triton backend directory holding the Python backend and the stub for this interpreter's version.

    Assembled once under ``build/triton-backends`` and swapped in atomically, so servers started at the same
    time from the same checkout never see a half-copied directory.
    """
    base = Path(build_dir) if build_dir else artifacts.project_root() / "build" / "triton-backends"
    target = base / "python"
    files = [install.python_backend / "libtriton_python.so",
             install.python_backend / "triton_python_backend_utils.py", install.stub()]
    if all((target / f.name).exists() and (target / f.name).stat().st_size == f.stat().st_size for f in files):
        return base
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".python-", dir=base))
    for f in files:
        shutil.copy2(f, staging / f.name)
    try:
        staging.rename(target)
    except OSError:  # target exists (stale or assembled concurrently): replace it
        old = base / f".old-{os.getpid()}-{time.monotonic_ns()}"
        try:
            target.rename(old)
        except OSError:
            pass
        try:
            staging.rename(target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return base


def server_environment(install: TritonInstall) -> dict[str, str]:
    """Environment that makes the Python-backend stub run this venv's interpreter and packages."""
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or str(Path(sys.base_prefix) / "lib")
    ld = [libdir, str(install.libs)]
    if env.get("LD_LIBRARY_PATH"):
        ld.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(ld)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    return env


def free_port(host: str = contract.DEFAULT_HOST) -> int:
    """A port nobody listens on right now (the OS's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


_LIVE: weakref.WeakSet[TritonServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


class TritonServer:
    """A tritonserver process serving one model repository on 127.0.0.1.

    Use as a context manager, or call ``start()``/``stop()``. Attributes after start: ``http_url``,
    ``grpc_url`` and ``metrics_url`` ("127.0.0.1:PORT"), ``pid``, ``repository``, ``log_path``.
    """

    def __init__(self, repository: Path, http_port: int | None = None, grpc_port: int | None = None,
                 metrics_port: int | None = None, host: str = contract.DEFAULT_HOST,
                 log_path: Path | None = None, ready_timeout: float = READY_TIMEOUT_S,
                 extra_args: list[str] | None = None) -> None:
        self.repository = Path(repository).resolve()
        self.host = host
        self._requested = (http_port, grpc_port, metrics_port)
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.log_path = Path(log_path) if log_path else self.repository.parent / "tritonserver.log"
        self.ready_timeout = ready_timeout
        self.extra_args = list(extra_args or [])
        self.process: subprocess.Popen | None = None
        self._log_handle = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"{self.host}:{self.metrics_port}"

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def command(self, install: TritonInstall, backends: Path) -> list[str]:
        return [
            str(install.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--strict-readiness=true",
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
            *self.extra_args,
        ]

    def start(self) -> TritonServer:
        """Start and wait until ready; retry on fresh ports if an auto-picked one was taken meanwhile."""
        if self.running():
            return self
        install = find_triton()
        backends = backend_directory(install)
        env = server_environment(install)
        auto = any(p is None for p in self._requested)
        attempts = PORT_RETRIES if auto else 1
        last_error: ServerError | None = None
        for _ in range(attempts):
            picked = iter(_free_ports(3))
            self.http_port, self.grpc_port, self.metrics_port = (p if p is not None else next(picked)
                                                                 for p in self._requested)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_handle = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the server
            self.process = subprocess.Popen(self.command(install, backends), stdout=self._log_handle,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                            start_new_session=True)
            _LIVE.add(self)
            try:
                self.wait_ready(self.ready_timeout)
                return self
            except ServerError as exc:
                last_error = exc
                self.stop()
                if "address already in use" not in self.log_tail().lower():
                    break
        raise last_error or ServerError("tritonserver did not start")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise ServerError(f"tritonserver exited with code {self.process.returncode} during start-up; "
                                  f"log {self.log_path}:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.1)
        raise ServerError(f"tritonserver not ready after {timeout:.0f} s; log {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        """SIGTERM the server's process group, SIGKILL it after ``grace`` seconds; returns the exit code."""
        proc, self.process = self.process, None
        code = None
        if proc is not None:
            code = _terminate_group(proc, grace)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        _LIVE.discard(self)
        return code


def _terminate_group(proc: subprocess.Popen, grace: float) -> int | None:
    """Stop the process and every process of its group (Python-backend stubs included)."""
    pgid = proc.pid  # start_new_session: the server leads its own group
    if proc.poll() is None:
        _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            proc.wait(timeout=10)
    # Stubs outliving a crashed server would hold memory and ports: clear the group either way.
    _signal_group(pgid, signal.SIGKILL)
    return proc.returncode


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
