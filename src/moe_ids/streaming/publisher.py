"""``moe-ids stream publish``: files as input messages on ``flows.>``, with ids that are the same every time.

A whole file (anything ``moe-ids score`` reads) is read through ``moe_ids.client.flow_files``, so its values
are converted into the model's semantics exactly as for bulk scoring, and sent as input messages whose id is
``PREFIX:<uid | flow_id | row number>`` (PREFIX defaults to the file's name): publishing the same file twice
within the de-duplication window stores each flow once. ``--follow`` tails a growing Zeek conn.log or
Suricata eve.json and sends each new record as is on ``flows.zeek.<sensor>`` / ``flows.suricata.<sensor>``
for the worker to map; a line that is not a record is sent as well, so it ends in the dead-letter stream
with its text instead of vanishing. Every publish is confirmed by JetStream; failures are retried until
``max_wait`` seconds pass.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import broker, topology
from .messages import encode_json

ID_COLUMNS = ("uid", "flow_id")  # a sensor's own flow identifier, preferred over the row number


@dataclass
class PublishSettings:
    nats_url: str = topology.DEFAULT_NATS_URL
    sensor: str = topology.DEFAULT_SENSOR
    id_prefix: str | None = None  # default: the file's name
    extractor: str | None = None
    chunk_rows: int = 16384
    max_wait_s: float = 120.0  # keep retrying failed publishes this long
    confirm_timeout_s: float = 30.0  # a publish not confirmed within this is sent again
    follow: bool = False
    poll_s: float = 0.2  # --follow: how often to look for new lines
    idle_exit_s: float | None = None  # --follow: stop when the file did not grow for this long


def flow_messages(ids: pd.DataFrame, features: pd.DataFrame, first_row: int, prefix: str,
                  sensor: str) -> Iterator[tuple[str, bytes]]:
    """(message id, input message) per row of one chunk; NaN features are sent as null (= missing)."""
    names = [str(c) for c in features.columns]
    values = features.to_numpy(dtype=np.float64, na_value=np.nan)
    id_col = next((c for c in ID_COLUMNS if c in ids.columns), None)
    id_records = ids.to_dict("records") if len(ids.columns) else [{}] * len(features)
    now = time.time()
    for i, (row, flow) in enumerate(zip(values.tolist(), id_records)):
        own = flow.get(id_col) if id_col else None
        known = own is not None and not (isinstance(own, float) and math.isnan(own))
        suffix = str(own) if known else str(first_row + i)
        msg_id = f"{prefix}:{suffix}"
        message = {"id": msg_id, "sensor": sensor, "ts": now,
                   "features": {n: (None if v != v else v) for n, v in zip(names, row)}}
        if flow:
            message["flow"] = flow
        yield msg_id, encode_json(message)


class Publisher:
    """A JetStream connection that publishes and confirms batches of messages."""

    def __init__(self, settings: PublishSettings) -> None:
        self.settings = settings
        self.published = 0
        self.duplicates = 0
        self._nc: Any = None
        self._js: Any = None

    async def __aenter__(self) -> Publisher:
        self._nc, self._js = await broker.connect(self.settings.nats_url, "moe-ids-publish", _log, 10.0)
        await topology.ensure_topology(self._js, update=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._nc is not None:
            await self._nc.close()

    async def publish(self, items: list[tuple[str, str, bytes]]) -> None:
        """Publish (subject, id, payload) items; returns once JetStream confirmed every one."""
        pending = items
        deadline = time.monotonic() + self.settings.max_wait_s
        attempt = 0
        while pending:
            futures = []
            for subject, msg_id, payload in pending:
                futures.append(await self._js.publish_async(subject, payload,
                                                            headers={topology.MSG_ID_HEADER: msg_id}))
            results = await broker.confirmations(futures, timeout=self.settings.confirm_timeout_s)
            failed = [item for item, res in zip(pending, results) if isinstance(res, BaseException)]
            ok = [res for res in results if not isinstance(res, BaseException)]
            self.published += len(ok)
            self.duplicates += sum(1 for ack in ok if getattr(ack, "duplicate", False))
            if failed and time.monotonic() > deadline:
                first = next(r for r in results if isinstance(r, BaseException))
                raise RuntimeError(f"{len(failed)} messages not confirmed by JetStream after "
                                   f"{self.settings.max_wait_s:g} s (first: {first!r})")
            pending = failed
            if pending:
                await asyncio.sleep(random.uniform(0.5, 1.0) * min(5.0, 0.2 * 2 ** attempt))
                attempt += 1


def _log(text: str) -> None:
    print(f"moe-ids stream publish: {text}", file=sys.stderr, flush=True)


async def publish_file(path: Path, settings: PublishSettings) -> dict[str, Any]:
    """Send the whole file; returns counts (published, duplicates, extractor, skipped_events)."""
    from moe_ids.client.flow_files import read_flow_file

    prefix = settings.id_prefix or path.name
    subject = f"{topology.FLOWS_PREFIX}.{topology.sensor_token(settings.sensor)}"
    counts: dict[str, Any] = {}
    row = 0
    async with Publisher(settings) as pub:
        for ids, features, _labels in read_flow_file(path, settings.extractor, settings.chunk_rows, counts):
            items = [(subject, msg_id, body) for msg_id, body in
                     flow_messages(ids, features, row, prefix, topology.sensor_token(settings.sensor))]
            await pub.publish(items)
            row += len(features)
        counts.update(published=pub.published, duplicates=pub.duplicates, flows=row)
    return counts


class SensorTail:
    """Records of a growing Zeek conn.log (TSV or JSON) or Suricata eve.json, as (id, payload) to send as is."""

    def __init__(self, kind: str, prefix: str) -> None:
        if kind not in topology.RECORD_SUBJECTS:
            raise ValueError(f"--follow reads Zeek conn.log or Suricata eve.json files, not {kind!r}")
        self.kind = kind
        self.prefix = prefix
        self.fields: list[str] | None = None
        self.separator = "\t"
        self.skipped = 0

    def record(self, number: int, line: str) -> tuple[str, bytes] | None:
        text = line.rstrip("\n")
        if not text.strip():
            return None
        if self.kind == "zeek" and text.startswith("#"):
            if text.startswith("#separator"):
                raw = text.split(" ", 1)[1].strip() if " " in text else "\\x09"
                self.separator = raw.encode().decode("unicode_escape") if raw.startswith("\\x") else raw
            elif text.startswith("#fields"):
                self.fields = text.split(self.separator)[1:]
            return None
        record: Any = None
        if text.lstrip().startswith("{"):
            try:
                record = json.loads(text)
            except ValueError:
                record = None
        elif self.kind == "zeek" and self.fields is not None:
            values = text.split(self.separator)
            if len(values) == len(self.fields):
                record = dict(zip(self.fields, values))
                text = json.dumps(record)
        if not isinstance(record, dict):  # not a record: sent as it is, the worker dead-letters it with its text
            return f"{self.prefix}:line:{number}", text.encode()
        if self.kind == "suricata" and record.get("event_type", "flow") != "flow":
            self.skipped += 1
            return None
        own = record.get("uid" if self.kind == "zeek" else "flow_id")
        return f"{self.prefix}:{own if own not in (None, '', '-') else 'line:' + str(number)}", text.encode()


async def follow_file(path: Path, kind: str, settings: PublishSettings, stop: asyncio.Event | None = None) -> dict:
    """Tail ``path`` from its start, sending each complete new line's record, until ``stop`` is set or the file
    did not grow for ``idle_exit_s`` seconds. A truncated or replaced file (rotation) is read from its start."""
    stop = stop or asyncio.Event()
    tail = SensorTail(kind, settings.id_prefix or path.name)
    subject = f"{topology.RECORD_SUBJECTS[kind]}.{topology.sensor_token(settings.sensor)}"
    number, position, inode, buffer = 0, 0, None, b""
    last_growth = time.monotonic()
    async with Publisher(settings) as pub:
        while not stop.is_set():
            items: list[tuple[str, str, bytes]] = []
            try:
                stat = path.stat()
                if inode is not None and (stat.st_ino != inode or stat.st_size < position):
                    number, position, buffer = 0, 0, b""  # rotated: start over (ids are the records' own)
                inode = stat.st_ino
                if stat.st_size > position:
                    with open(path, "rb") as fh:
                        fh.seek(position)
                        chunk = fh.read(8 << 20)
                    position += len(chunk)
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")  # an unfinished last line waits for its end
                    for line in lines:
                        number += 1
                        item = tail.record(number, line.decode("utf-8", errors="replace"))
                        if item is not None:
                            items.append((subject, *item))
                    last_growth = time.monotonic()
            except FileNotFoundError:
                pass
            if items:
                await pub.publish(items)
                continue
            if settings.idle_exit_s is not None and time.monotonic() - last_growth > settings.idle_exit_s:
                break
            try:
                await asyncio.wait_for(stop.wait(), timeout=settings.poll_s)
            except asyncio.TimeoutError:
                pass
        return {"published": pub.published, "duplicates": pub.duplicates, "lines": number,
                "skipped_events": tail.skipped, "extractor": kind}
