"""``moe-ids serve`` end to end: kill -9 the classifier's backend stub of the server it runs, and the service
comes back on its own, on the same port, answering the printed example request again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from moe_ids.core import contract
from moe_ids.triton.ops.server import free_port
from moe_ids.triton.ops.stubs import backend_stubs

pytestmark = pytest.mark.integration

DEADLINE_S = 120.0  # bound on waiting, not a performance figure (the recovery time is printed)


def answer(port: int, body: bytes) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/{contract.ENSEMBLE_MODEL}/infer",
                                     data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status == 200
    except OSError:  # HTTP 500 from the dead stub, or refused/reset while the server restarts
        return False


def test_serve_restarts_the_server_when_a_stub_is_killed(tmp_path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "moe_ids.cli", "serve", "--layout", "ensemble", "--http-port", str(port),
           "--grpc-port", str(free_port()), "--metrics-port", str(free_port()),
           "--repository", str(tmp_path / "repository")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C to stop"):
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(180), "".join(lines)
        server_pid = int(re.search(r"tritonserver (\d+) ready", "".join(lines)).group(1))
        example = next(w for line in lines if "curl" in line for w in line.split() if w.startswith("@"))[1:]
        body = open(example, "rb").read()
        assert answer(port, body)
        victim = backend_stubs(server_pid)[contract.CLASSIFIER_MODEL][0]
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        while time.monotonic() - killed < DEADLINE_S:
            if any("ready again" in line for line in lines) and answer(port, body):
                break
            time.sleep(0.2)
        out = "".join(lines)
        assert any("ready again" in line for line in lines), out
        assert answer(port, body), out
        print(f"\nmoe-ids serve answered again {time.monotonic() - killed:.1f} s after the stub was killed")
        assert f"Python-backend stub of {contract.CLASSIFIER_MODEL} (pid {victim}) died" in out
        assert "restarting tritonserver (1/3)" in out
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2)
