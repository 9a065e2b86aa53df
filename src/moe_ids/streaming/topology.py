"""The streams, subjects, message ids and the shared consumer of the streaming contract, and their creation.

Other tools publish to ``flows.>`` and read ``verdicts.>``, ``alerts.>`` and ``dlq.>``, so these names are the
contract. Output messages carry ``Nats-Msg-Id`` = a prefix + the input's id: when a worker dies after
publishing a verdict but before acknowledging the input, the redelivered input's verdict has the same id and
JetStream drops it as a duplicate, as long as the redelivery happens within the output stream's
de-duplication window. That window is therefore set well beyond the redelivery horizon (AckWait times the
redeliveries a flow can go through, plus an outage of the scorer), and it is the one setting to raise when a
deployment expects longer outages.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

FLOWS, VERDICTS, ALERTS, DLQ = "FLOWS", "VERDICTS", "ALERTS", "DLQ"
STREAM_SUBJECTS: dict[str, str] = {FLOWS: "flows.>", VERDICTS: "verdicts.>", ALERTS: "alerts.>", DLQ: "dlq.>"}
CONSUMER = "scorer"  # the one durable pull consumer on FLOWS, shared by every worker

FLOWS_PREFIX = "flows"
RECORD_SUBJECTS: dict[str, str] = {"zeek": "flows.zeek", "suricata": "flows.suricata"}  # records sent as is
VERDICT_PREFIX = "verdicts"
ALERT_HIGH, ALERT_REVIEW = "alerts.high", "alerts.review"
DLQ_SUBJECT = "dlq.flows"
DEFAULT_SENSOR = "default"

MSG_ID_HEADER = "Nats-Msg-Id"
VERDICT_ID_PREFIX, ALERT_ID_PREFIX, DLQ_ID_PREFIX = "v:", "a:", "d:"

DEFAULT_NATS_PORT = 4222
DEFAULT_NATS_MONITOR_PORT = 8222
DEFAULT_NATS_URL = f"nats://127.0.0.1:{DEFAULT_NATS_PORT}"


@dataclass(frozen=True)
class TopologySettings:
    """How the streams and the consumer are created (the defaults suit one machine)."""

    replicas: int = 1  # 3 on a JetStream cluster
    duplicate_window_s: float = 3600.0  # must exceed the redelivery horizon, see the module docstring
    ack_wait_s: float = 30.0  # a flow held this long without ack or progress goes to another worker
    max_ack_pending: int = 20_000  # flows in progress over all workers
    max_age_s: float = 7 * 24 * 3600.0  # how long each stream keeps messages

    def __post_init__(self) -> None:
        if self.duplicate_window_s <= 2 * self.ack_wait_s:
            raise ValueError(f"duplicate window {self.duplicate_window_s:g} s must exceed twice the ack wait "
                             f"{self.ack_wait_s:g} s, or redelivered flows could be scored twice")


@lru_cache(maxsize=1024)
def sensor_token(sensor: Any) -> str:
    """A sensor name as one subject token (no dots, wildcards or spaces)."""
    text = str(sensor).strip() if sensor is not None else ""
    token = "".join(c if (c.isalnum() or c in "-_") else "_" for c in text)
    return token or DEFAULT_SENSOR


def verdict_subject(sensor: Any) -> str:
    return f"{VERDICT_PREFIX}.{sensor_token(sensor)}"


@lru_cache(maxsize=1024)
def record_kind(subject: str) -> str | None:
    """``zeek`` / ``suricata`` for a record sent as is on its subject, None for an input message."""
    for kind, prefix in RECORD_SUBJECTS.items():
        if subject == prefix or subject.startswith(prefix + "."):
            return kind
    return None


def subject_sensor(subject: str) -> str | None:
    """The sensor a record subject names (``flows.zeek.<sensor>``), if any."""
    kind = record_kind(subject)
    if kind is None:
        return None
    rest = subject[len(RECORD_SUBJECTS[kind]):].lstrip(".")
    return rest or None


async def ensure_topology(js: Any, settings: TopologySettings | None = None, update: bool = True) -> None:
    """Create the four streams and the shared consumer; with ``update``, bring existing ones to ``settings``.

    Idempotent: every worker calls it at start (JetStream accepts an identical re-creation and an update of a
    stream's window or age, and of the consumer's ack wait and limits); a publisher only creates what is
    missing, so it never undoes the settings the workers were started with.
    """
    settings = settings or TopologySettings()
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
    from nats.js.errors import BadRequestError, NotFoundError

    for name, subject in STREAM_SUBJECTS.items():
        config = StreamConfig(name=name, subjects=[subject], storage=StorageType.FILE, num_replicas=settings.replicas,
                              duplicate_window=settings.duplicate_window_s, max_age=settings.max_age_s)
        try:
            await js.stream_info(name)
        except NotFoundError:
            try:
                await js.add_stream(config)
                continue
            except BadRequestError:  # created by another worker in between
                pass
        if update:
            await js.update_stream(config)
    consumer = ConsumerConfig(durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                              ack_wait=settings.ack_wait_s, max_ack_pending=settings.max_ack_pending,
                              max_deliver=-1, filter_subject=STREAM_SUBJECTS[FLOWS])
    if not update:
        try:
            await js.consumer_info(FLOWS, CONSUMER)
            return
        except NotFoundError:
            pass
    await js.add_consumer(FLOWS, consumer)  # creates, or updates the durable in place (its state is kept)
