"""Any flow file a user has, read in chunks of (identifier columns, features in the model's semantics, labels).

A CIC-IDS2017-style CSV or Parquet file of any supported extractor (converted by its profile), a Zeek
``conn.log``, a Suricata ``eve.json`` (mapped record by record as the SDK does) or a pcap/pcapng capture (turned
into flows by NFStream). ``moe-ids score`` and ``moe-ids stream publish`` read files through here, so a file
scored in bulk and the same file sent through the stream reach the model as the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from moe_ids.core.schema import IDENTIFIER_COLUMNS, normalize_name
from moe_ids.data import extractors
from moe_ids.data.extractors import AUTO, RECORD_EXTRACTORS

CARRIED = {"label"}  # besides moe_ids.core.schema.IDENTIFIER_COLUMNS

Chunk = tuple[pd.DataFrame, pd.DataFrame, "pd.Series | None"]


def file_kind(path: Path, extractor: str | None = AUTO) -> str | None:
    """The record-based kind (``pcap``, ``zeek``, ``suricata``) of the file, or None for a flow CSV."""
    from .pcap_flows import is_capture
    from .sensor_logs import sniff

    extractor = extractor or AUTO
    if extractor in RECORD_EXTRACTORS:
        return extractor
    if extractor == AUTO:
        return "pcap" if is_capture(path) else sniff(path)
    return None


def read_flow_file(path: Path, extractor: str | None = AUTO, chunk_rows: int = 16384,
                   counts: dict[str, Any] | None = None) -> Iterator[Chunk]:
    """The file's chunks; ``counts`` receives ``extractor`` (and ``extractor_note`` where its detection needs a
    word), ``skipped_events`` (non-flow sensor events) and ``skipped_header_rows`` (a CSV's repeated header
    lines)."""
    counts = counts if counts is not None else {}
    kind = file_kind(path, extractor)
    if kind is not None:
        yield from _sensor_chunks(path, kind, chunk_rows, counts)
    else:
        yield from _csv_chunks(path, extractor, chunk_rows, counts)


def _csv_chunks(path: Path, extractor: str | None, chunk_rows: int, counts: dict[str, Any]) -> Iterator[Chunk]:
    from moe_ids.data.loading import frame_to_features, repeated_header_rows
    from moe_ids.data.tables import read_chunks, read_header

    header = read_header(path)
    profile = extractors.resolve(extractor, header)
    counts["extractor"] = profile.name
    if extractor in (None, AUTO) and (note := extractors.detection_note(header)):
        counts["extractor_note"] = note
    carried = [c for c in header if normalize_name(c) in IDENTIFIER_COLUMNS | CARRIED]
    label_col = next((c for c in carried if normalize_name(c) == "label"), None)
    for chunk in read_chunks(path, chunk_rows):
        headers = repeated_header_rows(chunk)
        if headers.any():
            counts["skipped_header_rows"] = counts.get("skipped_header_rows", 0) + int(headers.sum())
            chunk = chunk[~headers].reset_index(drop=True)
        features, _ = frame_to_features(chunk, profile.name)
        labels = chunk[label_col].reset_index(drop=True) if label_col is not None else None
        yield chunk[carried].reset_index(drop=True), features, labels


def _sensor_chunks(path: Path, kind: str, chunk_rows: int, counts: dict[str, Any]) -> Iterator[Chunk]:
    from .pcap_flows import read_pcap
    from .sensor_logs import read_sensor_log

    counts["extractor"] = kind

    def skipped(_line: int) -> None:
        counts["skipped_events"] = counts.get("skipped_events", 0) + 1

    chunks = read_pcap(path, chunk_rows) if kind == "pcap" else read_sensor_log(path, kind, chunk_rows, skipped)
    for chunk in chunks:
        labels = chunk.ids["label"] if "label" in chunk.ids else None  # a labelled Zeek conn.log
        yield chunk.ids, chunk.features, labels
