"""Zeek conn.log (TSV and JSON lines) and Suricata eve.json files to identifier columns plus features.

The records are hand-written in the formats Zeek and Suricata document (no sensor runs here); the values they
map to are checked by hand in test_sensor_mappings.py.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from moe_ids.client.sensor_logs import SensorLogError, read_sensor_log, sniff

ZEEK_TSV = """#separator \\x09
#set_separator\t,
#empty_field\t(empty)
#unset_field\t-
#path\tconn
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\torig_pkts\tresp_pkts
#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tcount\tcount
1499430000.120000\tCAbc1\t192.168.10.5\t53633\t192.168.10.3\t80\ttcp\thttp\t0.500000\t300\t1200\tSF\t4\t6
1499430001.000000\tCAbc2\t192.168.10.5\t53634\t192.168.10.3\t22\ttcp\t-\t-\t-\t-\tS0\t1\t0
#close\t2017-07-07-12-00-00
"""


def eve_lines() -> list[str]:
    flow = {"timestamp": "2017-07-07T03:30:01.000000+0000", "flow_id": 1234, "event_type": "flow",
            "src_ip": "192.168.10.5", "src_port": 53633, "dest_ip": "192.168.10.3", "dest_port": 80, "proto": "TCP",
            "flow": {"pkts_toserver": 4, "pkts_toclient": 6, "bytes_toserver": 540, "bytes_toclient": 1600,
                     "start": "2017-07-07T03:30:00.250000+0000", "end": "2017-07-07T03:30:00.750000+0000"}}
    alert = {"timestamp": "2017-07-07T03:30:01.1+0000", "event_type": "alert", "alert": {"signature": "x"}}
    return [json.dumps(flow), json.dumps(alert), json.dumps({**flow, "flow_id": 1235})]


def test_zeek_tsv(tmp_path: Path) -> None:
    path = tmp_path / "conn.log"
    path.write_text(ZEEK_TSV)
    assert sniff(path) == "zeek"
    (chunk,) = read_sensor_log(path, "zeek")
    assert list(chunk.ids["uid"]) == ["CAbc1", "CAbc2"]
    assert list(chunk.ids["id.resp_p"]) == ["80", "22"]
    assert chunk.features.loc[0, "Flow Duration"] == 500_000
    assert chunk.features.loc[0, "Total Length of Bwd Packets"] == 1200
    assert chunk.features.loc[1, "Flow Duration"] == 0  # '-' beside packet counts: Zeek logs only durations > 0
    assert np.isnan(chunk.features.loc[1, "Total Length of Fwd Packets"])  # its byte counts stay unknown
    assert chunk.lines == [8, 9]


def test_zeek_json_lines_gzip(tmp_path: Path) -> None:
    path = tmp_path / "conn.log.gz"
    records = [{"ts": 1.0, "uid": f"C{i}", "id.orig_h": "10.0.0.1", "id.orig_p": 1000 + i, "id.resp_h": "10.0.0.2",
                "id.resp_p": 443, "proto": "tcp", "duration": 0.25, "orig_bytes": 10, "resp_bytes": 20,
                "orig_pkts": 2, "resp_pkts": 3} for i in range(5)]
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in records) + "\n")
    assert sniff(path) == "zeek"
    chunks = list(read_sensor_log(path, "zeek", chunk_rows=2))
    assert [len(c.features) for c in chunks] == [2, 2, 1]  # every record once, in order
    assert [uid for c in chunks for uid in c.ids["uid"]] == [f"C{i}" for i in range(5)]
    assert chunks[0].features.loc[0, "Flow Packets/s"] == pytest.approx(20.0)


def test_suricata_flows_only(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    path.write_text("\n".join(eve_lines()) + "\n")
    assert sniff(path) == "suricata"
    skipped: list[int] = []
    (chunk,) = read_sensor_log(path, "suricata", skipped=skipped.append)
    assert list(chunk.ids["flow_id"]) == [1234, 1235] and skipped == [2]
    assert chunk.features.loc[0, "Flow Duration"] == 500_000
    assert np.isnan(chunk.features.loc[0, "Total Length of Fwd Packets"])  # whole-packet bytes: missing


def test_a_bad_record_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    lines = eve_lines()
    lines.insert(1, '{"event_type": "flow", "flow": {"pkts_toserver": "many"}}')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SensorLogError, match="line 2: .*expected a number, got 'many'"):
        list(read_sensor_log(path, "suricata"))
    broken = tmp_path / "conn.log"
    broken.write_text(ZEEK_TSV.replace("\t22\ttcp", "\t22"))
    with pytest.raises(SensorLogError, match="line 9: 13 values for 14 #fields"):
        list(read_sensor_log(broken, "zeek"))


def test_a_csv_is_not_a_sensor_log() -> None:
    assert sniff("data/cicids2017-original/orig_Wednesday_head200.csv.gz") is None


def test_labelled_zeek_tsv_with_space_joined_fields(labelled_conn_log: Path) -> None:
    path = labelled_conn_log
    assert sniff(path) == "zeek"
    (chunk,) = read_sensor_log(path, "zeek")
    assert list(chunk.ids["uid"]) == ["CUmrqr4svHuSXJy5z7", "CH98aB1hFpwZ1k8Xa4", "Ck3Tz23sBzQcLp0vV1"]
    # a malicious flow is named by its detailed label, a benign one by its label, an unlabelled one by nothing
    assert list(chunk.ids["label"][:2]) == ["PartOfAHorizontalPortScan", "Benign"]
    assert chunk.ids["label"].isna()[2]
    assert chunk.features.loc[0, "Total Fwd Packets"] == 3
    assert chunk.features.loc[1, "Flow Duration"] == pytest.approx(1187)


def test_a_record_short_of_its_space_joined_fields_names_its_line(labelled_conn_log: Path) -> None:
    path = labelled_conn_log
    path.write_text(path.read_text().replace("-   Benign   -", "-   Benign"))
    with pytest.raises(SensorLogError, match="line 9: 22 values for the 23 fields"):
        list(read_sensor_log(path, "zeek"))
