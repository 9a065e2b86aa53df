"""The container liveness probe against real servers: alive, a killed stub, and overload refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from moe_ids.core import contract
from moe_ids.triton.ops.probe import check, expected_stubs, find_server_pid
from moe_ids.triton.ops.stubs import backend_stubs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def victim_server(triton_serving, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with triton_serving(tmp_path_factory.mktemp("probe-victim"), layout="ensemble", warmup_batch_sizes=()) as server:
        yield server


def run_probe(server, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moe_ids.triton.ops.probe", "--url", server.http_url,
                           "--server-pid", str(server.pid), *extra], capture_output=True, text=True, timeout=60)


def test_expected_stubs_come_from_the_served_configs(victim_server) -> None:
    assert expected_stubs(victim_server.http_url, 5) == {contract.PREPROCESS_MODEL: 2, contract.CLASSIFIER_MODEL: 1}
    assert find_server_pid(victim_server.http_url) == victim_server.pid  # by its --http-port among several


def test_alive_then_a_killed_stub_fails_the_probe(victim_server) -> None:
    alive = run_probe(victim_server)
    assert alive.returncode == 0, alive.stderr
    assert "alive" in alive.stdout
    # one of the two preprocess instances dies: the other still answers, so only the stub count can tell
    os.kill(backend_stubs(victim_server.pid)[contract.PREPROCESS_MODEL][0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while len(backend_stubs(victim_server.pid).get(contract.PREPROCESS_MODEL, [])) == 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    dead = run_probe(victim_server)
    assert dead.returncode == 1
    assert f"{contract.PREPROCESS_MODEL}: 1 of 2 Python-backend stub processes alive" in dead.stderr
    assert victim_server.running()  # Triton itself still reports live: that is why the probe exists


def test_overload_refusal_counts_as_alive(triton_serving, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A server whose classifier refuses every ensemble flow (1 us budget) is busy, not dead."""
    with triton_serving(tmp_path_factory.mktemp("probe-busy"), layout="ensemble", admitted_timeout_us=1,
                        warmup_batch_sizes=()) as server:
        assert check(server.http_url, server.pid) == []


def test_unreachable_server_is_not_alive() -> None:
    problems = check("127.0.0.1:9", server_pid=None, timeout=1)
    assert len(problems) == 1 and "model configs unavailable at 127.0.0.1:9" in problems[0]
