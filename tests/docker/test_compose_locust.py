"""The compose stack's distributed Locust commands, run for real: one master and one worker against the
local tritonserver, with the arguments taken from docker/compose.yaml (defaults of its variables, the
compose host names replaced by 127.0.0.1 and free ports, a short run)."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_deployment_files import DOCKER

import moe_ids.perf.loadtest
from moe_ids.triton.ops.server import free_port

pytestmark = pytest.mark.integration

_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


def compose_command(service: str, overrides: dict[str, str]) -> list[str]:
    """The service's command with ${VAR:-default} resolved to the default and some options replaced."""
    command = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"][service]["command"]
    out = []
    for arg in command:
        arg = _DEFAULT.sub(lambda m: m.group(2), arg)
        key = arg.split("=", 1)[0]
        out.append(f"{key}={overrides[key]}" if key in overrides else arg)
    return out


def test_master_and_worker_run_the_project_scenario(triton_server, tmp_path: Path) -> None:
    locustfile = Path(moe_ids.perf.loadtest.__file__).parent / "locustfile.py"
    locust = [sys.executable, "-m", "locust", "-f", str(locustfile)]
    port = free_port()
    master_args = compose_command("locust-master", {
        "--expect-workers": "1", "--host": f"http://{triton_server.http_url}", "--users": "4",
        "--spawn-rate": "4", "--run-time": "6s", "--csv": str(tmp_path / "moe_ids"),
        "--html": str(tmp_path / "moe_ids.html"), "--shape": "constant"})
    worker_args = compose_command("locust-worker", {"--master-host": "127.0.0.1"})
    master = subprocess.Popen([*locust, *master_args, "--master-bind-host=127.0.0.1",
                               f"--master-bind-port={port}"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    worker = subprocess.Popen([*locust, *worker_args, f"--master-port={port}"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        output, _ = master.communicate(timeout=120)
        worker.wait(timeout=30)
    finally:
        for proc in (master, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert master.returncode == 0, output[-3000:]
    with open(tmp_path / "moe_ids_stats.csv") as fh:
        total = next(row for row in csv.DictReader(fh) if row["Name"] == "Aggregated")
    assert int(total["Request Count"]) > 0
    assert int(total["Failure Count"]) == 0
    assert (tmp_path / "moe_ids.html").stat().st_size > 0
