"""Runner pieces that need no server: host policy, durations, Locust command lines, CLI refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from moe_ids.cli import main
from moe_ids.perf.loadtest.runner import LoadTestConfig, locust_command, normalize_host, parse_duration


@pytest.mark.parametrize("host, protocol, url", [
    (None, "http", "http://127.0.0.1:8000"),
    (None, "grpc", "grpc://127.0.0.1:8001"),
    ("127.0.0.1:9000", "http-json", "http://127.0.0.1:9000"),
    ("http://localhost:9000/", "http", "http://localhost:9000"),
    ("localhost:9001", "grpc", "grpc://localhost:9001"),
])
def test_local_hosts_are_accepted(host: str | None, protocol: str, url: str) -> None:
    assert normalize_host(host, protocol) == url


@pytest.mark.parametrize("host", ["10.0.0.5:8000", "http://example.com:80", "0.0.0.0:8000", "192.168.1.2:8001"])
def test_other_machines_are_refused(host: str) -> None:
    with pytest.raises(ValueError, match="refused"):
        normalize_host(host, "http")


def test_host_needs_a_port() -> None:
    with pytest.raises(ValueError, match="port"):
        normalize_host("127.0.0.1", "http")


@pytest.mark.parametrize("text, seconds", [("90", 90), ("30s", 30), ("2m", 120), ("1h30m", 5400), (45, 45)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10x", "5m3"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_locust_command_is_bounded_and_headless(tmp_path: Path) -> None:
    cfg = LoadTestConfig(scenario="mixed", protocol="grpc", users=4, duration_s=25, shape="step",
                         shape_options={"step_count": 2}, imputation="mean")
    cmd = locust_command(cfg, "grpc://127.0.0.1:9", tmp_path)
    assert "GrpcUser" in cmd and "--headless" in cmd
    assert cmd[cmd.index("--run-time") + 1] == "25s"
    assert cmd[cmd.index("--step-count") + 1] == "2"
    assert cmd[cmd.index("--imputation") + 1] == "mean"
    assert "--html" in cmd and "--csv" in cmd and "--stop-timeout" in cmd


def test_master_and_worker_commands(tmp_path: Path) -> None:
    cfg = LoadTestConfig(workers=3)
    master = locust_command(cfg, "http://127.0.0.1:9", tmp_path, "master", 5557)
    assert master[master.index("--expect-workers") + 1] == "3"
    assert master[master.index("--master-bind-host") + 1] == "127.0.0.1"
    worker = locust_command(cfg, "http://127.0.0.1:9", tmp_path, "worker", 5557)
    assert worker[worker.index("--master-host") + 1] == "127.0.0.1" and "--run-time" not in worker


def test_cli_refuses_remote_hosts_and_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["loadtest", "--host", "203.0.113.7:8000", "--out", str(tmp_path / "r")]) == 2
    assert "refused" in capsys.readouterr().err
    assert main(["loadtest", "--duration", "forever", "--out", str(tmp_path / "r")]) == 2
    assert "duration" in capsys.readouterr().err
    assert main(["loadtest", "--shape", "spike", "--spike-start", "0.9", "--out", str(tmp_path / "r")]) == 2
    assert "spike" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything ran


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_no_server_is_an_error_not_a_gate_failure(tmp_path: Path, protocol: str,
                                                  capsys: pytest.CaptureFixture) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["loadtest", "--protocol", protocol, "--host", f"127.0.0.1:{port}", "--out", str(tmp_path)]) == 2
    assert "no Triton server answers" in capsys.readouterr().err
    assert not (tmp_path / "locust.log").exists()  # Locust never started
