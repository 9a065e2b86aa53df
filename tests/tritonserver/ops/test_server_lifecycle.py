"""The launcher and the watchdog: real processes, stopped and restarted for real."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from moe_ids.triton.ops.server import TritonServer, free_port
from moe_ids.triton.ops.supervisor import Supervisor

pytestmark = pytest.mark.integration


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    members.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return members


def test_fixture_server_binds_localhost_on_free_ports(triton_server) -> None:
    for url in (triton_server.http_url, triton_server.grpc_url, triton_server.metrics_url):
        host, port = url.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) not in (8000, 8001, 8002)
    assert triton_server.ready()
    assert len(group_members(triton_server.pid)) >= 3  # server + one stub per Python model


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_start_failure_reports_the_log(tmp_path) -> None:
    (tmp_path / "repo" / "broken").mkdir(parents=True)
    (tmp_path / "repo" / "broken" / "config.pbtxt").write_text("name: 'broken'\nbackend: 'no_such_backend'\n")
    server = TritonServer(tmp_path / "repo", log_path=tmp_path / "log", ready_timeout=60)
    with pytest.raises(Exception, match="tritonserver") as info:
        server.start()
    assert "broken" in str(info.value)
    assert not server.running()


def test_watchdog_restarts_a_killed_server_then_stops_cleanly(probe_server) -> None:
    supervisor = Supervisor(probe_server, max_restarts=2, poll_s=0.2, log=lambda msg: None)
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    old_pid = probe_server.pid
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (probe_server.pid not in (None, old_pid) and probe_server.ready()):
        time.sleep(0.2)
    assert probe_server.pid not in (None, old_pid) and probe_server.ready(), "server was not restarted"
    assert len(supervisor.restarts) == 1
    new_pid = probe_server.pid
    supervisor.request_stop()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert not probe_server.running()
    assert group_members(new_pid) == [] and group_members(old_pid) == []  # stubs gone too
    probe_server.start()  # leave the session fixture serving for other tests
