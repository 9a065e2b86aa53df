"""The broker connection's log lines against a real nats-server: a lost broker is reported, our own close is not."""

from __future__ import annotations

import asyncio

from moe_ids.streaming import broker
from moe_ids.streaming.nats_server import NatsServer


def test_closing_the_connection_is_not_reported_as_a_lost_broker(nats_server: NatsServer) -> None:
    lines: list[str] = []

    async def run() -> None:
        nc, _js = await broker.connect(nats_server.url, "test", lines.append, timeout=5)
        await nc.close()

    asyncio.run(run())
    assert not any("disconnected" in line for line in lines), lines


def test_a_broker_that_goes_away_is_reported(nats_server: NatsServer) -> None:
    lines: list[str] = []

    async def run() -> None:
        nc, _js = await broker.connect(nats_server.url, "test", lines.append, timeout=5)
        nats_server.stop()
        for _ in range(100):  # the client notices the closed socket within a few read-loop turns
            if any("disconnected" in line for line in lines):
                break
            await asyncio.sleep(0.05)
        await nc.close()

    asyncio.run(run())
    assert "disconnected from NATS" in lines
