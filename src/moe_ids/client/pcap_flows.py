"""Packet captures (pcap, pcapng; gzip fine) to flows, by NFStream with payload accounting.

Why NFStream: a maintained C flow engine (libpcap and nDPI inside its wheel, no system packages) that keeps
per-direction packet, payload-byte, inter-arrival and TCP-flag statistics - most of what CICFlowMeter computes -
with sample standard deviations like CICFlowMeter's. ``accounting_mode=3`` counts transport payload, which is
what CICFlowMeter's lengths mean (the ``cicflowmeter`` Python package counts whole frames instead). Its clock has
millisecond resolution: times are converted to microseconds, and where a flow lasted under a millisecond its
times and rates cannot be told and are sent as missing. NFStream keeps no TCP windows or header lengths, which
rank among the model's most telling features (an nmap probe's window is 1024), so a small plugin
(``TcpHeaderFields``) reads them from each packet's own TCP header, the way CICFlowMeter's ``BasicFlow`` does.
The ``pcap`` profile of ``moe_ids.data.extractors`` lists what is converted and what stays missing (subflows,
active/idle periods).

Flows expire after 120 s idle or 120 s active, CICFlowMeter's flow timeout. Needs the ``pcap`` extra.
"""

from __future__ import annotations

import gzip
import multiprocessing
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from moe_ids.core.schema import FEATURE_NAMES
from moe_ids.data.extractors import FLAG_COUNTS, get_profile

from .sensor_logs import SensorChunk, SensorLogError

try:  # the `pcap` extra; without it read_pcap says how to install it
    from nfstream import NFPlugin
except ImportError:  # pragma: no cover - exercised only without the extra
    NFPlugin = None

FLOW_TIMEOUT_S = 120
PCAP_MAGICS: tuple[bytes, ...] = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
                                  b"\x0a\x0d\x0d\x0a")  # pcap (both byte orders, us and ns) and pcapng
PCAP_IDS: dict[str, str] = {"src_ip": "src_ip", "src_port": "src_port", "dst_ip": "dst_ip", "dst_port": "dst_port",
                            "protocol": "protocol", "first_seen_ms": "bidirectional_first_seen_ms"}


class TcpHeaderFields(NFPlugin if NFPlugin is not None else object):  # type: ignore[misc]
    """CICFlowMeter's per-flow TCP header features, read from every packet's transport header.

    As ``BasicFlow`` computes them: ``Init_Win_bytes_forward`` is the first packet's window, and
    ``Init_Win_bytes_backward`` the window of the LAST backward packet (CICFlowMeter sets it on every backward
    packet despite its name; 0 without one); header lengths are transport header bytes (TCP data offset with
    options, UDP 8) summed per direction; ``min_seg_size_forward`` is the smallest forward header;
    ``act_data_pkt_fwd`` counts forward packets after the first that carry payload. For other protocols the
    header features are left unknown (NaN): CICFlowMeter's header length is a TCP or UDP notion.
    """

    def on_init(self, packet, flow) -> None:  # noqa: ANN001 - NFStream's packet and flow objects
        u = flow.udps
        u.tcp_fields_known = packet.protocol in (6, 17)
        u.init_win_fwd = u.last_win_bwd = 0
        u.header_fwd = u.header_bwd = 0
        u.min_header_fwd = None
        u.act_data_fwd = 0
        self._add(packet, u, first=True)

    def on_update(self, packet, flow) -> None:  # noqa: ANN001
        self._add(packet, flow.udps, first=False)

    @staticmethod
    def _add(packet, u, first: bool) -> None:  # noqa: ANN001
        if not u.tcp_fields_known:
            return
        header, window = _transport_header(packet)
        if header is None:  # a fragment or a truncated capture: the header is not in this packet
            u.tcp_fields_known = False
            return
        if packet.direction == 0:
            if first:
                u.init_win_fwd = window
            elif packet.payload_size >= 1:
                u.act_data_fwd += 1
            u.header_fwd += header
            u.min_header_fwd = header if u.min_header_fwd is None else min(u.min_header_fwd, header)
        else:
            u.last_win_bwd = window
            u.header_bwd += header


def _transport_header(packet) -> tuple[int | None, int]:  # noqa: ANN001
    """(transport header bytes, TCP window) of one packet, from its IP bytes; (None, 0) when not readable."""
    ip = packet.ip_packet
    if packet.ip_version == 4:
        if len(ip) < 20 or int.from_bytes(ip[6:8], "big") & 0x1FFF:  # a non-first fragment has no header
            return None, 0
        start = (ip[0] & 0x0F) * 4
    else:
        start = 40  # IPv6 extension headers before TCP/UDP are rare; their next-header chain is not followed
    if packet.protocol == 17:
        return (8, 0) if len(ip) >= start + 8 else (None, 0)
    if len(ip) < start + 16:
        return None, 0
    return (ip[start + 12] >> 4) * 4, int.from_bytes(ip[start + 14:start + 16], "big")


TCP_FIELDS: dict[str, str] = {  # feature -> the plugin's per-flow value (NFStream writes them as udps.NAME)
    "Init_Win_bytes_forward": "init_win_fwd", "Init_Win_bytes_backward": "last_win_bwd",
    "Fwd Header Length": "header_fwd", "Bwd Header Length": "header_bwd",
    "min_seg_size_forward": "min_header_fwd", "act_data_pkt_fwd": "act_data_fwd",
}


def is_capture(path: str | Path) -> bool:
    """True for a pcap or pcapng file, gzipped or not (told by its magic number, not its name)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            return fh.read(4) in PCAP_MAGICS
    except (OSError, EOFError):
        return False


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    return (num / den.where(den > 0)).astype(np.float64)


def flows_to_features(f: pd.DataFrame) -> pd.DataFrame:
    """NFStream flow records (payload accounting) -> canonical features, NaN where the profile says
    unavailable or a sub-millisecond time makes the value unknown."""
    us = 1000.0
    fwd, bwd, both = f["src2dst_packets"], f["dst2src_packets"], f["bidirectional_packets"]
    duration = f["bidirectional_duration_ms"] * us
    timed = f["bidirectional_duration_ms"] > 0  # under 1 ms NFStream writes 0: unknown, not zero
    seconds = duration.where(timed) / 1e6
    out = pd.DataFrame(index=f.index, columns=list(FEATURE_NAMES), dtype=np.float64)
    values = {
        "Flow Duration": duration.where(timed | (both <= 1)),
        "Total Fwd Packets": fwd, "Total Backward Packets": bwd,
        "Total Length of Fwd Packets": f["src2dst_bytes"], "Total Length of Bwd Packets": f["dst2src_bytes"],
        "Fwd Packet Length Max": f["src2dst_max_ps"], "Fwd Packet Length Min": f["src2dst_min_ps"],
        "Fwd Packet Length Mean": f["src2dst_mean_ps"], "Fwd Packet Length Std": f["src2dst_stddev_ps"],
        "Bwd Packet Length Max": f["dst2src_max_ps"], "Bwd Packet Length Min": f["dst2src_min_ps"],
        "Bwd Packet Length Mean": f["dst2src_mean_ps"], "Bwd Packet Length Std": f["dst2src_stddev_ps"],
        "Min Packet Length": f["bidirectional_min_ps"], "Max Packet Length": f["bidirectional_max_ps"],
        "Packet Length Mean": f["bidirectional_mean_ps"], "Packet Length Std": f["bidirectional_stddev_ps"],
        "Packet Length Variance": f["bidirectional_stddev_ps"] ** 2,
        "Flow Bytes/s": _ratio(f["bidirectional_bytes"], seconds),
        "Flow Packets/s": _ratio(both, seconds), "Fwd Packets/s": _ratio(fwd, seconds),
        "Bwd Packets/s": _ratio(bwd, seconds),
        "Down/Up Ratio": _ratio(bwd, fwd).fillna(0.0),
        "Average Packet Size": _ratio(f["bidirectional_bytes"], both),
        "Avg Fwd Segment Size": f["src2dst_mean_ps"], "Avg Bwd Segment Size": f["dst2src_mean_ps"],
        "Fwd PSH Flags": f["src2dst_psh_packets"], "Bwd PSH Flags": f["dst2src_psh_packets"],
        "Fwd URG Flags": f["src2dst_urg_packets"], "Bwd URG Flags": f["dst2src_urg_packets"],
    }
    for name in FLAG_COUNTS:  # "CWE Flag Count" is CICFlowMeter's spelling of the CWR flag
        flag = name.split()[0].lower()
        values[name] = f[f"bidirectional_{'cwr' if flag == 'cwe' else flag}_packets"]
    for name, prefix, count, span in (("Flow", "bidirectional", both, "bidirectional_duration_ms"),
                                      ("Fwd", "src2dst", fwd, "src2dst_duration_ms"),
                                      ("Bwd", "dst2src", bwd, "dst2src_duration_ms")):
        known = f[span] > 0  # gaps under 1 ms read as 0
        several = count >= 2
        stats = {"Mean": "mean", "Std": "stddev", "Max": "max", "Min": "min"}
        for stat, column in stats.items():
            values[f"{name} IAT {stat}"] = (f[f"{prefix}_{column}_piat_ms"] * us).where(known | ~several)
        if name != "Flow":
            values[f"{name} IAT Total"] = (f[span] * us).where(known | ~several)
    tcp_known = f["udps.tcp_fields_known"].astype(bool)  # the TcpHeaderFields plugin's columns
    for name, column in TCP_FIELDS.items():
        values[name] = pd.to_numeric(f[f"udps.{column}"], errors="coerce").where(tcp_known)
    for name, series in values.items():
        out[name] = pd.to_numeric(series, errors="coerce").astype(np.float64)
    unavailable = list(get_profile("pcap").unavailable)
    out.loc[:, unavailable] = np.nan
    return out


def read_pcap(path: str | Path, chunk_rows: int = 16384) -> Iterator[SensorChunk]:
    """Chunks of flows of the capture at ``path``, in the order NFStream expires them."""
    try:
        import nfstream
    except ImportError:
        raise SensorLogError("reading packet captures needs NFStream: pip install 'triton-moe-ids[pcap]'") from None
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="moe-ids-pcap-") as work:
        source = path
        if path.suffix == ".gz":  # NFStream reads plain files only
            source = Path(work) / path.stem
            with gzip.open(path, "rb") as src, open(source, "wb") as dst:
                shutil.copyfileobj(src, dst)
        streamer = nfstream.NFStreamer(source=str(source), statistical_analysis=True, accounting_mode=3,
                                       n_dissections=0, idle_timeout=FLOW_TIMEOUT_S, active_timeout=FLOW_TIMEOUT_S,
                                       udps=TcpHeaderFields())
        # NFStream forks its meter processes on Linux. A fork of a process that already runs gRPC, ONNX Runtime
        # or other threads (any SDK user, `moe-ids score`) copies their locks mid-use and the child can spin
        # forever; fresh interpreters ("spawn", NFStream's own choice on Windows) inherit nothing. NFStream
        # 6.5.4 keeps the context in this attribute and offers no option for it.
        streamer._mp_context = multiprocessing.get_context("spawn")
        try:
            flows = streamer.to_pandas()
        except Exception as exc:  # noqa: BLE001 - NFStream reports unreadable captures in several ways
            raise SensorLogError(f"NFStream could not read the capture: {exc}") from None
    if flows is None or flows.empty:
        return
    flows = flows.reset_index(drop=True)
    features = flows_to_features(flows)
    ids = flows[list(PCAP_IDS.values())].set_axis(list(PCAP_IDS), axis=1)
    for start in range(0, len(flows), chunk_rows):
        rows = slice(start, start + chunk_rows)
        yield SensorChunk(ids.iloc[rows].reset_index(drop=True), features.iloc[rows].reset_index(drop=True))
