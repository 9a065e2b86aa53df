"""Packet captures to flows through NFStream: the loopback nmap capture's flows, counted independently.

``data/pcaps/nmap_loopback_syn_scan.pcap.gz`` is real traffic captured on the loopback interface of this
project's build machine: ``nmap -sS`` probes of 1,001 ports (one open), i.e. a SYN and a RST|ACK with no payload
per closed port, and SYN, SYN|ACK, RST for the open one.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from moe_ids import extractors
from moe_ids.client.pcap_flows import is_capture, read_pcap
from moe_ids.data import bundled_data_dir

pytest.importorskip("nfstream")
PCAPS = bundled_data_dir() / "pcaps"
SCAN = PCAPS / "nmap_loopback_syn_scan.pcap.gz"


def _packets(path) -> int:
    import dpkt  # an NFStream dependency; an independent reader of the same file

    with gzip.open(path, "rb") as fh:
        return sum(1 for _ in dpkt.pcap.Reader(fh))


def test_captures_are_told_by_their_magic_number() -> None:
    assert is_capture(SCAN) and is_capture(PCAPS / "slowloris.pcap.gz")
    assert not is_capture(bundled_data_dir() / "cicids2017-original" / "orig_Wednesday_head200.csv.gz")


def test_scan_flows_have_the_probes_packets_and_payload() -> None:
    (chunk,) = read_pcap(SCAN)
    f = chunk.features
    assert len(f) == 1001
    assert (f["Total Fwd Packets"] + f["Total Backward Packets"]).sum() == _packets(SCAN) == 2003  # nothing lost
    closed = (f["Total Fwd Packets"] == 1) & (f["Total Backward Packets"] == 1)
    assert closed.sum() == 1000
    assert (f["Total Length of Fwd Packets"] == 0).all() and (f["Total Length of Bwd Packets"] == 0).all()  # payload
    assert (f.loc[closed, "SYN Flag Count"] == 1).all() and (f.loc[closed, "RST Flag Count"] == 1).all()
    assert (f.loc[~closed, "SYN Flag Count"] == 2).all()  # the open port: SYN and SYN|ACK
    # loopback round trips take microseconds: NFStream's millisecond clock cannot tell them, so they are missing
    assert f["Flow Duration"].isna().mean() > 0.9 and f["Flow Packets/s"].isna().mean() > 0.9
    for name in extractors.get_profile("pcap").unavailable:
        assert f[name].isna().all(), name
    assert list(chunk.ids["dst_port"].head(2)) == [22, 21] and (chunk.ids["src_ip"] == "127.0.0.1").all()


def test_other_network_times_are_microseconds() -> None:
    chunks = list(read_pcap(PCAPS / "slowloris.pcap.gz", chunk_rows=100))
    assert [len(c.features) for c in chunks] == [100, 100, 100]
    f = chunks[0].features
    timed = f["Flow Duration"].notna()
    assert timed.mean() > 0.9 and f.loc[timed, "Flow Duration"].min() >= 1000  # whole milliseconds, in us
    ratio = f.loc[timed, "Flow Packets/s"] * f.loc[timed, "Flow Duration"] / 1e6
    np.testing.assert_allclose(ratio, f.loc[timed, "Total Fwd Packets"] + f.loc[timed, "Total Backward Packets"])
