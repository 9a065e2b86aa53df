"""Helpers of the streaming tests: read a stream, publish raw messages, run ``moe-ids stream`` as a process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from moe_ids.streaming import topology


async def stream_messages(url: str, stream: str) -> list[tuple[str, dict[str, str], bytes]]:
    """Every message stored in ``stream`` as (subject, headers, payload), in stream order."""
    import nats

    nc = await nats.connect(servers=[url])
    js = nc.jetstream(timeout=10)
    out: list[tuple[str, dict[str, str], bytes]] = []
    try:
        total = (await js.stream_info(stream)).state.messages
        if total == 0:
            return out
        sub = await js.subscribe(topology.STREAM_SUBJECTS[stream], stream=stream, ordered_consumer=True)
        while len(out) < total:
            msg = await sub.next_msg(timeout=30)
            out.append((msg.subject, dict(msg.headers or {}), msg.data))
        await sub.unsubscribe()
    finally:
        await nc.close()
    return out


def read_stream(url: str, stream: str) -> list[tuple[str, dict[str, str], bytes]]:
    return asyncio.run(stream_messages(url, stream))


def read_json_stream(url: str, stream: str) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    return [(subject, headers, json.loads(data)) for subject, headers, data in read_stream(url, stream)]


async def _consumer_state(url: str) -> tuple[int, int]:
    import nats

    nc = await nats.connect(servers=[url])
    try:
        info = await nc.jetstream(timeout=10).consumer_info(topology.FLOWS, topology.CONSUMER)
        return int(info.num_pending or 0), int(info.num_ack_pending or 0)
    finally:
        await nc.close()


def consumer_state(url: str) -> tuple[int, int]:
    """(not yet delivered, delivered and not acknowledged) of the shared consumer."""
    return asyncio.run(_consumer_state(url))


async def _publish(url: str, items: list[tuple[str, str | None, bytes]]) -> None:
    import nats

    nc = await nats.connect(servers=[url])
    js = nc.jetstream(timeout=10)
    try:
        await topology.ensure_topology(js, update=False)
        for subject, msg_id, payload in items:
            headers = {topology.MSG_ID_HEADER: msg_id} if msg_id else None
            await js.publish(subject, payload, headers=headers)
    finally:
        await nc.close()


def publish(url: str, items: list[tuple[str, str | None, bytes]]) -> None:
    """Publish raw (subject, Nats-Msg-Id or None, payload) messages and wait for each ack."""
    asyncio.run(_publish(url, items))


def flow_message(msg_id: str, features: dict[str, Any], **extra: Any) -> tuple[str, str, bytes]:
    return "flows.test", msg_id, json.dumps({"id": msg_id, "features": features, **extra}).encode()


class WorkerProcess:
    """``moe-ids stream`` as a subprocess (what an operator runs); its log is kept for failures."""

    def __init__(self, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen([sys.executable, "-m", "moe_ids.cli", "stream", *args], stdout=self._log,
                                        stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
