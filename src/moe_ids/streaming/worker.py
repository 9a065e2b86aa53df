"""The scorer worker: fetch a micro-batch from the shared consumer, score it in one request, publish, then ack.

Guarantees, in the order the loop keeps them:
- an input is acknowledged only after the publish acks of its verdict (and alert) arrived, so a worker killed
  at any moment leaves unacknowledged inputs that JetStream redelivers after AckWait; their verdicts carry the
  same ``Nats-Msg-Id`` and the output streams drop the repeats (see ``topology``);
- a message that cannot be scored (``messages.Rejected``) goes to ``dlq.flows`` with its payload and reason
  and is then terminated, so it is never redelivered in a loop and never holds up the good messages of its
  batch; a batch the server refuses is split until the refused flows are found;
- when Triton is down, restarting or overloaded the worker keeps the messages it holds (telling JetStream it
  is still working on them), stops fetching, backs off and resumes: an outage dead-letters nothing;
- a broker outage fails the publishes: nothing is acknowledged and the inputs come back after AckWait.
Several batches are in flight at once (``inflight``), so fetching and publishing overlap with inference.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moe_ids.client import AsyncMoEClient, InvalidInputError, ModelNotReadyError
from moe_ids.client.errors import TRANSIENT_ERRORS, MoEClientError
from moe_ids.client.model_info import ModelInfo
from moe_ids.core import contract
from moe_ids.data.extractors import DEFAULT_PROFILE

from . import broker, topology
from . import messages as msgs
from .metrics import WorkerMetrics

OUTPUT_OVERHEAD = 1024  # header bytes (id up to 512 characters) and an alert's "severity" beyond the verdict
RETRYABLE = (*TRANSIENT_ERRORS, ModelNotReadyError)  # a restarting server first loses its models
LAG_POLL_S = 2.0


@dataclass
class WorkerSettings:
    nats_url: str = topology.DEFAULT_NATS_URL
    triton_url: str | None = None  # host:port of Triton's gRPC (default: 127.0.0.1:8001)
    protocol: str = "grpc"
    model_name: str = contract.ENSEMBLE_MODEL
    batch_size: int = 512  # flows per micro-batch = per request
    batch_wait_s: float = 0.02  # how long a partial batch waits for more flows
    inflight: int = 2  # micro-batches being scored / published at once
    alert_high: float = 0.9
    alert_review: float = 0.7
    max_deliveries: int = 20  # a flow delivered this often without a verdict is dead-lettered
    request_timeout_s: float = 30.0
    publish_timeout_s: float = 10.0
    max_backoff_s: float = 5.0
    topology: topology.TopologySettings = field(default_factory=topology.TopologySettings)
    metrics_port: int | None = None  # Prometheus /metrics on METRICS_HOST:PORT (0 = any free port)
    metrics_host: str = contract.DEFAULT_HOST
    progress_s: float = 10.0  # a progress line on stderr this often (0 = none)
    idle_exit_s: float | None = None  # stop when nothing arrived for this long and the consumer is drained
    max_runtime_s: float | None = None
    withhold: tuple[str, ...] = ()  # features always sent as missing (the SDK's ``withhold``)


class ScorerWorker:
    """One worker process's loop; run it with ``asyncio.run(worker.run())``; ``stop()`` ends it cleanly."""

    def __init__(self, settings: WorkerSettings, metrics: WorkerMetrics | None = None) -> None:
        if not 0.0 <= settings.alert_review <= settings.alert_high <= 1.0:
            raise ValueError(f"alert thresholds must satisfy 0 <= review ({settings.alert_review}) <= high "
                             f"({settings.alert_high}) <= 1")
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self.client = AsyncMoEClient(settings.triton_url, protocol=settings.protocol, model_name=settings.model_name,
                                     timeout=settings.request_timeout_s, retries=0, withhold=settings.withhold)
        self._stopping = asyncio.Event()
        self._last_message = time.monotonic()
        self._nc: Any = None
        self._js: Any = None
        self._out: broker.Confirmed | None = None
        self._encoder: msgs.FeatureEncoder | None = None
        self._info: ModelInfo | None = None

    def stop(self) -> None:
        self._stopping.set()

    # -- set-up --------------------------------------------------------------------------------------------
    async def _connect(self) -> None:
        delay = 0.2
        while not self._stopping.is_set():
            try:
                self._nc, self._js = await broker.connect(self.settings.nats_url, "moe-ids-scorer", self._log,
                                                          self.settings.publish_timeout_s)
                await topology.ensure_topology(self._js, self.settings.topology)
                self._out = await broker.Confirmed(self._nc).start()
                return
            except Exception as exc:  # noqa: BLE001 - broker not up yet: the worker waits for it
                self._log(f"NATS at {self.settings.nats_url} not available ({type(exc).__name__}: {exc}); "
                          f"retrying in {delay:.1f} s")
                if self._nc is not None:
                    await self._nc.close()
                    self._nc = None
                await self._sleep(delay)
                delay = min(self.settings.max_backoff_s, delay * 2)

    async def _model_info(self) -> ModelInfo:
        """The deployed model's description, waiting (with backoff) while Triton is not there yet."""
        attempt = 0
        while True:
            try:
                info = await self.client.refresh_model_info()
                self._info, self._encoder = info, msgs.FeatureEncoder(info)
                return info
            except RETRYABLE as exc:
                await self._backoff(attempt, exc, ())
                attempt += 1

    # -- main loop -----------------------------------------------------------------------------------------
    async def run(self) -> int:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        self.metrics.serve(self.settings.metrics_port, self.settings.metrics_host)
        await self._connect()
        if self._stopping.is_set():
            return 0
        await self._model_info()
        puller = broker.Puller(self._nc, await self._js.pull_subscribe_bind(durable=topology.CONSUMER,
                                                                            stream=topology.FLOWS))
        slots = asyncio.Semaphore(max(1, self.settings.inflight))
        tasks: set[asyncio.Task] = set()
        reporter = asyncio.create_task(self._report())
        self._log(f"scoring {topology.FLOWS} ({topology.STREAM_SUBJECTS[topology.FLOWS]}) with consumer "
                  f"{topology.CONSUMER!r} on {self.settings.nats_url} -> Triton {self.client.url} "
                  f"model {self.settings.model_name!r} {self._info.version or ''} "
                  f"(start-up took {time.process_time():.2f} CPU s)")
        try:
            while not self._stopping.is_set():
                if self.settings.max_runtime_s and time.monotonic() - started > self.settings.max_runtime_s:
                    self._log(f"--max-runtime {self.settings.max_runtime_s:g} s reached")
                    break
                await slots.acquire()  # all slots busy (e.g. Triton down): no fetching
                batch = await self._fetch(puller)
                if not batch:
                    slots.release()
                    if await self._idle_done():
                        break
                    continue
                task = asyncio.create_task(self._handle(batch))
                tasks.add(task)
                task.add_done_callback(lambda t: (tasks.discard(t), slots.release()))
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            reporter.cancel()
            self._log(self.metrics.progress_line())
            await self.client.close()
            if self._nc is not None:
                try:
                    await self._nc.flush(timeout=5)  # the last acks
                except Exception:  # noqa: BLE001 - the broker may be gone; the inputs stay unacked
                    pass
                await self._nc.close()
        return 0

    async def _fetch(self, puller: broker.Puller) -> list[Any]:
        """Up to ``batch_size`` messages: wait up to a second for the first, ``batch_wait_s`` for the rest.

        Why the wait for the rest starts at the first message: a pull that stayed open until the batch filled
        would hold every flow of a moderate stream for up to a second; this way the wait for a partial batch is
        ``batch_wait_s`` by construction."""
        try:
            got = await puller.fetch(self.settings.batch_size, 1.0, self.settings.batch_wait_s)
        except Exception as exc:  # noqa: BLE001 - broker restarting: the client reconnects by itself
            self._log(f"fetch failed ({type(exc).__name__}: {exc}); retrying")
            await self._sleep(0.5)
            return []
        if got:
            self._last_message = time.monotonic()
        return got

    async def _idle_done(self) -> bool:
        if self.settings.idle_exit_s is None or time.monotonic() - self._last_message < self.settings.idle_exit_s:
            return False
        try:
            info = await self._js.consumer_info(topology.FLOWS, topology.CONSUMER)
        except Exception:  # noqa: BLE001
            return False
        if (info.num_pending or 0) == 0 and (info.num_ack_pending or 0) == 0:
            self._log(f"idle for {self.settings.idle_exit_s:g} s with the consumer drained: stopping")
            return True
        return False

    # -- one micro-batch -----------------------------------------------------------------------------------
    async def _handle(self, batch: list[Any]) -> None:
        try:
            await self._score_batch(batch)
        except Exception as exc:  # noqa: BLE001 - the batch stays unacked and is redelivered; the worker goes on
            self._log(f"batch of {len(batch)} not finished ({type(exc).__name__}: {exc}); "
                      "JetStream redelivers it after AckWait")

    async def _score_batch(self, batch: list[Any]) -> None:
        self.metrics.batch(len(batch))
        good: list[tuple[Any, msgs.FlowInput]] = []
        bad: list[tuple[Any, msgs.Rejected]] = []
        for msg in batch:
            delivered = broker.delivery(msg).delivered
            if delivered > 1:
                self.metrics.redelivered()
            try:
                if delivered > self.settings.max_deliveries:
                    raise msgs.Rejected("too_many_deliveries", f"delivered {delivered} times without a "
                                                               f"verdict (limit {self.settings.max_deliveries})")
                header_id = (msg.headers or {}).get(topology.MSG_ID_HEADER)
                flow = msgs.parse_input(msg.subject, msg.data, header_id)
                self._encoder.check(flow)
                good.append((msg, flow))
            except msgs.Rejected as exc:
                bad.append((msg, exc))
        if bad:
            await self._dead_letter(bad)
        if good:
            results, refused = await self._score([f for _, f in good], [m for m, _ in good])
            if refused:
                await self._dead_letter([(good[i][0], exc) for i, exc in refused.items()])
                good = [g for i, g in enumerate(good) if i not in refused]
            await self._publish_verdicts(good, results)

    async def _score(self, flows: Sequence[msgs.FlowInput],
                     held: Sequence[Any]) -> tuple[dict[str, np.ndarray], dict[int, msgs.Rejected]]:
        """Results (``result_data`` columns) of the flows the server accepts, in order, and the refused ones by
        position."""
        x = self._encoder.encode(flows)
        imputation = msgs.strategies(flows)
        refused: dict[int, msgs.Rejected] = {}
        parts: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []

        async def run(rows: np.ndarray) -> None:
            try:
                parts.append((rows, await self._infer(x[rows], [imputation[i] for i in rows], held)))
            except InvalidInputError as exc:
                if len(rows) == 1:
                    refused[int(rows[0])] = msgs.Rejected("rejected_by_model", f"message {flows[rows[0]].id!r}: "
                                                                               f"{exc}")
                    return
                half = len(rows) // 2
                await run(rows[:half])
                await run(rows[half:])

        await run(np.arange(len(flows)))
        if not parts:
            return {}, refused
        parts.sort(key=lambda p: int(p[0][0]))
        if len(parts) == 1:
            return parts[0][1], refused
        return {name: np.concatenate([p[1][name] for p in parts]) for name in parts[0][1]}, refused

    async def _infer(self, x: np.ndarray, imputation: list[str | None],
                     held: Sequence[Any]) -> dict[str, np.ndarray]:
        """One request (bulk priority) for the batch; retried while the server is away, holding the messages."""
        attempt = 0
        while True:
            try:
                return await self.client.predict_outputs(x, batch_size=len(x), missing_strategy=imputation,
                                                         priority=contract.PRIORITY_BULK, extractor=DEFAULT_PROFILE)
            except RETRYABLE as exc:
                if isinstance(exc, ModelNotReadyError):
                    self.client._info = None  # a reloaded model may have changed: read it again
                await self._backoff(attempt, exc, held)
                attempt += 1

    async def _backoff(self, attempt: int, exc: MoEClientError, held: Sequence[Any]) -> None:
        """Wait with jittered exponential backoff, keeping ``held`` messages ours (``in_progress``)."""
        self.metrics.backoff(type(exc).__name__)
        # at most a third of AckWait, so the in_progress signals below keep the held flows ours
        cap = min(self.settings.max_backoff_s, self.settings.topology.ack_wait_s / 3)
        delay = random.uniform(0.5, 1.0) * min(cap, 0.2 * 2 ** attempt)
        if attempt == 0 or attempt % 10 == 0:
            self._log(f"Triton unavailable ({type(exc).__name__}: {exc}); holding {len(held)} flows, "
                      f"retrying in {delay:.1f} s")
        for msg in held:
            try:
                await msg.in_progress()
            except Exception:  # noqa: BLE001 - broker away too: redelivery and de-duplication cover it
                break
        await self._sleep(delay)
        if self._stopping.is_set() and held:
            raise asyncio.CancelledError("stopping while Triton is unavailable")

    async def _publish_verdicts(self, good: list[tuple[Any, msgs.FlowInput]],
                                results: dict[str, np.ndarray]) -> None:
        if not good:
            return
        verdicts = msgs.verdicts([f for _, f in good], results, self._info)
        bodies = [msgs.encode_json(verdict) for verdict in verdicts]
        limit = self._nc.max_payload - OUTPUT_OVERHEAD
        if any(len(body) > limit for body in bodies):  # a producer's huge "flow" / "ts": that flow alone is refused
            await self._dead_letter([(msg, msgs.Rejected("verdict_too_large", f"message {flow.id!r}: its verdict "
                                                         f"is {len(body)} bytes, over the broker's max_payload "
                                                         f"({self._nc.max_payload} bytes with headers); send "
                                                         "fewer or shorter \"flow\" fields"))
                                     for (msg, flow), body in zip(good, bodies) if len(body) > limit])
            kept = [i for i, body in enumerate(bodies) if len(body) <= limit]
            good, verdicts, bodies = [good[i] for i in kept], [verdicts[i] for i in kept], [bodies[i] for i in kept]
        out: list[tuple[str, bytes, str]] = []
        severities: list[str | None] = []
        high, review = self.settings.alert_high, self.settings.alert_review
        for (_, flow), verdict, body in zip(good, verdicts, bodies):
            out.append((topology.verdict_subject(flow.sensor), body, topology.VERDICT_ID_PREFIX + flow.id))
            level = msgs.severity(verdict["prediction"], verdict["confidence"], high, review)
            severities.append(level)
            if level is not None:
                out.append((topology.ALERT_HIGH if level == "high" else topology.ALERT_REVIEW,
                            msgs.alert_body(body, level), topology.ALERT_ID_PREFIX + flow.id))
        await self._await_publishes(await self._out.publish_many(out))
        await broker.acknowledge(self._nc, [msg.reply for msg, _ in good])
        now = time.time()
        self.metrics.verdicts_published([v["prediction"] for v in verdicts], severities,
                                        [now - broker.delivery(msg).stored_at for msg, _ in good],
                                        [flow.sensor for _, flow in good],
                                        [v.get("out_of_distribution") for v in verdicts])

    async def _dead_letter(self, rejected: list[tuple[Any, msgs.Rejected]]) -> None:
        out: list[tuple[str, bytes, str]] = []
        for msg, exc in rejected:
            where = broker.delivery(msg)
            try:
                ident = msgs.parse_input(msg.subject, msg.data, (msg.headers or {}).get(topology.MSG_ID_HEADER)).id
            except msgs.Rejected:
                ident = f"seq:{where.stream_seq}"  # stable across redeliveries
            body = msgs.dead_letter(msg.subject, msg.data, exc.reason, exc.detail, where.delivered, where.stream_seq,
                                    max_bytes=self._nc.max_payload - OUTPUT_OVERHEAD)
            out.append((topology.DLQ_SUBJECT, body, topology.DLQ_ID_PREFIX + ident))
        await self._await_publishes(await self._out.publish_many(out))
        for msg, exc in rejected:
            await msg.term()
            self.metrics.dead_lettered(exc.reason)

    async def _await_publishes(self, batch: broker.PublishBatch) -> None:
        """Every publish ack (a duplicate counts: the first copy is stored), or raise and ack nothing."""
        results = await self._out.wait(batch, self.settings.publish_timeout_s)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            self._out.forget(batch)
            raise RuntimeError(f"{len(failed)} of {len(results)} publishes not confirmed ({failed[0]!r})")
        self.metrics.duplicates(sum(1 for duplicate in results if duplicate is True))

    # -- helpers -------------------------------------------------------------------------------------------
    async def _report(self) -> None:
        """The consumer's lag into the metrics every few seconds (the autoscaler's signal), and the progress
        line every ``progress_s``."""
        last_line = time.monotonic()
        while True:
            await asyncio.sleep(LAG_POLL_S)
            try:
                info = await self._js.consumer_info(topology.FLOWS, topology.CONSUMER)
                self.metrics.lag(info.num_pending or 0, info.num_ack_pending or 0)
            except Exception:  # noqa: BLE001 - broker restarting
                pass
            if self.settings.progress_s > 0 and time.monotonic() - last_line >= self.settings.progress_s:
                last_line = time.monotonic()
                self._log(self.metrics.progress_line())

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    @staticmethod
    def _log(text: str) -> None:
        print(f"moe-ids stream: {text}", file=sys.stderr, flush=True)


