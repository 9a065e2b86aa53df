"""The model's input features: the single definition used by training, export, serving and the client.

Canonical names are those of the original CIC-IDS2017 MachineLearningCVE CSVs (leading spaces stripped).
Every feature belongs to one expert group: ``temporal`` for timing (durations, inter-arrival times, rates,
active/idle periods) and ``tabular`` for everything else (sizes, counts, flags, windows).

The original files hold 78 numeric columns. Eight of them are not model features:

* ``Destination Port`` — an identifier of the service, not of behaviour; a model that keys on it learns the
  lab's port plan (SSH-Patator is "port 22") and fails on any other network.
* ``Fwd Header Length.1`` — the publisher's CSVs write ``Fwd Header Length`` twice with identical values.
* ``Fwd Avg Bytes/Bulk``, ``Fwd Avg Packets/Bulk``, ``Fwd Avg Bulk Rate``, ``Bwd Avg Bytes/Bulk``,
  ``Bwd Avg Packets/Bulk``, ``Bwd Avg Bulk Rate`` — constant zero in every original CIC-IDS2017 file (a
  CICFlowMeter bug), so they carry no information for a model trained on it.

Identifier columns (``Flow ID``, IPs, ports, ``Timestamp``, ``id``, ``Protocol``) are never features.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Group = Literal["tabular", "temporal"]


@dataclass(frozen=True)
class Feature:
    """One model input: its canonical name, expert group and the names other extractors give it."""

    name: str
    group: Group
    corrected: str  # name in the corrected re-extraction (Engelen et al. 2021) / newer CICFlowMeter
    snake: str  # name in the `cicflowmeter` Python package


# (canonical original name, group, corrected-release name, cicflowmeter snake_case name)
_FEATURE_TABLE: tuple[tuple[str, Group, str, str], ...] = (
    ("Flow Duration", "temporal", "Flow Duration", "flow_duration"),
    ("Total Fwd Packets", "tabular", "Total Fwd Packet", "tot_fwd_pkts"),
    ("Total Backward Packets", "tabular", "Total Bwd packets", "tot_bwd_pkts"),
    ("Total Length of Fwd Packets", "tabular", "Total Length of Fwd Packet", "totlen_fwd_pkts"),
    ("Total Length of Bwd Packets", "tabular", "Total Length of Bwd Packet", "totlen_bwd_pkts"),
    ("Fwd Packet Length Max", "tabular", "Fwd Packet Length Max", "fwd_pkt_len_max"),
    ("Fwd Packet Length Min", "tabular", "Fwd Packet Length Min", "fwd_pkt_len_min"),
    ("Fwd Packet Length Mean", "tabular", "Fwd Packet Length Mean", "fwd_pkt_len_mean"),
    ("Fwd Packet Length Std", "tabular", "Fwd Packet Length Std", "fwd_pkt_len_std"),
    ("Bwd Packet Length Max", "tabular", "Bwd Packet Length Max", "bwd_pkt_len_max"),
    ("Bwd Packet Length Min", "tabular", "Bwd Packet Length Min", "bwd_pkt_len_min"),
    ("Bwd Packet Length Mean", "tabular", "Bwd Packet Length Mean", "bwd_pkt_len_mean"),
    ("Bwd Packet Length Std", "tabular", "Bwd Packet Length Std", "bwd_pkt_len_std"),
    ("Flow Bytes/s", "temporal", "Flow Bytes/s", "flow_byts_s"),
    ("Flow Packets/s", "temporal", "Flow Packets/s", "flow_pkts_s"),
    ("Flow IAT Mean", "temporal", "Flow IAT Mean", "flow_iat_mean"),
    ("Flow IAT Std", "temporal", "Flow IAT Std", "flow_iat_std"),
    ("Flow IAT Max", "temporal", "Flow IAT Max", "flow_iat_max"),
    ("Flow IAT Min", "temporal", "Flow IAT Min", "flow_iat_min"),
    ("Fwd IAT Total", "temporal", "Fwd IAT Total", "fwd_iat_tot"),
    ("Fwd IAT Mean", "temporal", "Fwd IAT Mean", "fwd_iat_mean"),
    ("Fwd IAT Std", "temporal", "Fwd IAT Std", "fwd_iat_std"),
    ("Fwd IAT Max", "temporal", "Fwd IAT Max", "fwd_iat_max"),
    ("Fwd IAT Min", "temporal", "Fwd IAT Min", "fwd_iat_min"),
    ("Bwd IAT Total", "temporal", "Bwd IAT Total", "bwd_iat_tot"),
    ("Bwd IAT Mean", "temporal", "Bwd IAT Mean", "bwd_iat_mean"),
    ("Bwd IAT Std", "temporal", "Bwd IAT Std", "bwd_iat_std"),
    ("Bwd IAT Max", "temporal", "Bwd IAT Max", "bwd_iat_max"),
    ("Bwd IAT Min", "temporal", "Bwd IAT Min", "bwd_iat_min"),
    ("Fwd PSH Flags", "tabular", "Fwd PSH Flags", "fwd_psh_flags"),
    ("Bwd PSH Flags", "tabular", "Bwd PSH Flags", "bwd_psh_flags"),
    ("Fwd URG Flags", "tabular", "Fwd URG Flags", "fwd_urg_flags"),
    ("Bwd URG Flags", "tabular", "Bwd URG Flags", "bwd_urg_flags"),
    ("Fwd Header Length", "tabular", "Fwd Header Length", "fwd_header_len"),
    ("Bwd Header Length", "tabular", "Bwd Header Length", "bwd_header_len"),
    ("Fwd Packets/s", "temporal", "Fwd Packets/s", "fwd_pkts_s"),
    ("Bwd Packets/s", "temporal", "Bwd Packets/s", "bwd_pkts_s"),
    ("Min Packet Length", "tabular", "Packet Length Min", "pkt_len_min"),
    ("Max Packet Length", "tabular", "Packet Length Max", "pkt_len_max"),
    ("Packet Length Mean", "tabular", "Packet Length Mean", "pkt_len_mean"),
    ("Packet Length Std", "tabular", "Packet Length Std", "pkt_len_std"),
    ("Packet Length Variance", "tabular", "Packet Length Variance", "pkt_len_var"),
    ("FIN Flag Count", "tabular", "FIN Flag Count", "fin_flag_cnt"),
    ("SYN Flag Count", "tabular", "SYN Flag Count", "syn_flag_cnt"),
    ("RST Flag Count", "tabular", "RST Flag Count", "rst_flag_cnt"),
    ("PSH Flag Count", "tabular", "PSH Flag Count", "psh_flag_cnt"),
    ("ACK Flag Count", "tabular", "ACK Flag Count", "ack_flag_cnt"),
    ("URG Flag Count", "tabular", "URG Flag Count", "urg_flag_cnt"),
    ("CWE Flag Count", "tabular", "CWR Flag Count", "cwr_flag_count"),
    ("ECE Flag Count", "tabular", "ECE Flag Count", "ece_flag_cnt"),
    ("Down/Up Ratio", "tabular", "Down/Up Ratio", "down_up_ratio"),
    ("Average Packet Size", "tabular", "Average Packet Size", "pkt_size_avg"),
    ("Avg Fwd Segment Size", "tabular", "Fwd Segment Size Avg", "fwd_seg_size_avg"),
    ("Avg Bwd Segment Size", "tabular", "Bwd Segment Size Avg", "bwd_seg_size_avg"),
    ("Subflow Fwd Packets", "tabular", "Subflow Fwd Packets", "subflow_fwd_pkts"),
    ("Subflow Fwd Bytes", "tabular", "Subflow Fwd Bytes", "subflow_fwd_byts"),
    ("Subflow Bwd Packets", "tabular", "Subflow Bwd Packets", "subflow_bwd_pkts"),
    ("Subflow Bwd Bytes", "tabular", "Subflow Bwd Bytes", "subflow_bwd_byts"),
    ("Init_Win_bytes_forward", "tabular", "FWD Init Win Bytes", "init_fwd_win_byts"),
    ("Init_Win_bytes_backward", "tabular", "Bwd Init Win Bytes", "init_bwd_win_byts"),
    ("act_data_pkt_fwd", "tabular", "Fwd Act Data Pkts", "fwd_act_data_pkts"),
    ("min_seg_size_forward", "tabular", "Fwd Seg Size Min", "fwd_seg_size_min"),
    ("Active Mean", "temporal", "Active Mean", "active_mean"),
    ("Active Std", "temporal", "Active Std", "active_std"),
    ("Active Max", "temporal", "Active Max", "active_max"),
    ("Active Min", "temporal", "Active Min", "active_min"),
    ("Idle Mean", "temporal", "Idle Mean", "idle_mean"),
    ("Idle Std", "temporal", "Idle Std", "idle_std"),
    ("Idle Max", "temporal", "Idle Max", "idle_max"),
    ("Idle Min", "temporal", "Idle Min", "idle_min"),
)

FEATURES: tuple[Feature, ...] = tuple(Feature(*row) for row in _FEATURE_TABLE)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
N_FEATURES: int = len(FEATURES)
TABULAR_INDICES: tuple[int, ...] = tuple(i for i, f in enumerate(FEATURES) if f.group == "tabular")
TEMPORAL_INDICES: tuple[int, ...] = tuple(i for i, f in enumerate(FEATURES) if f.group == "temporal")
GROUP_NAMES: tuple[Group, ...] = ("tabular", "temporal")
# What a host's TCP stack chooses (initial windows; the minimum forward header, i.e. its TCP options): they describe
# the machines of the network the flows come from. The CIC lab's have their own (nmap's 1024, Kali's 29200), and
# the model trained there leans on them; on another network's flows, the real values of its hosts (a SYN flood's
# 512, a target answering with 64240) steer verdicts to Normal. The trust score's host view asks whether a verdict
# rests on them (``moe_ids.model.network``); ``withhold`` (SDK; ``--withhold-host-features`` of score, stream and
# evaluate) sends them as missing for such flows (figures in the README).
HOST_TCP_FEATURES: tuple[str, ...] = ("Init_Win_bytes_forward", "Init_Win_bytes_backward", "min_seg_size_forward")
EXPERT_LABELS: tuple[str, ...] = ("Tabular Expert", "Temporal Expert")
# How extractors write a non-finite value in text (CICFlowMeter's rates of zero-duration flows): read as missing,
# never as a number. CSV readers pass these to pandas' na_values; record encoders compare lower-cased text.
INFINITY_SPELLINGS: tuple[str, ...] = ("Infinity", "-Infinity", "+Infinity", "inf", "-inf", "+inf")
INFINITY_WORDS: frozenset[str] = frozenset(word.lower() for word in INFINITY_SPELLINGS)

# Numeric columns of the original files that are deliberately not features, with the reason.
DROPPED_COLUMNS: dict[str, str] = {
    "Destination Port": "identifier (service port), not flow behaviour",
    "Fwd Header Length.1": "duplicate of Fwd Header Length in the publisher's CSVs",
    "Fwd Avg Bytes/Bulk": "constant zero in the original CIC-IDS2017 extraction",
    "Fwd Avg Packets/Bulk": "constant zero in the original CIC-IDS2017 extraction",
    "Fwd Avg Bulk Rate": "constant zero in the original CIC-IDS2017 extraction",
    "Bwd Avg Bytes/Bulk": "constant zero in the original CIC-IDS2017 extraction",
    "Bwd Avg Packets/Bulk": "constant zero in the original CIC-IDS2017 extraction",
    "Bwd Avg Bulk Rate": "constant zero in the original CIC-IDS2017 extraction",
}

# Columns that identify a flow or a record; never model inputs, in any naming.
IDENTIFIER_COLUMNS: frozenset[str] = frozenset(
    {"id", "flow_id", "src_ip", "source_ip", "src_port", "source_port", "dst_ip", "destination_ip",
     "dst_port", "destination_port", "protocol", "timestamp", "attempted_category"}
)


def normalize_name(name: str) -> str:
    """Reduce a column name to a comparison key so 'Flow Bytes/s', ' flow_bytes_s' and 'FLOW-BYTES/S' meet."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def _build_alias_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for f in FEATURES:
        for alias in (f.name, f.corrected, f.snake):
            index.setdefault(normalize_name(alias), f.name)
    # Further spellings seen in CICFlowMeter releases and derived datasets.
    extra = {
        "Total Fwd Packets": ["tot_fwd_pkts", "total_fwd_packets", "fwd_packets"],
        "Total Backward Packets": ["total_bwd_packets", "tot_bwd_pkts", "bwd_packets"],
        "Total Length of Fwd Packets": ["total_length_of_fwd_packets", "fwd_bytes", "totlen_fwd_pkts"],
        "Total Length of Bwd Packets": ["total_length_of_bwd_packets", "bwd_bytes", "totlen_bwd_pkts"],
        "CWE Flag Count": ["cwe_flag_count", "cwr_flag_cnt", "cwe_flag_cnt"],
        "Fwd Header Length": ["fwd_header_length", "fwd_hdr_len"],
        "Bwd Header Length": ["bwd_header_length", "bwd_hdr_len"],
        "Init_Win_bytes_forward": ["init_win_bytes_forward", "fwd_init_win_bytes", "init_fwd_win_bytes"],
        "Init_Win_bytes_backward": ["init_win_bytes_backward", "bwd_init_win_bytes", "init_bwd_win_bytes"],
        "act_data_pkt_fwd": ["act_data_pkt_fwd", "fwd_act_data_pkts"],
        "min_seg_size_forward": ["min_seg_size_forward", "fwd_seg_size_min"],
        "Avg Fwd Segment Size": ["avg_fwd_segment_size", "fwd_seg_size_avg"],
        "Avg Bwd Segment Size": ["avg_bwd_segment_size", "bwd_seg_size_avg"],
        "Min Packet Length": ["min_packet_length", "packet_length_min"],
        "Max Packet Length": ["max_packet_length", "packet_length_max"],
        "Flow Bytes/s": ["flow_bytes_s", "flow_byts_s"],
        "Flow Packets/s": ["flow_packets_s", "flow_pkts_s"],
    }
    for canonical, aliases in extra.items():
        for alias in aliases:
            index.setdefault(normalize_name(alias), canonical)
    return index


_ALIASES: dict[str, str] = _build_alias_index()


def canonical_name(name: str) -> str | None:
    """The canonical feature name for any known spelling, or None for a column that is not a feature."""
    return _ALIASES.get(normalize_name(name))


def alias_index() -> dict[str, str]:
    """A copy of the normalised-alias → canonical-name map (for clients that ship it elsewhere)."""
    return dict(_ALIASES)


def resolve_columns(columns: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """Map input columns to canonical features; return the mapping and the columns that matched nothing.

    When two input columns map to the same feature (the original files' duplicated ``Fwd Header Length``
    arrives as ``Fwd Header Length.1`` from pandas), the first one wins and the rest count as unmatched.
    """
    mapping: dict[str, str] = {}
    seen: set[str] = set()
    unknown: list[str] = []
    for col in columns:
        canonical = canonical_name(col)
        if canonical is None or canonical in seen:
            unknown.append(col)
            continue
        mapping[col] = canonical
        seen.add(canonical)
    return mapping, unknown


def schema_dict() -> dict:
    """The schema as plain data, written next to the model so every consumer reads the same list."""
    return {
        "features": [
            {"index": i, "name": f.name, "group": f.group, "corrected": f.corrected, "snake": f.snake}
            for i, f in enumerate(FEATURES)
        ],
        "groups": {g: [FEATURES[i].name for i in range(N_FEATURES) if FEATURES[i].group == g]
                   for g in GROUP_NAMES},
        "experts": list(EXPERT_LABELS),
        "dropped": DROPPED_COLUMNS,
    }
