"""Extractor profiles: what each flow extractor's columns mean, and how they become the model's features.

A column name that matches a feature is not a value that means the same thing. The model's features have the
semantics of CICFlowMeter as fixed by Engelen et al. 2021 (the corrected CIC-IDS2017 release; the public Java
CICFlowMeter 4 computes the same definitions): lengths are transport payload bytes, header lengths are transport
header bytes, times are microseconds, standard deviations are sample (n-1) deviations, TCP flag counts count
packets carrying the flag, a subflow feature is a total divided by the number of >1 s gaps, an absent initial
window is 0, and ``Init_Win_bytes_backward`` is, despite its name, the window of the LAST backward packet
(``BasicFlow.addPacket`` sets it on every backward packet; both CIC-IDS2017 extractions show it: flows with a
handshake and many replies hold the scaled windows of their last packets, 235 or 229, not a SYN-ACK's 28960).
Every other extractor is described here feature by feature:

* ``same`` - the value means what the model's feature means;
* ``converted`` - it does after a conversion that this module applies (the text says how);
* ``unavailable`` - the meaning cannot be recovered from what the extractor wrote, so the value is sent as
  missing (NaN) and the server imputes it and flags it in the mask: never a wrong number.

A profile converts at the edge - the CSV loader (training, evaluation), ``moe-ids score`` and the client SDK
- so training and serving see the same semantics. Profiles are detected from the column spelling where that is
unambiguous (``detect``) and can always be named explicitly (``--extractor``). Zeek and Suricata write records,
not CICFlowMeter columns: their profiles document and enforce what ``moe_ids.client.from_zeek_conn`` /
``from_suricata_flow`` can fill.

Sources read for these rules: CICFlowMeter's Java ``BasicFlow``/``PacketReader`` (ahlashkari/CICFlowMeter), the
``cicflowmeter`` Python package's ``flow.py`` and ``features/`` (hieulw/cicflowmeter, v0.2.0 and later), and the
bundled CIC-IDS2017 files of both extractions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from moe_ids.core.schema import FEATURE_NAMES, normalize_name

Status = Literal["same", "converted", "unavailable"]
Converter = Callable[[pd.DataFrame], pd.DataFrame]

FLAG_COUNTS = ("FIN Flag Count", "SYN Flag Count", "RST Flag Count", "PSH Flag Count", "ACK Flag Count",
               "URG Flag Count", "CWE Flag Count", "ECE Flag Count")
DIRECTION_FLAGS = ("Fwd PSH Flags", "Bwd PSH Flags", "Fwd URG Flags", "Bwd URG Flags")
SUBFLOWS = ("Subflow Fwd Packets", "Subflow Fwd Bytes", "Subflow Bwd Packets", "Subflow Bwd Bytes")
INIT_WINDOWS = ("Init_Win_bytes_forward", "Init_Win_bytes_backward")
LENGTHS = (
    "Total Length of Fwd Packets", "Total Length of Bwd Packets", "Fwd Packet Length Max", "Fwd Packet Length Min",
    "Fwd Packet Length Mean", "Fwd Packet Length Std", "Bwd Packet Length Max", "Bwd Packet Length Min",
    "Bwd Packet Length Mean", "Bwd Packet Length Std", "Min Packet Length", "Max Packet Length",
    "Packet Length Mean", "Packet Length Std", "Packet Length Variance", "Average Packet Size",
    "Avg Fwd Segment Size", "Avg Bwd Segment Size",
)
HEADERS = ("Fwd Header Length", "Bwd Header Length", "min_seg_size_forward")
ACTIVE_IDLE = ("Active Mean", "Active Std", "Active Max", "Active Min", "Idle Mean", "Idle Std", "Idle Max",
               "Idle Min")
IAT_GROUPS: dict[str, tuple[str, ...]] = {
    "flow": ("Flow IAT Mean", "Flow IAT Std", "Flow IAT Max", "Flow IAT Min"),
    "fwd": ("Fwd IAT Total", "Fwd IAT Mean", "Fwd IAT Std", "Fwd IAT Max", "Fwd IAT Min"),
    "bwd": ("Bwd IAT Total", "Bwd IAT Mean", "Bwd IAT Std", "Bwd IAT Max", "Bwd IAT Min"),
}
TIMES = ("Flow Duration", *IAT_GROUPS["flow"], *IAT_GROUPS["fwd"], *IAT_GROUPS["bwd"])
PACKET_RATES = ("Flow Packets/s", "Fwd Packets/s", "Bwd Packets/s")
TOTALS_DERIVED = (  # what a flow's duration, packets and payload bytes per direction determine
    "Flow Duration", "Total Fwd Packets", "Total Backward Packets", "Total Length of Fwd Packets",
    "Total Length of Bwd Packets", "Flow Bytes/s", "Flow Packets/s", "Fwd Packets/s", "Bwd Packets/s",
    "Fwd Packet Length Mean", "Bwd Packet Length Mean", "Avg Fwd Segment Size", "Avg Bwd Segment Size",
    "Packet Length Mean", "Average Packet Size", "Down/Up Ratio",
)
BYTE_DERIVED = ("Total Length of Fwd Packets", "Total Length of Bwd Packets", "Flow Bytes/s",
                "Fwd Packet Length Mean", "Bwd Packet Length Mean", "Avg Fwd Segment Size", "Avg Bwd Segment Size",
                "Packet Length Mean", "Average Packet Size")


@dataclass(frozen=True)
class Rule:
    """What one extractor's value of one feature means relative to the model's feature."""

    status: Status
    how: str = ""


SAME = Rule("same")


@dataclass(frozen=True)
class ExtractorProfile:
    """One extractor's semantics: a rule per feature (``same`` unless listed) and the conversion that applies
    them to a frame of canonical feature columns in the extractor's own units."""

    name: str
    title: str
    rules: Mapping[str, Rule]
    convert_values: Converter | None = None
    record_based: bool = False  # Zeek / Suricata: records mapped by the client, not CICFlowMeter columns
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def identity(self) -> bool:
        """True for the model's own semantics: nothing to convert, nothing withheld."""
        return self.convert_values is None and not self.unavailable

    def rule(self, feature: str) -> Rule:
        return self.rules.get(feature, SAME)

    @property
    def unavailable(self) -> tuple[str, ...]:
        return tuple(f for f in FEATURE_NAMES if self.rule(f).status == "unavailable")

    def available_mask(self) -> np.ndarray:
        """[N_FEATURES] bool: features this extractor can deliver (training draws these missing patterns)."""
        return np.array([self.rule(f).status != "unavailable" for f in FEATURE_NAMES])

    def convert(self, features: pd.DataFrame) -> pd.DataFrame:
        """Canonical feature frame (schema order, NaN = missing) in the model's semantics."""
        out = features.reindex(columns=list(FEATURE_NAMES)).astype(np.float64)
        if self.convert_values is not None:
            out = self.convert_values(out)
        if self.unavailable:
            out.loc[:, list(self.unavailable)] = np.nan
        return out

    def table(self) -> list[dict[str, str]]:
        """The per-feature description as rows (for docs and ``moe-ids extractors``)."""
        return [{"feature": f, "status": self.rule(f).status, "how": self.rule(f).how} for f in FEATURE_NAMES]


def _rules(*groups: tuple[Iterable[str], Rule]) -> dict[str, Rule]:
    out: dict[str, Rule] = {}
    for names, rule in groups:
        for name in names:
            out[name] = rule
    return out


# --- CICFlowMeter-V3 as in the original CIC-IDS2017 CSVs (and CSE-CIC-IDS2018) --------------------------------

def _v3_values(f: pd.DataFrame) -> pd.DataFrame:
    """-1 ("no packet seen in that direction") becomes CICFlowMeter 4's 0 for the initial windows."""
    for col in INIT_WINDOWS:
        f[col] = f[col].mask(f[col] < 0, 0.0)
    return f


_V3_RULES = _rules(
    (FLAG_COUNTS, Rule("unavailable", "CICFlowMeter-V3 writes 0/1 values here that are not per-packet counts "
                                      "(SYN Flag Count is 0 for every original PortScan flow)")),
    (DIRECTION_FLAGS, Rule("unavailable", "0/1 in V3 (Bwd PSH Flags is always 0); not per-direction counts")),
    (SUBFLOWS, Rule("unavailable", "V3 writes the whole flow's totals; CICFlowMeter 4 divides by the number "
                                   "of >1 s gaps, which V3's columns do not tell")),
    (INIT_WINDOWS, Rule("converted", "-1 (no packet in that direction) becomes 0")),
)
_V3_NOTES = ("Lengths count Ethernet padding of short frames as payload (6 bytes on a bare RST): small, kept.",
             "Flow termination differs from CICFlowMeter 4 (extra short flows after FIN/RST): nothing to convert; "
             "the default model trains on both extractions.")


# --- the cicflowmeter Python package (hieulw/cicflowmeter) -----------------------------------------------------

def _python_values(f: pd.DataFrame) -> pd.DataFrame:
    fwd, bwd = f["Total Fwd Packets"], f["Total Backward Packets"]
    packets = fwd + bwd
    duration, rate = f["Flow Duration"], f["Flow Packets/s"]
    # v0.2 writes times in microseconds, v0.3 and later in seconds; rates are per second in both, so
    # duration x rate / packets is 1e6 for microseconds and 1 for seconds, row by row.
    ratio = duration * rate / packets.where(packets > 0)
    to_us = pd.Series(np.where(ratio > 1e3, 1.0, np.where(ratio > 0, 1e6, np.nan)), index=f.index)
    to_us = to_us.mask((duration == 0) | (packets <= 1), 1.0)  # zero-duration flows: every time is 0 either way
    for col in TIMES:
        f[col] = f[col] * to_us
    # its statistics of one value are 0 where CICFlowMeter gives the value; the flow's one gap is its duration
    two = packets == 2
    for col in ("Flow IAT Mean", "Flow IAT Max", "Flow IAT Min"):
        f[col] = f[col].mask(two, f["Flow Duration"])
    f.loc[two, "Flow IAT Std"] = 0.0
    for group, count in (("fwd", fwd), ("bwd", bwd)):
        cols = list(IAT_GROUPS[group])
        f.loc[count == 2, cols] = np.nan  # its one gap in that direction is not written anywhere
    # population standard deviations -> CICFlowMeter's sample deviations, n = number of gaps
    for col, gaps in (("Flow IAT Std", packets - 1), ("Fwd IAT Std", fwd - 1), ("Bwd IAT Std", bwd - 1)):
        factor = np.sqrt(gaps / (gaps - 1)).where(gaps >= 2, 1.0)
        f[col] = f[col] * factor
    for col in PACKET_RATES:  # 0 for a zero-duration flow, where CICFlowMeter's rate is undefined
        f[col] = f[col].mask(duration == 0)
    return f


_PYTHON_RULES = _rules(
    (TIMES, Rule("converted", "to microseconds (v0.2 writes microseconds, v0.3+ seconds: told per row from "
                              "duration x packet rate / packets)")),
    (IAT_GROUPS["flow"], Rule("converted", "units; the package's 0 for a single gap becomes the gap (= duration);"
                                           " population std x sqrt(n/(n-1))")),
    (IAT_GROUPS["fwd"] + IAT_GROUPS["bwd"], Rule("converted", "units; population std x sqrt(n/(n-1)); missing "
                                                              "where the direction has exactly 2 packets")),
    (PACKET_RATES, Rule("converted", "missing for zero-duration flows (the package writes 0)")),
    (LENGTHS, Rule("unavailable", "whole frame lengths (Ethernet, IP and TCP headers included), not payload; "
                                  "a bare SYN is 58 bytes where CICFlowMeter has 0")),
    (("Flow Bytes/s",), Rule("unavailable", "frame bytes per second, not payload")),
    (HEADERS, Rule("unavailable", "IP header length for TCP (CICFlowMeter: TCP header length)")),
    (SUBFLOWS, Rule("unavailable", "copies of the flow totals (and frame bytes)")),
    (("CWE Flag Count",), Rule("unavailable", "a copy of fwd_urg_flags in the package")),
    (ACTIVE_IDLE, Rule("unavailable", "computed from time differences passed as timestamps: not activity periods")),
    (("act_data_pkt_fwd",), Rule("unavailable", "scapy counts the Ethernet padding of short frames as payload, so "
                                                "a bare RST counts as a data packet")),
)


# --- Zeek conn.log and Suricata flow events (records; mapped by moe_ids.client) --------------------------------

def _record_rules(available: dict[str, str], reason: str) -> dict[str, Rule]:
    rules = {f: Rule("unavailable", reason) for f in FEATURE_NAMES if f not in available}
    rules.update({f: Rule("converted", how) for f, how in available.items()})
    return rules


_ZEEK_AVAILABLE = {
    "Flow Duration": "duration (s) x 1e6; unset (-) is 0 when the packet counts are logged: Zeek writes duration "
                     "only when it is > 0", "Total Fwd Packets": "orig_pkts", "Total Backward Packets": "resp_pkts",
    "Total Length of Fwd Packets": "orig_bytes (payload)", "Total Length of Bwd Packets": "resp_bytes (payload)",
    "Flow Bytes/s": "(orig_bytes + resp_bytes) / duration", "Flow Packets/s": "packets / duration",
    "Fwd Packets/s": "orig_pkts / duration", "Bwd Packets/s": "resp_pkts / duration",
    "Fwd Packet Length Mean": "orig_bytes / orig_pkts", "Bwd Packet Length Mean": "resp_bytes / resp_pkts",
    "Avg Fwd Segment Size": "orig_bytes / orig_pkts", "Avg Bwd Segment Size": "resp_bytes / resp_pkts",
    "Packet Length Mean": "bytes / packets", "Average Packet Size": "bytes / packets",
    "Down/Up Ratio": "resp_pkts / orig_pkts",
}
_SURICATA_AVAILABLE = {
    "Flow Duration": "flow.end - flow.start (µs; flow.age in whole seconds as a fallback)",
    "Total Fwd Packets": "flow.pkts_toserver", "Total Backward Packets": "flow.pkts_toclient",
    "Flow Packets/s": "packets / duration", "Fwd Packets/s": "pkts_toserver / duration",
    "Bwd Packets/s": "pkts_toclient / duration", "Down/Up Ratio": "pkts_toclient / pkts_toserver",
}
_SURICATA_RULES = _record_rules(_SURICATA_AVAILABLE, "not in a flow event (per-packet detail)")
_SURICATA_RULES.update({f: Rule("unavailable", "Suricata's bytes_toserver/toclient count whole packets, headers "
                                               "included, not payload") for f in BYTE_DERIVED})


_PCAP_RULES = _rules(
    ((*SUBFLOWS, *ACTIVE_IDLE), Rule("unavailable", "not among NFStream's statistics")),
    ((*HEADERS, *INIT_WINDOWS, "act_data_pkt_fwd"),
     Rule("converted", "read from each packet's TCP/UDP header by moe_ids.client.pcap_flows.TcpHeaderFields, as "
                       "CICFlowMeter's BasicFlow does (backward window: the last backward packet's); missing for "
                       "other protocols")),
    ((*TIMES,), Rule("converted", "NFStream's milliseconds x 1000; missing where the span is under 1 ms (written 0)")),
    (("Flow Bytes/s", *PACKET_RATES), Rule("converted", "totals / the millisecond duration; missing under 1 ms")),
    (("Packet Length Variance",), Rule("converted", "bidirectional_stddev_ps squared")),
    (("Average Packet Size", "Down/Up Ratio"), Rule("converted", "payload bytes / packets; dst2src / src2dst "
                                                                 "packets")),
)


PROFILES: dict[str, ExtractorProfile] = {p.name: p for p in (
    ExtractorProfile("cicflowmeter", "CICFlowMeter 4 / the corrected CIC-IDS2017 release (Engelen et al. 2021): "
                                     "the model's own semantics", {}),
    ExtractorProfile("cicids2017-original", "CICFlowMeter-V3 as in the original CIC-IDS2017 MachineLearningCVE / "
                                            "TrafficLabelling CSVs", _V3_RULES, _v3_values, notes=_V3_NOTES),
    ExtractorProfile("cicflowmeter-v3", "CICFlowMeter-V3 with CSE-CIC-IDS2018's abbreviated column names "
                                        "(Tot Fwd Pkts, Init Fwd Win Byts, ...)", _V3_RULES, _v3_values,
                     notes=_V3_NOTES),
    ExtractorProfile("cicflowmeter-python", "the `cicflowmeter` Python package (snake_case columns, any version)",
                     _PYTHON_RULES, _python_values,
                     notes=("Flows are keyed and timed out differently from CICFlowMeter: a lone reply can be a "
                            "flow of its own.",
                            "Its windows mean CICFlowMeter's: the first forward window (the first non-zero one, which "
                            "differs only for a flow opened by a zero-window packet) and the last backward one.")),
    ExtractorProfile("zeek", "Zeek conn.log records (moe_ids.client.from_zeek_conn)",
                     _record_rules(_ZEEK_AVAILABLE, "not in conn.log (per-packet detail)"), record_based=True),
    ExtractorProfile("suricata", "Suricata eve.json flow events (moe_ids.client.from_suricata_flow)",
                     _SURICATA_RULES, record_based=True),
    ExtractorProfile("pcap", "packet captures (pcap, pcapng) turned into flows by NFStream 6.5 with payload "
                             "accounting (moe_ids.client.pcap_flows; the `pcap` extra)", _PCAP_RULES, record_based=True,
                     notes=("Packet counts, payload totals, payload-length statistics (sample std, as CICFlowMeter) "
                            "and per-packet TCP flag counts mean what CICFlowMeter's do.",
                            "Flows expire after 120 s idle or active, CICFlowMeter's flow timeout.")),
)}
EXTRACTOR_NAMES: tuple[str, ...] = tuple(PROFILES)
COLUMN_EXTRACTORS: tuple[str, ...] = tuple(name for name, p in PROFILES.items() if not p.record_based)
RECORD_EXTRACTORS: tuple[str, ...] = tuple(name for name, p in PROFILES.items() if p.record_based)
AUTO = "auto"
DEFAULT_PROFILE = "cicflowmeter"

# raw spellings that only one extractor writes (compared case- and space-sensitively)
_V3_2018_SIGNATURE = {"Tot Fwd Pkts", "TotLen Fwd Pkts", "Flow Byts/s", "Init Fwd Win Byts", "Fwd Pkt Len Max"}
_PYTHON_SIGNATURE = {"tot_fwd_pkts", "totlen_fwd_pkts", "flow_byts_s", "init_fwd_win_byts", "fwd_pkt_len_max"}
_CORRECTED_SIGNATURE = {"total_fwd_packet", "fwd_init_win_bytes", "attempted_category", "fwd_rst_flags",
                        "total_tcp_flow_time"}


def markdown(profile: ExtractorProfile) -> str:
    """The profile as a Markdown section: its title, then the features that are not ``same``, grouped."""
    lines = [f"## `{profile.name}`", "", profile.title + ".", ""]
    rows = [r for r in profile.table() if r["status"] != "same"]
    same = len(FEATURE_NAMES) - len(rows)
    lines.append(f"{same} of {len(FEATURE_NAMES)} features have the same meaning"
                 + (", all of them." if not rows else "; the others:"))
    if rows:
        lines += ["", "| feature | status | how / why |", "|---|---|---|"]
        lines += [f"| {r['feature']} | {r['status']} | {r['how']} |" for r in rows]
    if profile.notes:
        lines += ["", *[f"- {note}" for note in profile.notes]]
    return "\n".join(lines) + "\n"


DOC_HEADER = """# Extractor profiles

Generated from `moe_ids.data.extractors` (`moe-ids extractors --markdown`); a test keeps this file equal to the code.
The model's features mean what CICFlowMeter 4 / the corrected CIC-IDS2017 release compute. For every other
extractor each feature is **same** (sent as is), **converted** (the loader, `moe-ids score` and the SDK convert
it) or **unavailable** (sent as missing, NaN: the server imputes it and flags it in the mask). The profile is
detected from the column spelling (`Tot Fwd Pkts` is CSE-CIC-IDS2018, `tot_fwd_pkts` the Python package,
`Fwd Header Length` twice the original CIC-IDS2017 CSVs) or named with `--extractor` / `extractor=`.
"""


def docs_markdown(profiles: Iterable[ExtractorProfile] | None = None) -> str:
    """docs/extractors.md: the header and every profile's section."""
    chosen = list(PROFILES.values()) if profiles is None else list(profiles)
    return DOC_HEADER + "".join("\n" + markdown(p) for p in chosen)


def get_profile(name: str) -> ExtractorProfile:
    """The profile called ``name``; a clear error listing the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"extractor: unknown extractor {name!r}; expected one of "
                         f"{', '.join((AUTO, *EXTRACTOR_NAMES))}") from None


def detect(columns: Iterable[object]) -> str:
    """The extractor whose column spelling this header uses; ``cicflowmeter`` (the model's semantics) when no
    extractor-specific spelling is present, e.g. canonical names typed by hand."""
    raw = {str(c).strip() for c in columns}
    norm = {normalize_name(c) for c in raw}
    if raw & _V3_2018_SIGNATURE:
        return "cicflowmeter-v3"
    if raw & _PYTHON_SIGNATURE:
        return "cicflowmeter-python"
    if norm & _CORRECTED_SIGNATURE:
        return "cicflowmeter"
    # the publisher's original CSVs: Fwd Header Length written twice (pandas reads the second as .1), and the
    # V3 bulk columns beside the original window names (a hand-made dict of canonical names has neither)
    if "fwd_header_length_1" in norm or {"init_win_bytes_forward", "fwd_avg_bytes_bulk"} <= norm:
        return "cicids2017-original"
    return DEFAULT_PROFILE


def detection_note(columns: Iterable[object]) -> str | None:
    """What to tell a user whose table ``detect`` read in the model's semantics only for want of a mark: the
    original CIC-IDS2017 spelling (the model's canonical names, ``Init_Win_bytes_forward``) without the duplicated
    ``Fwd Header Length`` or the V3 bulk columns. A cleaned re-publication of the original CSVs drops exactly
    those, and then its CICFlowMeter-V3 flag columns (0/1, not counts) would be read as counts; a table written
    in the model's own semantics by hand looks the same, so it is said, not guessed."""
    norm = {normalize_name(str(c).strip()) for c in columns}
    if detect(columns) != DEFAULT_PROFILE or norm & _CORRECTED_SIGNATURE or "init_win_bytes_forward" not in norm:
        return None
    return ("the columns use the original CIC-IDS2017 names without the original files' marks (the duplicated Fwd "
            "Header Length, the bulk columns), so they were read in the model's own semantics (CICFlowMeter 4); if "
            "the file comes from the original CIC-IDS2017 / CIC-DDoS2019 CSVs, pass --extractor cicids2017-original")


def resolve(name: str | None, columns: Iterable[object]) -> ExtractorProfile:
    """The named profile, or the detected one for ``None`` / ``auto``; record-based profiles need records."""
    chosen = detect(columns) if name in (None, AUTO) else name
    profile = get_profile(chosen)
    if profile.record_based:
        readers = {"zeek": "from_zeek_conn", "suricata": "from_suricata_flow", "pcap": "pcap_flows.read_pcap"}
        raise ValueError(f"extractor {profile.name!r} describes records, not flow columns: map them with "
                         f"moe_ids.client.{readers.get(profile.name, profile.name)}")
    return profile
