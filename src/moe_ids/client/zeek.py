"""Zeek ``conn.log`` records to model features.

A conn.log record summarises a connection: duration, packets and payload bytes per direction. From those the
CICFlowMeter totals, rates and means follow exactly; everything that needs per-packet detail (lengths'
min/max/std, inter-arrival times, flag counts, header lengths, windows, active/idle periods) is not in
conn.log and stays missing (NaN), which the server imputes and flags.

Zeek's ``orig`` is the connection's originator, which is CICFlowMeter's forward direction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .flow_math import FlowTotals, totals_to_features


def from_zeek_conn(record: Mapping[str, Any]) -> dict[str, float]:
    """Features of one conn.log record (JSON logs or a parsed TSV row; '-' and absent fields = unknown).

    Returns every model feature by canonical name, NaN where conn.log cannot tell it.
    """
    duration_s = _number(record.get("duration"))
    fwd_packets = _number(record.get("orig_pkts"))
    if duration_s is None and fwd_packets is not None:
        # Zeek's set_conn (base/protocols/conn/main.zeek) logs duration, orig_bytes and resp_bytes only when the
        # connection lasted > 0 s; the packet counts always (conn-size analyzer). Unset beside them is a
        # connection of zero duration (a lone packet, or all at one timestamp); the byte counts stay unknown.
        duration_s = 0.0
    return totals_to_features(FlowTotals(
        duration_us=duration_s * 1e6 if duration_s is not None else None,
        fwd_packets=fwd_packets,
        bwd_packets=_number(record.get("resp_pkts")),
        fwd_bytes=_number(record.get("orig_bytes")),
        bwd_bytes=_number(record.get("resp_bytes")),
    ), "zeek")


def _number(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() in ("", "-", "(empty)")):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"zeek conn.log: expected a number, got {value!r}") from None
