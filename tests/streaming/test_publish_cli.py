"""``moe-ids stream publish`` end to end: a file through the stream gets the verdicts ``moe-ids score`` writes
for it, publishing it again stores nothing twice, and ``--follow`` sends a growing sensor log as it grows."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from streams import WorkerProcess, consumer_state, read_json_stream, read_stream

from moe_ids.data.loading import bundled_data_dir
from moe_ids.streaming import topology

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PYTHON_FLOWS = bundled_data_dir() / "cicflowmeter-python" / "nmap_loopback_syn_scan.csv.gz"


def moe_ids(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moe_ids.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def eve_flow(flow_id: int, pkts: int) -> str:
    return json.dumps({"timestamp": "2024-05-01T10:00:00.000000+0000", "event_type": "flow", "flow_id": flow_id,
                       "src_ip": "10.1.1.1", "src_port": 40000 + flow_id, "dest_ip": "10.1.1.2", "dest_port": 22,
                       "proto": "TCP", "flow": {"pkts_toserver": pkts, "pkts_toclient": 1, "bytes_toserver": 60 * pkts,
                                                "bytes_toclient": 60, "start": "2024-05-01T10:00:00.000000+0000",
                                                "end": "2024-05-01T10:00:00.500000+0000"}})


def test_a_file_through_the_stream_gets_the_verdicts_moe_ids_score_writes(tmp_path, triton_server, nats_server):
    first = moe_ids("stream", "publish", str(PYTHON_FLOWS), "--nats", nats_server.url, "--sensor", "lo")
    assert first.returncode == 0, first.stderr
    again = moe_ids("stream", "publish", str(PYTHON_FLOWS), "--nats", nats_server.url, "--sensor", "lo")
    assert again.returncode == 0, again.stderr
    n_rows = len(pd.read_csv(PYTHON_FLOWS))
    assert f"{n_rows} already in the stream" in again.stderr
    assert len(read_stream(nats_server.url, topology.FLOWS)) == n_rows

    # a growing Suricata eve.json, tailed: records as they are appended, other events skipped, junk kept
    eve = tmp_path / "eve.json"
    eve.write_text(eve_flow(1, 3) + "\n" + json.dumps({"event_type": "alert", "flow_id": 1}) + "\nnot a record\n")
    follow = subprocess.Popen([sys.executable, "-m", "moe_ids.cli", "stream", "publish", str(eve), "--follow",
                               "--idle-exit", "2", "--nats", nats_server.url, "--sensor", "dmz"],
                              stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    with open(eve, "a") as fh:
        fh.write(eve_flow(2, 5) + "\n" + eve_flow(3, 7)[:40])  # the last line is not finished yet ...
        fh.flush()
        time.sleep(0.5)
        fh.write(eve_flow(3, 7)[40:] + "\n")  # ... and now it is
    _, err = follow.communicate(timeout=60)
    assert follow.returncode == 0, err
    assert "published 4 messages" in err and "skipped 1 events" in err

    worker = WorkerProcess(tmp_path / "worker.log", "--nats", nats_server.url, "--url", triton_server.grpc_url,
                           "--idle-exit", "3", "--max-runtime", "120")
    assert worker.wait(timeout=150) == 0, worker.log()

    out = tmp_path / "scored.csv"
    scored = moe_ids("score", str(PYTHON_FLOWS), "-o", str(out), "--url", triton_server.grpc_url, "-q")
    assert scored.returncode == 0, scored.stderr
    expected = pd.read_csv(out)
    verdicts = {v["id"]: (subject, v) for subject, _, v in read_json_stream(nats_server.url, topology.VERDICTS)}
    assert len(verdicts) == n_rows + 3
    rows = [verdicts[f"{PYTHON_FLOWS.name}:{i}"][1] for i in range(n_rows)]
    assert [v["prediction"] for v in rows] == expected["prediction"].tolist()
    np.testing.assert_allclose([v["probabilities"]["Attack"] for v in rows], expected["prob_attack"], atol=1e-5)
    np.testing.assert_allclose([v["trust"] for v in rows], expected["trust"], atol=1e-5)
    assert [v["flow"]["dst_port"] for v in rows] == expected["dst_port"].tolist()
    assert all(verdicts[f"{PYTHON_FLOWS.name}:{i}"][0] == "verdicts.lo" for i in range(n_rows))

    followed = [verdicts[f"eve.json:{i}"] for i in (1, 2, 3)]
    assert all(subject == "verdicts.dmz" for subject, _ in followed)
    assert [v["flow"]["src_port"] for _, v in followed] == [40001, 40002, 40003]
    letters = read_json_stream(nats_server.url, topology.DLQ)
    assert [(e["reason"], e["payload"], e["subject"]) for _, _, e in letters] == [
        ("not_json", "not a record", "flows.suricata.dmz")]
    assert consumer_state(nats_server.url) == (0, 0)
