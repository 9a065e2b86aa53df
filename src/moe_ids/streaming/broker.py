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
    nc = await nats.connect(servers=servers, max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=2,
                            name=name, **connection_callbacks(log))
    return nc, nc.jetstream(timeout=timeout)


def connection_callbacks(log: Callable[[str], None]) -> dict[str, Any]:
    """One line per broker event instead of nats-py's tracebacks; reconnecting is the client's own job."""
    state = {"errors": 0}

    async def error_cb(exc: Exception) -> None:
        state["errors"] += 1
        if state["errors"] == 1 or state["errors"] % 50 == 0:
            log(f"NATS connection error ({type(exc).__name__}: {exc}); reconnecting")

    async def disconnected_cb() -> None:
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
