"""The streaming contract end to end: real nats-server, real tritonserver, the worker scoring real flows.

Every valid input gets exactly one verdict equal to what the SDK answers for the same flow, alerts follow the
thresholds, malformed messages end in the dead-letter stream with their payload and reason while the good
ones flow, and the consumer drains to zero.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request

import numpy as np
import pandas as pd
import pytest
from streams import consumer_state, flow_message, publish, read_json_stream, read_stream

from moe_ids.client import MoEClient
from moe_ids.data.loading import bundled_data_dir, default_training_csv, load_flows
from moe_ids.streaming import broker, topology
from moe_ids.streaming.worker import ScorerWorker, WorkerSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

N_EACH = 150


@pytest.fixture(scope="module")
def real_flows() -> pd.DataFrame:
    """Real flows of both CIC-IDS2017 extractions, attacks and normal traffic, in the model's semantics."""
    corrected = load_flows(default_training_csv(), nrows=N_EACH).features
    original = load_flows(bundled_data_dir() / "cicids2017-original" / "trafficlabelling_attack_slices.csv.gz",
                          nrows=N_EACH).features
    return pd.concat([corrected, original], ignore_index=True)


def as_message_features(row: pd.Series) -> dict[str, float | None]:
    return {name: (None if pd.isna(v) else float(v)) for name, v in row.items()}


def run_worker(settings: WorkerSettings) -> ScorerWorker:
    worker = ScorerWorker(settings)
    asyncio.run(worker.run())
    return worker


def test_every_flow_gets_one_verdict_equal_to_the_sdk_and_bad_messages_are_dead_lettered(
        triton_server, nats_server, real_flows):
    items = []
    imputation = {}
    for i, row in real_flows.iterrows():
        strategy = "zero" if i % 5 == 0 else None
        extra = {"sensor": "edge-2" if i % 2 else "edge-1", "ts": 1_700_000_000 + i, "flow": {"row": int(i)}}
        if strategy:
            extra["imputation"] = strategy
        imputation[f"flow-{i}"] = strategy
        items.append(flow_message(f"flow-{i}", as_message_features(row), **extra))
    items.append(items[3])  # the same message published twice: JetStream stores it once
    bad = [
        ("flows.test", "bad-json", b"{not json"),
        ("flows.test", None, json.dumps({"features": {"Flow Duration": 3}}).encode()),
        flow_message("bad-name", {"Flow Duraton": 3}),
        flow_message("bad-type", {"Flow Duration": "fast"}),
        # within the broker's 1 MiB limit, but its verdict (which copies "flow") would not be
        flow_message("huge-flow", {"Flow Duration": 3}, flow={"note": "x" * 1_047_500}),
    ]
    conn = {"uid": "Czeek1", "id.orig_h": "10.0.0.1", "id.orig_p": 40000, "id.resp_h": "10.0.0.2",
            "id.resp_p": 80, "proto": "tcp", "duration": 1.5, "orig_pkts": 6, "resp_pkts": 4, "orig_bytes": 300,
            "resp_bytes": 5000}
    zeek = ("flows.zeek.gateway", None, json.dumps(conn).encode())
    # malformed messages in the middle of the good ones
    publish(nats_server.url, items[:100] + bad + [zeek] + items[100:])

    worker = run_worker(WorkerSettings(nats_url=nats_server.url, triton_url=triton_server.grpc_url, batch_size=64,
                                       idle_exit_s=2.0, max_runtime_s=120, progress_s=0, metrics_port=0))

    verdicts = read_json_stream(nats_server.url, topology.VERDICTS)
    ids = [v["id"] for _, _, v in verdicts]
    assert sorted(ids) == sorted([*imputation, "Czeek1"]), "each valid input exactly one verdict"
    for subject, headers, verdict in verdicts:
        assert headers[topology.MSG_ID_HEADER] == "v:" + verdict["id"]
        expected_sensor = "gateway" if verdict["id"] == "Czeek1" else ("edge-2" if verdict["flow"]["row"] % 2
                                                                       else "edge-1")
        assert subject == f"verdicts.{expected_sensor}" and verdict["sensor"] == expected_sensor
        assert set(verdict) >= {"prediction", "confidence", "probabilities", "family", "family_probabilities",
                                "gating", "model_version", "trust", "out_of_distribution"}
    zeek_verdict = next(v for _, _, v in verdicts if v["id"] == "Czeek1")
    assert zeek_verdict["flow"]["id.resp_p"] == 80

    # the same flows through the SDK: same verdicts
    by_id = {v["id"]: v for _, _, v in verdicts}
    with MoEClient(triton_server.grpc_url) as client:
        for strategy in (None, "zero"):
            rows = [i for i in range(len(real_flows)) if imputation[f"flow-{i}"] == strategy]
            expected = client.predict_batch(real_flows.iloc[rows], missing_strategy=strategy)
            got = [by_id[f"flow-{i}"] for i in rows]
            assert [g["prediction"] for g in got] == expected["prediction"].tolist()
            np.testing.assert_allclose([g["probabilities"]["Attack"] for g in got], expected["prob_attack"],
                                       atol=1e-5)
            np.testing.assert_allclose([g["trust"] for g in got], expected["trust"], atol=1e-5)
            assert [g["family"] for g in got] == [f if isinstance(f, str) else None for f in expected["family"]]
    assert any(v["prediction"] == "Attack" for v in by_id.values())
    assert any(v["prediction"] == "Normal" for v in by_id.values())

    alerts = read_json_stream(nats_server.url, topology.ALERTS)
    expected_alerts = {v["id"]: ("high" if v["confidence"] > 0.9 else "review") for v in by_id.values()
                       if v["prediction"] == "Attack" and v["confidence"] > 0.7}
    assert {a["id"]: a["severity"] for _, _, a in alerts} == expected_alerts
    assert len(alerts) == len(expected_alerts) > 0
    for subject, headers, alert in alerts:
        assert subject == f"alerts.{alert['severity']}" and headers[topology.MSG_ID_HEADER] == "a:" + alert["id"]

    letters = read_json_stream(nats_server.url, topology.DLQ)
    huge = next(entry for _, _, entry in letters if entry["reason"] == "verdict_too_large")
    assert "huge-flow" in huge["detail"] and "max_payload" in huge["detail"]
    assert huge["payload_truncated"] == len(bad[4][2]) and bad[4][2].decode().startswith(huge["payload"])
    reasons = {entry["payload"]: entry["reason"] for _, _, entry in letters if entry is not huge}
    assert reasons == {"{not json": "not_json", bad[1][2].decode(): "missing_id",
                       bad[2][2].decode(): "unknown_feature", bad[3][2].decode(): "wrong_type"}
    assert all(subject == topology.DLQ_SUBJECT for subject, _, _ in letters)

    assert consumer_state(nats_server.url) == (0, 0), "drained: nothing pending, nothing unacknowledged"
    counts = worker.metrics.counts()
    assert counts["verdicts"] == len(verdicts) and counts["dlq"] == 5 and counts["alerts"] == len(alerts)

    text = urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics.port}/metrics", timeout=5).read().decode()
    assert 'moe_ids_stream_dead_letters_total{reason="not_json"} 1.0' in text
    assert f"moe_ids_stream_consumed_total {float(len(verdicts) + 5)}" in text
    assert "moe_ids_stream_end_to_end_seconds_count" in text
    for sensor in ("edge-1", "edge-2", "gateway"):  # per sensor: verdicts, and those flagged unfamiliar
        scored = sum(1 for v in by_id.values() if v["sensor"] == sensor)
        flagged = sum(1 for v in by_id.values() if v["sensor"] == sensor and v["out_of_distribution"])
        assert f'moe_ids_stream_sensor_verdicts_total{{sensor="{sensor}"}} {float(scored)}' in text
        if flagged:
            assert f'moe_ids_stream_out_of_distribution_total{{sensor="{sensor}"}} {float(flagged)}' in text
    assert counts["out_of_distribution"] == sum(1 for v in by_id.values() if v["out_of_distribution"])


def test_streams_and_consumer_are_created_once_with_the_contract_settings(nats_server):
    import nats
    from nats.js.api import AckPolicy, StorageType

    async def check() -> None:
        nc = await nats.connect(servers=[nats_server.url])
        js = nc.jetstream()
        settings = topology.TopologySettings(ack_wait_s=5, duplicate_window_s=600)
        await topology.ensure_topology(js, settings)
        await topology.ensure_topology(js, settings)  # idempotent
        await topology.ensure_topology(js, update=False)  # a publisher does not undo the workers' settings
        for name, subject in topology.STREAM_SUBJECTS.items():
            info = await js.stream_info(name)
            assert info.config.subjects == [subject]
            assert StorageType(info.config.storage) == StorageType.FILE and info.config.duplicate_window == 600
        consumer = await js.consumer_info(topology.FLOWS, topology.CONSUMER)
        assert consumer.config.ack_wait == 5 and consumer.config.durable_name == topology.CONSUMER
        assert AckPolicy(consumer.config.ack_policy) == AckPolicy.EXPLICIT
        await nc.close()

    asyncio.run(check())
    assert read_stream(nats_server.url, topology.FLOWS) == []


def test_a_partial_batch_is_handed_on_without_waiting_for_the_batch_to_fill(nats_server):
    """The stream drained, then ten flows arrive, batches of 512: the worker hands the ten on after its short
    batch wait, not when a pull for 512 would expire (a second)."""
    import time

    from streams import _publish

    async def fetch_while_flows_arrive() -> tuple[int, float]:
        worker = ScorerWorker(WorkerSettings(nats_url=nats_server.url, batch_size=512, batch_wait_s=0.05))
        await worker._connect()
        try:
            sub = await worker._js.pull_subscribe_bind(durable=topology.CONSUMER, stream=topology.FLOWS)
            puller = broker.Puller(worker._nc, sub)
            fetching = asyncio.create_task(worker._fetch(puller))  # nothing there yet: it waits for the first
            await asyncio.sleep(0.2)
            await _publish(nats_server.url, [flow_message(f"p-{i}", {"Flow Duration": 1.0 + i}) for i in range(10)])
            published = time.monotonic()
            got = await fetching
            return len(got), time.monotonic() - published
        finally:
            await worker._nc.close()

    count, seconds = asyncio.run(fetch_while_flows_arrive())
    assert count == 10
    assert seconds < 0.5, f"the fetch held a partial batch for {seconds:.2f} s after it arrived"
