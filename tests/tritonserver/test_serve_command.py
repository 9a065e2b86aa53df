"""``moe-ids serve`` end to end: ready on the given ports, answers the printed example, starts the local
JetStream server with ``--nats``, stops both on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from moe_ids.core import contract
from moe_ids.triton.ops.server import free_port

pytestmark = pytest.mark.integration


def test_serve_starts_answers_and_stops_on_sigterm(tmp_path) -> None:
    ports = [free_port() for _ in range(5)]
    cmd = [sys.executable, "-m", "moe_ids.cli", "serve", "--http-port", str(ports[0]), "--grpc-port", str(ports[1]),
           "--metrics-port", str(ports[2]), "--repository", str(tmp_path / "repository"),
           "--nats", "--nats-port", str(ports[3]), "--nats-monitor-port", str(ports[4]),
           "--nats-store", str(tmp_path / "jetstream")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Ctrl-C to stop"):
                break
        out = "".join(lines)
        assert "ready" in out, out
        assert f"http://127.0.0.1:{ports[0]}" in out and f"127.0.0.1:{ports[1]}" in out
        example = next(word for line in lines if "curl" in line for word in line.split() if word.startswith("@"))
        request = urllib.request.Request(f"http://127.0.0.1:{ports[0]}/v2/models/{contract.ENSEMBLE_MODEL}/infer",
                                         data=open(example[1:], "rb").read(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as resp:
            body = json.loads(resp.read())
        names = {o["name"] for o in body["outputs"]}
        assert {contract.PROBABILITIES, contract.PREDICTED_CLASS, contract.CONFIDENCE} <= names
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[2]}/metrics", timeout=10) as resp:
            assert b"nv_inference_request_success" in resp.read()
        assert f"moe-ids stream --nats nats://127.0.0.1:{ports[3]} --url 127.0.0.1:{ports[1]}" in out
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[4]}/varz", timeout=10) as resp:
            varz = json.loads(resp.read())
        assert varz["port"] == ports[3] and varz["host"] == "127.0.0.1" and varz["jetstream"]["config"]["store_dir"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        rest = proc.stdout.read()
        assert "stopping tritonserver" in rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for port in (ports[0], ports[4]):
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
