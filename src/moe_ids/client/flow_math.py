"""CICFlowMeter features that follow from a flow's totals alone (duration, packets and bytes per direction).

Shared by the Zeek and Suricata mappings. Definitions follow CICFlowMeter: durations in microseconds, rates
per second, lengths are payload bytes, ``Down/Up Ratio`` = backward / forward packets. A value that cannot be
computed (unknown input, zero packets for a mean, zero duration for a rate — CICFlowMeter writes Infinity
there) is NaN, i.e. missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from moe_ids.core.schema import FEATURE_NAMES
from moe_ids.data.extractors import get_profile


@dataclass(frozen=True)
class FlowTotals:
    duration_us: float | None
    fwd_packets: float | None
    bwd_packets: float | None
    fwd_bytes: float | None
    bwd_bytes: float | None


def _ratio(num: float | None, den: float | None, scale: float = 1.0) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num * scale / den


def _sum(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def totals_to_features(t: FlowTotals, profile: str) -> dict[str, float]:
    """Every feature by canonical name; the ones the totals determine and the extractor's profile
    (``moe_ids.data.extractors``) does not mark unavailable are filled, the rest NaN."""
    packets = _sum(t.fwd_packets, t.bwd_packets)
    payload = _sum(t.fwd_bytes, t.bwd_bytes)
    values: dict[str, float | None] = {
        "Flow Duration": t.duration_us,
        "Total Fwd Packets": t.fwd_packets,
        "Total Backward Packets": t.bwd_packets,
        "Total Length of Fwd Packets": t.fwd_bytes,
        "Total Length of Bwd Packets": t.bwd_bytes,
        "Flow Bytes/s": _ratio(payload, t.duration_us, 1e6),
        "Flow Packets/s": _ratio(packets, t.duration_us, 1e6),
        "Fwd Packets/s": _ratio(t.fwd_packets, t.duration_us, 1e6),
        "Bwd Packets/s": _ratio(t.bwd_packets, t.duration_us, 1e6),
        "Fwd Packet Length Mean": _ratio(t.fwd_bytes, t.fwd_packets),
        "Bwd Packet Length Mean": _ratio(t.bwd_bytes, t.bwd_packets),
        "Avg Fwd Segment Size": _ratio(t.fwd_bytes, t.fwd_packets),
        "Avg Bwd Segment Size": _ratio(t.bwd_bytes, t.bwd_packets),
        "Packet Length Mean": _ratio(payload, packets),
        "Average Packet Size": _ratio(payload, packets),
        "Down/Up Ratio": _ratio(t.bwd_packets, t.fwd_packets),
    }
    unavailable = set(get_profile(profile).unavailable)
    return {name: math.nan if name in unavailable else _finite(values.get(name)) for name in FEATURE_NAMES}


def _finite(value: float | None) -> float:
    if value is None or not math.isfinite(value):
        return math.nan
    return float(value)
