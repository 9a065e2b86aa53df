"""Reading sensor log files - Zeek ``conn.log`` (TSV with ``#fields``, or JSON lines) and Suricata ``eve.json``
(its ``event_type: flow`` records) - in chunks of identifier columns plus model features.

Each record goes through the same mapping the SDK uses (``from_zeek_conn`` / ``from_suricata_flow``), so a file
and a live record are scored alike; what those logs cannot tell stays missing (see the ``zeek`` and
``suricata`` extractor profiles). A record that cannot be read stops the run with its line number and the
problem, so no flow is silently dropped; Suricata events of other types (alerts, DNS, ...) are not flows and are
counted as skipped.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd

from moe_ids.core.labels import clean_label
from moe_ids.data.extractors import RECORD_EXTRACTORS

from .suricata import from_suricata_flow
from .zeek import from_zeek_conn

SENSOR_KINDS: tuple[str, ...] = tuple(k for k in RECORD_EXTRACTORS if k != "pcap")  # the log formats read here
ZEEK_IDS: tuple[str, ...] = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service")
SURICATA_IDS: dict[str, tuple[str, ...]] = {  # output column -> path in the event
    "timestamp": ("timestamp",), "flow_id": ("flow_id",), "src_ip": ("src_ip",), "src_port": ("src_port",),
    "dest_ip": ("dest_ip",), "dest_port": ("dest_port",), "proto": ("proto",), "app_proto": ("app_proto",),
}


class SensorLogError(ValueError):
    """A record of a sensor log that cannot be read; the message names the file, the line and the problem."""


@dataclass
class SensorChunk:
    ids: pd.DataFrame  # identifier columns of each flow, in file order
    features: pd.DataFrame  # canonical feature columns, NaN = missing
    lines: list[int] = field(default_factory=list)


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def sniff(path: str | Path) -> str | None:
    """``zeek`` or ``suricata`` when the file is one of their logs, None otherwise (a CSV)."""
    with _open(Path(path)) as fh:
        for line in fh:
            text = line.strip()
            if not text:
                continue
            if text.startswith("#separator") or text.startswith("#fields"):
                return "zeek"
            if text.startswith("{"):
                try:
                    record = json.loads(text)
                except json.JSONDecodeError:
                    return None
                if "event_type" in record:
                    return "suricata"
                if "uid" in record or "id.orig_h" in record:
                    return "zeek"
            return None
    return None


def _zeek_records(fh: IO[str]) -> Iterator[tuple[int, Mapping[str, Any] | None]]:
    """(line number, record) for TSV (``#fields`` header, ``-`` unset) or JSON-lines conn.log files.

    Labelled conn.logs of Stratosphere's data sets (IoT-23's ``conn.log.labeled``) join their last fields with
    spaces instead of the separator (``tunnel_parents   label   detailed-label``, values alike): a field name
    holding spaces is read as that many fields, and its value split the same way.
    """
    fields: list[str] | None = None
    header: list[str] = []
    joined: set[int] = set()  # positions in the header line whose name is several space-joined names
    separator = "\t"
    for number, line in enumerate(fh, start=1):
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.startswith("#"):
            if text.startswith("#separator"):
                raw = text.split(" ", 1)[1].strip() if " " in text else "\\x09"
                separator = raw.encode().decode("unicode_escape") if raw.startswith("\\x") else raw
            elif text.startswith("#fields"):
                header = text.split(separator)[1:]
                joined = {i for i, name in enumerate(header) if len(name.split()) > 1}
                fields = [part for name in header for part in name.split()]
            continue
        if text.lstrip().startswith("{"):
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                raise SensorLogError(f"line {number}: not valid JSON ({exc.msg})") from None
            continue
        if fields is None:
            raise SensorLogError(f"line {number}: a TSV record before the #fields header")
        values = text.split(separator)
        if len(values) != len(header):
            raise SensorLogError(f"line {number}: {len(values)} values for {len(header)} #fields")
        if joined:
            values = [part for i, value in enumerate(values) for part in (value.split() if i in joined else [value])]
            if len(values) != len(fields):
                raise SensorLogError(f"line {number}: {len(values)} values for the {len(fields)} fields of the "
                                     "#fields line, counting its space-joined names one by one")
        yield number, dict(zip(fields, values))


def _suricata_records(fh: IO[str]) -> Iterator[tuple[int, Mapping[str, Any] | None]]:
    """(line number, flow event), or (line number, None) for an event of another type."""
    for number, line in enumerate(fh, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            event = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SensorLogError(f"line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(event, Mapping):
            raise SensorLogError(f"line {number}: expected a JSON object, got {type(event).__name__}")
        yield number, event if event.get("event_type") == "flow" else None


def _zeek_ids(record: Mapping[str, Any]) -> dict[str, Any]:
    ids = {name: record.get(name) for name in ZEEK_IDS}
    if "label" in record:
        ids["label"] = zeek_label(record)
    return ids


def zeek_label(record: Mapping[str, Any]) -> str | None:
    """The ground truth a labelled conn.log carries: ``label`` (``Benign`` / ``Malicious``), or for a malicious
    flow its ``detailed-label`` (``PartOfAHorizontalPortScan``, ``DDoS``, ``C&C``), which names the attack;
    None where the record is not labelled (``-``)."""
    label = record.get("label")
    if label is None or str(label).strip() in ("", "-"):
        return None
    detailed = record.get("detailed-label")
    if detailed is not None and str(detailed).strip() not in ("", "-") and clean_label(label) != "BENIGN":
        return str(detailed).strip()
    return str(label).strip()


def _suricata_ids(event: Mapping[str, Any]) -> dict[str, Any]:
    return {name: event.get(path[0]) for name, path in SURICATA_IDS.items()}


_READERS: dict[str, tuple[Callable, Callable, Callable]] = {
    "zeek": (_zeek_records, from_zeek_conn, _zeek_ids),
    "suricata": (_suricata_records, from_suricata_flow, _suricata_ids),
}


def read_sensor_log(path: str | Path, kind: str, chunk_rows: int = 16384,
                    skipped: Callable[[int], None] | None = None) -> Iterator[SensorChunk]:
    """Chunks of at most ``chunk_rows`` flows, in file order; ``skipped`` is told of non-flow records."""
    if kind not in _READERS:
        raise SensorLogError(f"unknown sensor log kind {kind!r}; expected one of {', '.join(SENSOR_KINDS)}")
    records, to_features, to_ids = _READERS[kind]
    path = Path(path)
    ids: list[dict[str, Any]] = []
    feats: list[dict[str, float]] = []
    lines: list[int] = []
    with _open(path) as fh:
        for number, record in records(fh):
            if record is None:
                if skipped is not None:
                    skipped(number)
                continue
            try:
                feats.append(to_features(record))
            except ValueError as exc:
                raise SensorLogError(f"line {number}: {exc}") from None
            ids.append(to_ids(record))
            lines.append(number)
            if len(feats) >= chunk_rows:
                yield SensorChunk(pd.DataFrame(ids), pd.DataFrame(feats), lines)
                ids, feats, lines = [], [], []
    if feats:
        yield SensorChunk(pd.DataFrame(ids), pd.DataFrame(feats), lines)
