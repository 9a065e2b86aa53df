"""Suricata ``eve.json`` flow events (``event_type: flow``) to model features.

The ``flow`` object gives start/end times and packets/bytes per direction (``toserver`` is CICFlowMeter's
forward direction). Suricata counts whole packets (headers included) where CICFlowMeter counts payload, so
the byte-derived features would mean something else and are sent as missing (the ``suricata`` profile of
``moe_ids.data.extractors``); packet counts, duration and packet rates are exact. Per-packet statistics and flag
counts are not in a flow event and stay missing (NaN).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .flow_math import FlowTotals, totals_to_features


def from_suricata_flow(event: Mapping[str, Any]) -> dict[str, float]:
    """Features of one eve.json flow event; every model feature by canonical name, NaN where unknown."""
    event_type = event.get("event_type", "flow")
    if event_type != "flow":
        raise ValueError(f"suricata eve.json: expected event_type 'flow', got {event_type!r}")
    flow = event.get("flow")
    if not isinstance(flow, Mapping):
        raise ValueError("suricata eve.json: flow event without a 'flow' object")
    return totals_to_features(FlowTotals(
        duration_us=_duration_us(flow),
        fwd_packets=_number(flow.get("pkts_toserver")),
        bwd_packets=_number(flow.get("pkts_toclient")),
        fwd_bytes=_number(flow.get("bytes_toserver")),
        bwd_bytes=_number(flow.get("bytes_toclient")),
    ), "suricata")


def _duration_us(flow: Mapping[str, Any]) -> float | None:
    start, end = _timestamp(flow.get("start")), _timestamp(flow.get("end"))
    if start is not None and end is not None:
        return max(0.0, (end - start).total_seconds() * 1e6)
    age = _number(flow.get("age"))  # whole seconds: a coarse fallback
    return age * 1e6 if age is not None else None


def _timestamp(value: Any) -> datetime | None:
    """Suricata writes '2017-07-07T03:30:00.123456+0000'; Python < 3.11 wants the offset with a colon."""
    if not value:
        return None
    text = str(value).strip()
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"suricata eve.json: unreadable timestamp {value!r}") from None


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"suricata eve.json: expected a number, got {value!r}") from None
