"""Scale-out and faults for real: two ``moe-ids stream`` workers share the consumer while flows keep arriving;
one is SIGKILLed mid-stream and restarted, Triton is restarted, nats-server is restarted on its store.

At the end every input id has exactly one verdict in VERDICTS, the malformed inputs exactly one dead letter
each, and the consumer has nothing pending or unacknowledged.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time

import pandas as pd
import pytest
from streams import WorkerProcess, consumer_state, read_json_stream, wait_until

from moe_ids.data.loading import default_training_csv, load_flows
from moe_ids.streaming import topology
from moe_ids.streaming.publisher import Publisher, PublishSettings
from moe_ids.triton.ops.bootstrap import ensure_model
from moe_ids.triton.ops.server import TritonServer, free_port
from moe_ids.triton.repository import build_repository, options_for_model

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]

RATE = 300  # flows per second offered while the faults happen
SECONDS = 24
ACK_WAIT = 4.0


class BackgroundPublisher(threading.Thread):
    """Publishes real flows at a fixed rate through the project's Publisher (which retries across outages)."""

    def __init__(self, url: str, flows: pd.DataFrame) -> None:
        super().__init__(daemon=True)
        self.url, self.flows = url, flows
        self.ids: list[str] = []
        self.malformed: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    async def _run(self) -> None:
        settings = PublishSettings(nats_url=self.url, max_wait_s=120, confirm_timeout_s=3)
        tick, per_tick = 0.25, int(RATE * 0.25)
        n = 0
        async with Publisher(settings) as pub:
            for step in range(int(SECONDS / tick)):
                started = time.monotonic()
                items = []
                for _ in range(per_tick):
                    row = self.flows.iloc[n % len(self.flows)]
                    msg_id = f"f{n}"
                    features = {k: (None if pd.isna(v) else float(v)) for k, v in row.items()}
                    items.append(("flows.lab", msg_id, json.dumps({"id": msg_id, "features": features,
                                                                   "ts": time.time()}).encode()))
                    self.ids.append(msg_id)
                    n += 1
                if step % 20 == 5:
                    bad_id = f"bad{step}"
                    items.append(("flows.lab", bad_id, json.dumps({"id": bad_id, "features": {"x": 1}}).encode()))
                    self.malformed.append(bad_id)
                await pub.publish(items)
                await asyncio.sleep(max(0.0, tick - (time.monotonic() - started)))


@pytest.fixture
def restartable_triton(tmp_path):
    """A tritonserver on fixed ports, so that a restart keeps the workers' URL."""
    model_dir = ensure_model()
    repository = build_repository(model_dir, tmp_path / "repository", options_for_model(model_dir))
    server = TritonServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                          log_path=tmp_path / "tritonserver.log")
    with server:
        yield server


def test_no_flow_lost_or_duplicated_across_a_killed_worker_and_restarted_servers(
        tmp_path, nats_server, restartable_triton):
    flows = load_flows(default_training_csv(), nrows=600).features
    args = ["--nats", nats_server.url, "--url", restartable_triton.grpc_url, "--batch-size", "64",
            "--ack-wait", str(ACK_WAIT), "--duplicate-window", "600", "--idle-exit", "8", "--max-runtime", "300",
            "--progress", "2"]
    first = WorkerProcess(tmp_path / "worker-a.log", *args)
    second = WorkerProcess(tmp_path / "worker-b.log", *args)
    workers = [first, second]
    publisher = BackgroundPublisher(nats_server.url, flows)
    try:
        wait_until(lambda: "scoring FLOWS" in first.log() and "scoring FLOWS" in second.log(), 60,
                   what="both workers bound to the consumer")
        publisher.start()

        time.sleep(5)
        first.kill()  # SIGKILL, mid-stream: its unacknowledged flows come back after AckWait
        assert first.process.returncode == -9
        workers.append(WorkerProcess(tmp_path / "worker-c.log", *args))

        time.sleep(3)
        restartable_triton.stop()  # the workers hold their flows and back off
        time.sleep(2)
        restartable_triton.start()

        time.sleep(3)
        nats_server.stop()  # broker restart on the same store directory
        time.sleep(2)
        nats_server.start()

        publisher.join(timeout=180)
        assert not publisher.is_alive() and publisher.error is None, publisher.error
        for worker in workers[1:]:
            assert worker.wait(timeout=200) == 0, worker.log()[-3000:]
    finally:
        for worker in workers:
            worker.close()

    verdicts = collections.Counter(v["id"] for _, _, v in read_json_stream(nats_server.url, topology.VERDICTS))
    duplicated = [i for i, n in verdicts.items() if n > 1]
    missing = set(publisher.ids) - set(verdicts)
    assert not duplicated, f"{len(duplicated)} flows with more than one verdict, e.g. {duplicated[:5]}"
    assert not missing, f"{len(missing)} flows without a verdict, e.g. {sorted(missing)[:5]}"
    assert set(verdicts) == set(publisher.ids) and len(publisher.ids) == RATE * SECONDS
    letters = collections.Counter(e["reason"] for _, _, e in read_json_stream(nats_server.url, topology.DLQ))
    assert letters == {"unknown_feature": len(publisher.malformed)}
    assert consumer_state(nats_server.url) == (0, 0)
    logs = "".join(w.log() for w in workers)
    assert "Triton unavailable" in logs, "the Triton restart was seen and waited out"
