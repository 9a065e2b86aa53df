"""The NATS connection as the worker and the publisher use it: reconnecting forever, one log line per broker
event, and publish confirmations collected with a deadline (an unconfirmed publish is an error, not a hang)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def connect(url: str, name: str, log: Callable[[str], None], timeout: float) -> tuple[Any, Any]:
    """(connection, JetStream context); ``url`` may list a cluster's servers, comma-separated. Raises when no
    server can be reached now."""
    import nats

    servers = [u.strip() for u in url.split(",") if u.strip()]
    state: dict[str, Any] = {}
    nc = await nats.connect(servers=servers, max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=2,
                            name=name, **connection_callbacks(log, state))
    state["connection"] = nc
    return nc, nc.jetstream(timeout=timeout)


def connection_callbacks(log: Callable[[str], None], state: dict[str, Any] | None = None) -> dict[str, Any]:
    """One line per broker event instead of nats-py's tracebacks; reconnecting is the client's own job.

    ``state["connection"]``, once set, is the connection: its own ``close()`` also fires the disconnect callback,
    and a line saying "disconnected" at the end of every normal run would read as a fault."""
    state = {} if state is None else state
    state["errors"] = 0

    async def error_cb(exc: Exception) -> None:
        state["errors"] += 1
        if state["errors"] == 1 or state["errors"] % 50 == 0:
            log(f"NATS connection error ({type(exc).__name__}: {exc}); reconnecting")

    async def disconnected_cb() -> None:
        connection = state.get("connection")
        if connection is not None and connection.is_closed:  # our own close(), not a lost broker
            return
        log("disconnected from NATS")

    async def reconnected_cb() -> None:
        state["errors"] = 0
        log("reconnected to NATS")

    return {"error_cb": error_cb, "disconnected_cb": disconnected_cb, "reconnected_cb": reconnected_cb}


async def confirmations(futures: list[asyncio.Future], timeout: float) -> list[Any]:
    """Each publish's ack, or the exception (a TimeoutError for one unconfirmed within ``timeout``)."""
    if not futures:
        return []
    _done, waiting = await asyncio.wait(futures, timeout=timeout)
    for future in waiting:
        future.cancel()
    return [f.exception() or f.result() if not f.cancelled() else TimeoutError("publish not confirmed")
            for f in futures]


class Confirmed:
    """JetStream publishes whose acks arrive on one inbox subscription of this connection.

    The same protocol as nats-py's ``publish_async`` (a publish with a reply subject; the stream answers there),
    without its per-message future bookkeeping, JSON decoding and dataclass: an ack's payload only needs telling
    apart a stored message, a duplicate and an error. Every verdict and alert goes through here, so that cost is
    per flow.
    """

    def __init__(self, nc: Any) -> None:
        self._nc = nc
        self._prefix = ""
        self._waiting: dict[str, asyncio.Future] = {}
        self._count = 0
        self._sub: Any = None

    async def start(self) -> Confirmed:
        self._prefix = self._nc.new_inbox() + "."
        self._sub = await self._nc.subscribe(self._prefix + "*", cb=self._on_ack)
        return self

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> asyncio.Future:
        """Send one message; the future holds True for a duplicate, False for a stored message, or the error."""
        self._count += 1
        token = str(self._count)
        future = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        await self._nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
        return future

    async def _on_ack(self, msg: Any) -> None:
        future = self._waiting.pop(msg.subject[len(self._prefix):], None)
        if future is None or future.done():
            return
        data = msg.data
        if b'"error"' in data or not data:  # no responders / stream missing: an empty status reply
            future.set_exception(RuntimeError(f"JetStream refused the publish: {data[:200]!r}"))
        else:
            future.set_result(b'"duplicate":true' in data)

    def forget(self, futures: list[asyncio.Future]) -> None:
        """Drop the bookkeeping of publishes whose acks will not be waited for any more."""
        stale = {id(f) for f in futures}
        for token in [t for t, f in self._waiting.items() if id(f) in stale]:
            del self._waiting[token]
