"""Input messages to feature rows and rejections, verdict and dead-letter payloads (no servers needed)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest

from moe_ids.client.features import encode_frame
from moe_ids.client.model_info import ModelInfo
from moe_ids.client.suricata import from_suricata_flow
from moe_ids.client.zeek import from_zeek_conn
from moe_ids.core import contract
from moe_ids.core.schema import FEATURE_NAMES
from moe_ids.streaming import messages as m
from moe_ids.streaming import topology


@pytest.fixture(scope="module")
def info() -> ModelInfo:
    outputs = [{"name": name, "dims": [-1, 2]} for name in (contract.PROBABILITIES, contract.GATING)]
    return ModelInfo.from_config({"input": [{"name": contract.INPUT_FEATURES, "dims": [-1, len(FEATURE_NAMES)]}],
                                  "output": outputs, "max_batch_size": 4096})


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_a_valid_message_keeps_its_fields():
    flow = m.parse_input("flows.x", body(id="f1", features={"Flow Duration": 10, "Total Fwd Packets": None},
                                         sensor="edge.1 a", ts=1.5, imputation="MEAN", flow={"src_ip": "10.0.0.1"}))
    assert flow.id == "f1" and flow.features == {"Flow Duration": 10, "Total Fwd Packets": None}
    assert flow.sensor == "edge_1_a"  # one subject token
    assert flow.imputation == "mean" and flow.ts == 1.5 and flow.flow == {"src_ip": "10.0.0.1"}
    assert topology.verdict_subject(flow.sensor) == "verdicts.edge_1_a"
    assert topology.verdict_subject(None) == "verdicts.default"


@pytest.mark.parametrize(("payload", "reason", "named"), [
    (b"not json {", "not_json", "JSON"),
    (b"[1, 2]", "not_object", "list"),
    (body(features={"Flow Duration": 1}), "missing_id", "id"),
    (body(id="", features={}), "missing_id", "id"),
    (body(id=7, features={}), "missing_id", "id"),
    (body(id="a"), "bad_features", "features"),
    (body(id="a", features=[1, 2]), "bad_features", "features"),
    (body(id="a", features={"Flow Duration": "12"}), "wrong_type", "Flow Duration"),
    (body(id="a", features={"Flow Duration": True}), "wrong_type", "Flow Duration"),
    (body(id="a", features={}, imputation="mode"), "bad_imputation", "mode"),
    (body(id="a", features={}, sensor=3), "wrong_type", "sensor"),
    (body(id="a", features={}, colour="red"), "unknown_feature", "colour"),
])
def test_malformed_messages_are_rejected_with_a_reason_naming_the_problem(payload, reason, named):
    with pytest.raises(m.Rejected) as err:
        m.parse_input("flows.x", payload)
    assert err.value.reason == reason
    assert named in str(err.value)


def test_unknown_feature_names_are_rejected_per_message(info):
    encoder = m.FeatureEncoder(info)
    good = m.parse_input("flows.x", body(id="g", features={"flow_duration": 5.0}))
    encoder.check(good)
    typo = m.parse_input("flows.x", body(id="t", features={"flow_duraton": 5.0}))
    with pytest.raises(m.Rejected) as err:
        encoder.check(typo)
    assert err.value.reason == "unknown_feature" and "flow_duraton" in str(err.value)


def test_rows_are_encoded_exactly_as_the_sdk_encodes_them(info):
    """Mixed namings in one batch: each row gets the conversion its names' extractor needs."""
    rng = np.random.default_rng(0)
    python_names = {"flow_duration": 2.0, "tot_fwd_pkts": 2.0, "tot_bwd_pkts": 1.0, "totlen_fwd_pkts": 116.0,
                    "fwd_pkt_len_mean": 58.0, "flow_iat_mean": 1.0, "flow_byts_s": 58.0e6}
    original = {"Flow Duration": 1234.0, "Total Fwd Packets": 3.0, "Init_Win_bytes_forward": -1.0,
                "Fwd PSH Flags": 1.0}
    canonical = {name: float(v) for name, v in zip(FEATURE_NAMES, rng.uniform(0, 100, len(FEATURE_NAMES)))}
    flows = [m.parse_input("flows.x", body(id=str(i), features=f))
             for i, f in enumerate([python_names, original, canonical, python_names])]
    x = m.FeatureEncoder(info).encode(flows)
    for row, flow in zip(x, flows):
        expected = encode_frame(pd.DataFrame([flow.features]), info.feature_names, "raise")[0]
        np.testing.assert_array_equal(row, expected)
    # the python package's frame bytes are not the model's payload bytes: sent as missing, not as 116
    assert np.isnan(x[0, info.feature_names.index("Total Length of Fwd Packets")])
    assert x[2, 0] == np.float32(canonical[FEATURE_NAMES[0]])


def test_zeek_and_suricata_records_are_mapped_by_the_sdk():
    conn = {"ts": 1.0, "uid": "C1a", "id.orig_h": "10.0.0.1", "id.orig_p": 5, "id.resp_h": "10.0.0.2",
            "id.resp_p": 80, "proto": "tcp", "duration": 0.5, "orig_pkts": 4, "resp_pkts": 3, "orig_bytes": 100,
            "resp_bytes": 2000}
    flow = m.parse_input("flows.zeek.edge", json.dumps(conn).encode())
    assert flow.id == "C1a" and flow.sensor == "edge" and flow.flow["id.resp_p"] == 80
    expected = from_zeek_conn(conn)
    assert flow.features["Flow Duration"] == expected["Flow Duration"] == 500_000.0
    eve = {"event_type": "flow", "flow_id": 991, "src_ip": "10.0.0.1", "dest_ip": "10.0.0.9",
           "flow": {"pkts_toserver": 3, "pkts_toclient": 2, "bytes_toserver": 180, "bytes_toclient": 120,
                    "start": "2024-01-01T00:00:00.000000+0000", "end": "2024-01-01T00:00:01.000000+0000"}}
    event = m.parse_input("flows.suricata", json.dumps(eve).encode(), header_id="eve:991")
    assert event.id == "eve:991" and event.sensor == "default"
    assert event.features["Total Fwd Packets"] == from_suricata_flow(eve)["Total Fwd Packets"] == 3.0
    with pytest.raises(m.Rejected) as err:
        m.parse_input("flows.suricata", json.dumps({**eve, "event_type": "alert"}).encode())
    assert err.value.reason == "bad_record"
    with pytest.raises(m.Rejected) as err:
        m.parse_input("flows.zeek", json.dumps({"duration": 1}).encode())
    assert err.value.reason == "missing_id"


def test_an_alert_is_its_verdict_with_the_severity_added():
    verdict = {"id": "a-1", "prediction": "Attack", "confidence": 0.97, "trust": None, "ts": float("nan"),
               "flow": {"src_ip": "10.0.0.1"}, "probabilities": {"Normal": 0.03, "Attack": 0.97}}
    body = m.encode_json(verdict)
    alert = m.alert_body(body, "high")
    assert json.loads(alert) == {**json.loads(body), "severity": "high"}
    assert m.alert_body(b"{}", "review") == b'{"severity":"review"}'
    with pytest.raises(ValueError, match="severity"):
        m.alert_body(body, "low")
    with pytest.raises(ValueError, match="not an encoded verdict"):
        m.alert_body(b"[1]", "high")


def test_alert_severity_follows_the_thresholds():
    assert m.severity("Attack", 0.95, 0.9, 0.7) == "high"
    assert m.severity("Attack", 0.9, 0.9, 0.7) == "review"  # strictly above
    assert m.severity("Attack", 0.75, 0.9, 0.7) == "review"
    assert m.severity("Attack", 0.7, 0.9, 0.7) is None
    assert m.severity("Normal", 0.99, 0.9, 0.7) is None


def test_dead_letters_keep_the_original_payload_even_when_it_is_not_text():
    entry = json.loads(m.dead_letter("flows.a", b'{"id": 1}', "missing_id", "id must be a string", 1, 42))
    assert entry["payload"] == '{"id": 1}' and entry["reason"] == "missing_id" and entry["stream_sequence"] == 42
    binary = json.loads(m.dead_letter("flows.a", b"\xff\x00", "not_json", "x", 2, 7))
    assert base64.b64decode(binary["payload_base64"]) == b"\xff\x00" and binary["delivered"] == 2


def test_verdict_json_is_standard_json():
    text = m.encode_json({"id": "a", "ts": float("nan"), "flow": {"x": [float("inf"), 1.0]}, "n": np.float32(0.5)})
    assert json.loads(text) == {"id": "a", "ts": None, "flow": {"x": [None, 1.0]}, "n": 0.5}


def test_the_dedup_window_must_outlast_redelivery():
    with pytest.raises(ValueError, match="duplicate window"):
        topology.TopologySettings(duplicate_window_s=50, ack_wait_s=30)


def test_a_dead_letter_too_large_for_the_broker_keeps_the_start_of_its_payload() -> None:
    data = ('{"id":"big","note":"' + "\\u00e9\"x" * 40_000 + '"}').encode()  # escapes grow when quoted again
    whole = json.loads(m.dead_letter("flows.a", data, "not_json", "why", 1, 7))
    assert whole["payload"] == data.decode() and "payload_truncated" not in whole
    small = m.dead_letter("flows.a", data, "not_json", "why", 1, 7, max_bytes=50_000)
    assert len(small) <= 50_000
    entry = json.loads(small)
    assert entry["payload_truncated"] == len(data) and data.decode().startswith(entry["payload"])
    assert len(entry["payload"]) > 20_000 and entry["stream_sequence"] == 7 and entry["reason"] == "not_json"
