"""The streaming scorer: flows in on NATS JetStream, verdicts, alerts and dead letters out.

``topology`` holds the contract other tools rely on (stream and subject names, message ids, the shared
consumer), ``messages`` turns input messages into feature rows and verdicts into output messages, ``worker``
runs the fetch -> score -> publish -> ack loop, ``publisher`` sends files as input messages,
``nats_server`` starts a local JetStream server and ``bench`` measures the stream against ``moe-ids score``.
Nothing here is tied to NATS but ``worker``'s broker calls and ``topology.ensure_topology``, so a Kafka
adapter would replace those and keep the rest.
"""
