"""The broker connection's log lines against a real nats-server: a lost broker is reported, our own close is not."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

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


def test_publish_many_stores_each_message_once_and_reports_duplicates(nats_server: NatsServer) -> None:
    """One write of many messages: each is stored under its id, a repeated id is confirmed as a duplicate, and a
    CR/LF in an id (an input id is whatever its producer sent) cannot inject a header or a protocol line."""
    from nats.js.api import StreamConfig

    async def run() -> tuple[list, list, list[tuple[str, dict, bytes]]]:
        nc, js = await broker.connect(nats_server.url, "test", print, timeout=5)
        await js.add_stream(StreamConfig(name="OUT", subjects=["out.>"], duplicate_window=60))
        out = await broker.Confirmed(nc).start()
        messages = [(f"out.s{i % 2}", b'{"n":%d}' % i, f"v:{i}") for i in range(300)]
        messages.append(("out.s0", b'{"evil":1}', "v:x\r\nNats-Expected-Stream: NOPE\r\n\r\nPUB out.s1 1"))
        first = await out.wait(await out.publish_many(messages), 10)
        again = await out.wait(await out.publish_many(messages[:5]), 10)
        assert out._sub._received == 0  # settled where the parser read them, not queued as nats-py messages
        stored = []
        sub = await js.subscribe("out.>", stream="OUT", ordered_consumer=True)
        for _ in range((await js.stream_info("OUT")).state.messages):
            msg = await sub.next_msg(timeout=5)
            stored.append((msg.subject, dict(msg.headers or {}), msg.data))
        await nc.close()
        return first, again, stored

    first, again, stored = asyncio.run(run())
    assert first == [False] * 301, first[:5]
    assert again == [True] * 5
    assert len(stored) == 301
    assert [s[1]["Nats-Msg-Id"] for s in stored[:3]] == ["v:0", "v:1", "v:2"]
    assert stored[0][0] == "out.s0" and stored[1][0] == "out.s1" and stored[1][2] == b'{"n":1}'
    evil = stored[-1]
    assert evil[2] == b'{"evil":1}' and set(evil[1]) == {"Nats-Msg-Id"}
    assert "\r" not in evil[1]["Nats-Msg-Id"] and "\n" not in evil[1]["Nats-Msg-Id"]


def test_publish_many_refuses_a_subject_with_whitespace(nats_server: NatsServer) -> None:
    async def run() -> None:
        nc, _js = await broker.connect(nats_server.url, "test", print, timeout=5)
        out = await broker.Confirmed(nc).start()
        try:
            with pytest.raises(ValueError, match="invalid NATS subject"):
                await out.publish_many([("out.a b", b"x", "v:1")])
            assert out._waiting == {}  # nothing left waiting for an ack that cannot come
        finally:
            await nc.close()

    asyncio.run(run())


def test_acknowledge_and_delivery_read_a_real_consumer(nats_server: NatsServer) -> None:
    """Acks sent in one write are taken by JetStream (nothing is redelivered or pending), and the delivery
    count, stream sequence and store time read from the reply subject agree with nats-py's own metadata."""
    from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

    async def run() -> tuple[list[broker.Delivery], list, Any, Any]:
        nc, js = await broker.connect(nats_server.url, "test", print, timeout=5)
        await js.add_stream(StreamConfig(name="IN", subjects=["in.>"]))
        for i in range(20):
            await js.publish("in.x", b"%d" % i)
        await js.add_consumer("IN", ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT, ack_wait=30))
        sub = await js.pull_subscribe_bind(durable="c", stream="IN")
        msgs = await sub.fetch(20, timeout=5)
        while len(msgs) < 20:
            msgs += await sub.fetch(20 - len(msgs), timeout=5)
        seen = [broker.delivery(m) for m in msgs]
        theirs = [m.metadata for m in msgs]
        await broker.acknowledge(nc, [m.reply for m in msgs])
        await nc.flush(timeout=5)
        await asyncio.sleep(0.2)
        info = await js.consumer_info("IN", "c")
        await nc.close()
        return seen, theirs, info.num_ack_pending, info.num_pending

    seen, theirs, ack_pending, pending = asyncio.run(run())
    assert ack_pending == 0 and pending == 0
    for mine, meta in zip(seen, theirs):
        assert mine.delivered == meta.num_delivered == 1
        assert mine.stream_seq == meta.sequence.stream
        assert abs(mine.stored_at - meta.timestamp.timestamp()) < 1e-3
    assert [d.stream_seq for d in seen] == list(range(1, 21))


def test_delivery_reads_both_reply_subject_forms() -> None:
    class Reply:
        def __init__(self, reply: str) -> None:
            self.reply = reply

    v1 = broker.delivery(Reply("$JS.ACK.FLOWS.scorer.3.1042.977.1796287828656269800.12"))
    assert v1 == broker.Delivery(3, 1042, 1796287828.6562698)
    v2 = broker.delivery(Reply("$JS.ACK.hub.ACCHASH.FLOWS.scorer.2.7.5.1796287828000000000.0.rnd"))
    assert (v2.delivered, v2.stream_seq, v2.stored_at) == (2, 7, 1796287828.0)
    with pytest.raises(Exception, match="(?i)not.*js|jetstream"):
        broker.delivery(type("M", (), {"reply": "_INBOX.abc", "metadata": property(lambda s: _not_js())})())


def _not_js() -> None:
    from nats.js.errors import NotJSMessageError

    raise NotJSMessageError


def test_publish_many_refuses_a_message_over_the_servers_max_payload(nats_server: NatsServer) -> None:
    """Sent anyway, the server would close the connection and every message of the write would be lost."""

    async def run() -> None:
        nc, _js = await broker.connect(nats_server.url, "test", print, timeout=5)
        out = await broker.Confirmed(nc).start()
        try:
            with pytest.raises(ValueError, match="max_payload"):
                await out.publish_many([("out.a", b"x", "v:1"), ("out.a", b"x" * nc.max_payload, "v:2")])
            assert out._waiting == {} and nc.is_connected
        finally:
            await nc.close()

    asyncio.run(run())


def test_puller_hands_out_batches_from_one_pull_each_and_keeps_what_arrives_late(nats_server: NatsServer) -> None:
    """50 stored messages, batches of 20: 20, 20, 10, then an empty fetch after the first wait; every message
    once, in order, including one whose producer set a ``Status`` header (it is a delivery, not a status reply),
    and nats-py's pending-bytes accounting back at zero."""
    import time

    from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

    async def run() -> tuple[list[int], list[bytes], float, int]:
        nc, js = await broker.connect(nats_server.url, "test", print, timeout=5)
        await js.add_stream(StreamConfig(name="IN", subjects=["in.>"]))
        for i in range(50):
            await js.publish("in.x", b"%d" % i, headers={"Status": "408"} if i == 7 else None)
        await js.add_consumer("IN", ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT, ack_wait=30))
        psub = await js.pull_subscribe_bind(durable="c", stream="IN")
        puller = broker.Puller(nc, psub)
        sizes, payloads = [], []
        for _ in range(3):
            batch = await puller.fetch(20, first_wait_s=1.0, batch_wait_s=0.2)
            sizes.append(len(batch))
            payloads += [m.data for m in batch]
            await broker.acknowledge(nc, [m.reply for m in batch])
        began = time.monotonic()
        empty = await puller.fetch(20, first_wait_s=0.3, batch_wait_s=0.05)
        waited = time.monotonic() - began
        sizes.append(len(empty))
        pending = psub._sub._pending_size
        await nc.close()
        return sizes, payloads, waited, pending

    sizes, payloads, waited, pending = asyncio.run(run())
    assert sizes == [20, 20, 10, 0]
    assert payloads == [b"%d" % i for i in range(50)]
    assert 0.25 < waited < 1.5
    assert pending == 0


def test_unconfirmed_publishes_time_out_and_refused_ones_carry_the_error(nats_server: NatsServer) -> None:
    """A subject a plain subscriber takes but no stream stores gets no ack (TimeoutError after the wait); a
    subject nobody takes gets the server's no-responders reply (an error): neither counts as stored."""

    async def run() -> tuple[list, list, dict]:
        nc, _js = await broker.connect(nats_server.url, "test", print, timeout=5)
        out = await broker.Confirmed(nc).start()
        async def ignore(_msg: Any) -> None:
            return None

        await nc.subscribe("quiet.x", cb=ignore)
        silent = await out.wait(await out.publish_many([("quiet.x", b"1", "v:1"), ("quiet.x", b"2", "v:2")]), 0.5)
        refused = await out.wait(await out.publish_many([("nobody.x", b"1", "v:3")]), 5)
        left = dict(out._waiting)
        await nc.close()
        return silent, refused, left

    silent, refused, left = asyncio.run(run())
    assert all(isinstance(r, TimeoutError) for r in silent) and len(silent) == 2
    assert len(refused) == 1 and isinstance(refused[0], RuntimeError)
    assert left == {}


def test_an_unreadable_ack_is_an_error_and_the_acks_after_it_still_settle(nats_server: NatsServer) -> None:
    """A reply on the ack inbox that is not an ack's JSON settles its message as an error (it is not counted as
    stored), and the next batch is still confirmed."""
    from nats.js.api import StreamConfig

    async def run() -> tuple[list, list]:
        nc, js = await broker.connect(nats_server.url, "test", print, timeout=5)
        await js.add_stream(StreamConfig(name="ACKS", subjects=["acks.>"]))
        out = await broker.Confirmed(nc).start()
        forged = broker.PublishBatch(10_000, 1, asyncio.get_running_loop().create_future())
        out._waiting["10000"] = (forged, 0)
        await nc.publish(out._prefix + "10000", b'{"duplicate": tru')  # a reply no stream would write
        unreadable = await out.wait(forged, 5)
        stored = await out.wait(await out.publish_many([("acks.a", b"1", "a:1"), ("acks.a", b"2", "a:2")]), 5)
        await nc.close()
        return unreadable, stored

    unreadable, stored = asyncio.run(run())
    assert len(unreadable) == 1 and isinstance(unreadable[0], RuntimeError)
    assert "unreadable JetStream ack" in str(unreadable[0])
    assert stored == [False, False]


@pytest.mark.parametrize("raw", [
    b"Nats-Msg-Id: abc\r\n\r\n",
    b"Nats-Msg-Id:abc\r\nX: y z \r\n\r\n",
    b"Bad Name: 1\r\nN\xc3\xa9: 2\r\nV: \xff\xfe\r\n\r\n",
    b"A: b:c\r\nno colon\r\n\r\n",
    b"\r\n",
])
def test_header_lines_read_headers_as_nats_py_does(raw: bytes) -> None:
    """The deliveries' headers are read without nats-py, with its rules: a name with whitespace or non-ASCII
    bytes is skipped, values are stripped, invalid UTF-8 is replaced, a colon in a value stays."""
    from nats.aio.client import Client

    assert broker.header_lines(raw) == Client._parse_header_lines(raw)
