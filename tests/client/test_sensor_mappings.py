"""Zeek conn.log and Suricata eve.json flow records to features (hand-written records, checked by hand)."""

from __future__ import annotations

import math

import pytest

from moe_ids.client import from_suricata_flow, from_zeek_conn
from moe_ids.core.schema import FEATURE_NAMES

ZEEK = {"ts": 1499430000.12, "uid": "CAbc1", "id.orig_h": "192.168.10.5", "id.orig_p": 53633,
        "id.resp_h": "192.168.10.3", "id.resp_p": 80, "proto": "tcp", "service": "http", "duration": 0.5,
        "orig_bytes": 300, "resp_bytes": 1200, "conn_state": "SF", "orig_pkts": 4, "orig_ip_bytes": 508,
        "resp_pkts": 6, "resp_ip_bytes": 1520}

SURICATA = {"timestamp": "2017-07-07T03:30:01.000000+0000", "event_type": "flow", "src_ip": "192.168.10.5",
            "src_port": 53633, "dest_ip": "192.168.10.3", "dest_port": 80, "proto": "TCP",
            "flow": {"pkts_toserver": 4, "pkts_toclient": 6, "bytes_toserver": 300, "bytes_toclient": 1200,
                     "start": "2017-07-07T03:30:00.250000+0000", "end": "2017-07-07T03:30:00.750000+0000",
                     "age": 0, "state": "closed", "reason": "timeout", "alerted": False}}

EXPECTED = {
    "Flow Duration": 500_000.0,
    "Total Fwd Packets": 4.0,
    "Total Backward Packets": 6.0,
    "Total Length of Fwd Packets": 300.0,
    "Total Length of Bwd Packets": 1200.0,
    "Flow Bytes/s": 3000.0,
    "Flow Packets/s": 20.0,
    "Fwd Packets/s": 8.0,
    "Bwd Packets/s": 12.0,
    "Fwd Packet Length Mean": 75.0,
    "Bwd Packet Length Mean": 200.0,
    "Avg Fwd Segment Size": 75.0,
    "Avg Bwd Segment Size": 200.0,
    "Packet Length Mean": 150.0,
    "Average Packet Size": 150.0,
    "Down/Up Ratio": 1.5,
}


# Suricata's byte counters hold whole packets (headers included), not CICFlowMeter's payload: sent as missing
SURICATA_BYTES = {"Total Length of Fwd Packets", "Total Length of Bwd Packets", "Flow Bytes/s",
                  "Fwd Packet Length Mean", "Bwd Packet Length Mean", "Avg Fwd Segment Size", "Avg Bwd Segment Size",
                  "Packet Length Mean", "Average Packet Size"}


@pytest.mark.parametrize(("features", "expected"), [
    (from_zeek_conn(ZEEK), EXPECTED),
    (from_suricata_flow(SURICATA), {k: v for k, v in EXPECTED.items() if k not in SURICATA_BYTES}),
], ids=["zeek", "suricata"])
def test_totals_rates_and_means(features: dict[str, float], expected: dict[str, float]) -> None:
    assert list(features) == list(FEATURE_NAMES)
    for name, value in expected.items():
        assert features[name] == pytest.approx(value), name
    unknown = [n for n in FEATURE_NAMES if n not in expected]
    assert all(math.isnan(features[n]) for n in unknown)  # per-packet statistics are not in these logs


def test_zeek_unset_fields_and_zero_duration() -> None:
    # a lone SYN as Zeek logs it: duration and byte counts unset (Zeek writes them only when duration > 0)
    features = from_zeek_conn({"duration": "-", "orig_pkts": 1, "resp_pkts": 0, "orig_bytes": "-",
                               "resp_bytes": "-"})
    assert features["Flow Duration"] == 0 and math.isnan(features["Flow Packets/s"])  # CICFlowMeter: Infinity
    assert features["Total Fwd Packets"] == 1 and features["Down/Up Ratio"] == 0
    assert math.isnan(features["Total Length of Fwd Packets"])  # the payload of a zero-duration connection
    assert math.isnan(features["Bwd Packet Length Mean"])  # no backward packets: no mean
    assert sum(not math.isnan(v) for v in features.values()) == 4  # trust.MIN_OBSERVED: enough for a verdict
    zero = from_zeek_conn({"duration": 0, "orig_pkts": 1, "resp_pkts": 0})
    assert zero["Flow Duration"] == 0 and math.isnan(zero["Flow Packets/s"])
    # without the packet counts (conn-size analyzer off) an unset duration tells nothing
    assert math.isnan(from_zeek_conn({"duration": "-", "orig_bytes": "-"})["Flow Duration"])


def test_zeek_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="orig|number"):
        from_zeek_conn({"orig_pkts": "many"})


def test_suricata_falls_back_to_age_and_rejects_other_events() -> None:
    event = {"event_type": "flow", "flow": {"pkts_toserver": 2, "pkts_toclient": 0, "age": 3}}
    assert from_suricata_flow(event)["Flow Duration"] == 3_000_000
    with pytest.raises(ValueError, match="event_type"):
        from_suricata_flow({"event_type": "alert", "flow": {}})
    with pytest.raises(ValueError, match="'flow' object"):
        from_suricata_flow({"event_type": "flow"})
