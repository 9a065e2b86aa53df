"""Packet captures to flows through NFStream: the loopback nmap capture's flows, counted independently.

``data/pcaps/nmap_loopback_syn_scan.pcap.gz`` is real traffic captured on the loopback interface of this
project's build machine: ``nmap -sS`` probes of 1,001 ports (one open), i.e. a SYN and a RST|ACK with no payload
per closed port, and SYN, SYN|ACK, RST for the open one.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from moe_ids.client.pcap_flows import is_capture, read_pcap
from moe_ids.data import extractors
from moe_ids.data.loading import bundled_data_dir

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
    # the TCP header fields, as CICFlowMeter has them for CIC-IDS2017's own nmap probes: nmap's window 1024 and
    # its 24-byte header (MSS option), the closed port's RST|ACK with window 0 and a bare 20-byte header
    probes = f[closed]
    assert (probes["Init_Win_bytes_forward"] == 1024).all() and (probes["Init_Win_bytes_backward"] == 0).all()
    assert (probes["Fwd Header Length"] == 24).all() and (probes["Bwd Header Length"] == 20).all()
    assert (probes["min_seg_size_forward"] == 24).all() and (f["act_data_pkt_fwd"] == 0).all()
    assert list(chunk.ids["dst_port"].head(2)) == [22, 21] and (chunk.ids["src_ip"] == "127.0.0.1").all()


def test_other_network_times_are_microseconds() -> None:
    chunks = list(read_pcap(PCAPS / "slowloris.pcap.gz", chunk_rows=100))
    assert [len(c.features) for c in chunks] == [100, 100, 100]
    f = chunks[0].features
    timed = f["Flow Duration"].notna()
    assert timed.mean() > 0.9 and f.loc[timed, "Flow Duration"].min() >= 1000  # whole milliseconds, in us
    ratio = f.loc[timed, "Flow Packets/s"] * f.loc[timed, "Flow Duration"] / 1e6
    np.testing.assert_allclose(ratio, f.loc[timed, "Total Fwd Packets"] + f.loc[timed, "Total Backward Packets"])


def _capture_loopback_exchange(path, requests: list[int], reply: int, pause_s: float) -> dict:
    """Real traffic generated here: a TCP client sends ``requests`` payloads (sizes in bytes, one send each,
    ``pause_s`` apart), the server answers ``reply`` bytes, both close. Captured with an AF_PACKET socket on
    ``lo`` (as libpcap does, outgoing copies are dropped) and written as a pcap file. Returns what was sent."""
    import socket
    import struct
    import threading
    import time

    try:
        sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    except (PermissionError, AttributeError, OSError) as exc:
        pytest.skip(f"capturing on the loopback interface needs CAP_NET_RAW ({exc})")
    sniffer.bind(("lo", 0))
    sniffer.settimeout(0.2)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    packets: list[tuple[float, bytes]] = []
    done = threading.Event()

    def capture() -> None:
        while not done.is_set():
            try:
                frame, address = sniffer.recvfrom(65535)
            except TimeoutError:
                continue
            if address[2] == socket.PACKET_OUTGOING:
                continue
            ports = struct.unpack("!HH", frame[34:38]) if len(frame) >= 38 and frame[23] == 6 else ()
            if port in ports:
                packets.append((time.time(), frame))

    def serve() -> None:
        conn, _ = server.accept()
        received = 0
        while received < sum(requests):
            received += len(conn.recv(65536))
        conn.sendall(b"r" * reply)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)
        conn.close()

    capturer, answerer = threading.Thread(target=capture), threading.Thread(target=serve)
    capturer.start()
    answerer.start()
    client = socket.create_connection(("127.0.0.1", port))
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for size in requests:
        client.sendall(b"q" * size)
        time.sleep(pause_s)
    got = 0
    while got < reply:
        got += len(client.recv(65536))
    client.shutdown(socket.SHUT_WR)
    client.recv(1)
    client.close()
    answerer.join(timeout=10)
    time.sleep(0.3)
    done.set()
    capturer.join(timeout=5)
    sniffer.close()
    server.close()
    with open(path, "wb") as fh:  # classic pcap, Ethernet link type (Linux gives lo frames an Ethernet header)
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, frame in packets:
            fh.write(struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(frame), len(frame)))
            fh.write(frame)
    return {"port": port, "packets": packets}


def _tcp(frame: bytes) -> tuple[int, int, int]:
    """(payload bytes, TCP header bytes, window) of an Ethernet/IPv4/TCP frame."""
    ihl = (frame[14] & 0x0F) * 4
    total = int.from_bytes(frame[16:18], "big")
    tcp = 14 + ihl
    header = (frame[tcp + 12] >> 4) * 4
    return total - ihl - header, header, int.from_bytes(frame[tcp + 14:tcp + 16], "big")


def _payload(frame: bytes) -> int:
    return _tcp(frame)[0]


def test_a_capture_made_on_loopback_maps_to_the_sizes_and_counts_sent(tmp_path) -> None:
    requests, reply = [100, 200, 300], 1000
    sent = _capture_loopback_exchange(tmp_path / "exchange.pcap", requests, reply, pause_s=0.05)
    (chunk,) = read_pcap(tmp_path / "exchange.pcap")
    assert len(chunk.features) == 1
    f = chunk.features.iloc[0]
    port = sent["port"]
    fwd = [fr for _, fr in sent["packets"] if int.from_bytes(fr[36:38], "big") == port]  # to the server
    bwd = [fr for _, fr in sent["packets"] if int.from_bytes(fr[34:36], "big") == port]
    assert f["Total Fwd Packets"] == len(fwd) and f["Total Backward Packets"] == len(bwd)
    # payload bytes, as CICFlowMeter counts them - not frame bytes
    assert f["Total Length of Fwd Packets"] == sum(requests) == sum(_payload(fr) for fr in fwd)
    assert f["Total Length of Bwd Packets"] == reply == sum(_payload(fr) for fr in bwd)
    assert f["Fwd Packet Length Max"] == max(requests)
    assert f["SYN Flag Count"] == 2 and f["FIN Flag Count"] == 2
    # header fields from the frames themselves: CICFlowMeter's first forward and LAST backward window, header
    # bytes per direction, the smallest forward header, forward packets after the first that carry payload
    assert f["Init_Win_bytes_forward"] == _tcp(fwd[0])[2] > 0
    assert f["Init_Win_bytes_backward"] == _tcp(bwd[-1])[2]
    assert f["Fwd Header Length"] == sum(_tcp(fr)[1] for fr in fwd) and f["Bwd Header Length"] == sum(
        _tcp(fr)[1] for fr in bwd)
    assert f["min_seg_size_forward"] == min(_tcp(fr)[1] for fr in fwd)
    assert f["act_data_pkt_fwd"] == sum(1 for fr in fwd[1:] if _payload(fr) > 0) == len(requests)
    assert chunk.ids.iloc[0]["dst_port"] == port and chunk.ids.iloc[0]["src_ip"] == "127.0.0.1"
    # the sends were 50 ms apart: NFStream's millisecond clock tells that duration, in microseconds
    span_us = (sent["packets"][-1][0] - sent["packets"][0][0]) * 1e6
    assert f["Flow Duration"] == pytest.approx(span_us, abs=1500) and f["Flow Duration"] >= 100_000


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_capture_is_read_in_a_process_that_runs_grpc_clients(triton_server) -> None:
    """NFStream's workers must not be forks of a process with live gRPC threads (they could spin forever)."""
    from moe_ids.client import MoEClient

    with MoEClient(triton_server.grpc_url) as client:
        assert client.health()["ready"]
        (chunk,) = read_pcap(SCAN)
        result = client.predict_batch(chunk.features)
    assert len(result) == 1001
