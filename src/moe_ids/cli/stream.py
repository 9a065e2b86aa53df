"""``moe-ids stream``: the streaming scorer on NATS JetStream; ``stream publish FILE`` sends a file to it and
``stream bench`` measures it against ``moe-ids score``. The contract is in docs/streaming.md.

More workers = more ``moe-ids stream`` processes: they share the durable consumer ``scorer``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from moe_ids.cli.extractors import add_withhold_argument, withheld_features
from moe_ids.data.extractors import AUTO, COLUMN_EXTRACTORS, RECORD_EXTRACTORS


def register(sub: argparse._SubParsersAction) -> None:
    from moe_ids.streaming import topology
    from moe_ids.streaming.worker import WorkerSettings

    d = WorkerSettings()
    t = topology.TopologySettings()
    p = sub.add_parser("stream", help="score flows from NATS JetStream into verdict, alert and dead-letter streams")
    add_nats(p)
    p.add_argument("--url", default=None, help="Triton gRPC host:port (default 127.0.0.1:8001)")
    p.add_argument("--model", default=d.model_name, help=f"Triton model name (default {d.model_name})")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"flows per micro-batch, one request each (default {d.batch_size})")
    p.add_argument("--batch-wait-ms", type=float, default=d.batch_wait_s * 1000,
                   help=f"how long a partial micro-batch waits for more flows (default {d.batch_wait_s * 1000:g})")
    p.add_argument("--inflight", type=int, default=d.inflight,
                   help=f"micro-batches in flight per worker (default {d.inflight})")
    p.add_argument("--alert-high", type=float, default=d.alert_high,
                   help=f"Attack confidence above which a verdict also goes to alerts.high (default {d.alert_high})")
    p.add_argument("--alert-review", type=float, default=d.alert_review,
                   help=f"... and above which to alerts.review (default {d.alert_review})")
    p.add_argument("--max-deliveries", type=int, default=d.max_deliveries,
                   help=f"dead-letter a flow delivered this often without a verdict (default {d.max_deliveries})")
    p.add_argument("--ack-wait", type=float, default=t.ack_wait_s,
                   help=f"seconds before an unacknowledged flow goes to another worker (default {t.ack_wait_s:g})")
    p.add_argument("--duplicate-window", type=float, default=t.duplicate_window_s,
                   help="seconds the output streams remember message ids; must exceed the redelivery horizon "
                        f"(default {t.duplicate_window_s:g})")
    p.add_argument("--replicas", type=int, default=t.replicas, help="stream replicas (3 on a JetStream cluster)")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve the worker's Prometheus metrics on 127.0.0.1:PORT (0 = any free port)")
    p.add_argument("--metrics-host", default=d.metrics_host,
                   help="interface of the metrics endpoint (default 127.0.0.1; 0.0.0.0 inside a container)")
    p.add_argument("--progress", type=float, default=d.progress_s, help="seconds between progress lines (0 = none)")
    p.add_argument("--idle-exit", type=float, default=None,
                   help="stop after this many seconds without flows once the consumer is drained")
    p.add_argument("--max-runtime", type=float, default=None, help="stop after this many seconds")
    add_withhold_argument(p)
    p.set_defaults(func=run_worker)

    actions = p.add_subparsers(dest="stream_command")
    pub = actions.add_parser("publish", help="publish a flow file (anything `moe-ids score` reads) as input messages")
    pub.add_argument("input", type=Path)
    add_nats(pub, inherited=True)
    pub.add_argument("--sensor", default=topology.DEFAULT_SENSOR, help="sensor name: verdicts go to verdicts.SENSOR")
    pub.add_argument("--id-prefix", default=None, help="message id prefix (default: the file's name)")
    pub.add_argument("--extractor", default=AUTO, choices=(AUTO, *COLUMN_EXTRACTORS, *RECORD_EXTRACTORS),
                     help="what wrote the file (default: detected, as for `moe-ids score`)")
    pub.add_argument("--chunk-rows", type=int, default=16384)
    pub.add_argument("--follow", action="store_true",
                     help="tail a growing Zeek conn.log or Suricata eve.json, sending new records as they appear")
    pub.add_argument("--idle-exit", type=float, default=argparse.SUPPRESS,
                     help="--follow: stop when the file did not grow for this many seconds (default: run until Ctrl-C)")
    pub.set_defaults(func=run_publish)

    bench = actions.add_parser("bench", help="flows/s through the stream with 1, 2, 4 workers vs `moe-ids score`, "
                                             "and end-to-end latency at a fixed rate (starts its own servers)")
    bench.add_argument("--flows", type=int, default=50_000, help="flows per run (default 50000)")
    bench.add_argument("--workers", default="1,2,4", help="worker counts to measure (default 1,2,4)")
    bench.add_argument("--latency-seconds", type=float, default=20.0, help="length of the fixed-rate run")
    bench.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    bench.set_defaults(func=run_bench)


def add_nats(p: argparse.ArgumentParser, inherited: bool = False) -> None:
    """``inherited`` is for a sub-action: argparse copies a sub-parser's defaults over the values already
    parsed, so ``stream --nats URL publish FILE`` would silently go back to the default port unless the
    sub-action leaves the option unset when it is not given there."""
    from moe_ids.streaming import topology

    p.add_argument("--nats", default=argparse.SUPPRESS if inherited else topology.DEFAULT_NATS_URL,
                   help=f"NATS server URL, or a cluster's URLs comma-separated (default {topology.DEFAULT_NATS_URL})")


def run_worker(args: argparse.Namespace) -> int:
    from moe_ids.streaming import topology
    from moe_ids.streaming.worker import ScorerWorker, WorkerSettings

    for name in ("batch_size", "inflight", "max_deliveries", "replicas"):
        if getattr(args, name) < 1:
            print(f"moe-ids stream: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    try:
        settings = WorkerSettings(
            nats_url=args.nats, triton_url=args.url, model_name=args.model, batch_size=args.batch_size,
            batch_wait_s=args.batch_wait_ms / 1000, inflight=args.inflight, alert_high=args.alert_high,
            alert_review=args.alert_review, max_deliveries=args.max_deliveries, metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
            progress_s=args.progress, idle_exit_s=args.idle_exit, max_runtime_s=args.max_runtime,
            withhold=withheld_features(args),
            topology=topology.TopologySettings(replicas=args.replicas, duplicate_window_s=args.duplicate_window,
                                               ack_wait_s=args.ack_wait))
        worker = ScorerWorker(settings)
    except ValueError as exc:
        print(f"moe-ids stream: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(worker.run())


def run_publish(args: argparse.Namespace) -> int:
    from moe_ids.client.flow_files import file_kind
    from moe_ids.streaming.publisher import PublishSettings, publish_file

    if not args.input.exists() and not args.follow:
        print(f"moe-ids stream publish: input file not found: {args.input}", file=sys.stderr)
        return 2
    settings = PublishSettings(nats_url=args.nats, sensor=args.sensor, id_prefix=args.id_prefix,
                               extractor=args.extractor, chunk_rows=args.chunk_rows, follow=args.follow,
                               idle_exit_s=args.idle_exit)
    try:
        if args.follow:
            kind = args.extractor if args.extractor in ("zeek", "suricata") else None
            if kind is None and args.input.exists():
                kind = file_kind(args.input, args.extractor)
            if kind not in ("zeek", "suricata"):
                print("moe-ids stream publish --follow: tails a Zeek conn.log or Suricata eve.json; pass "
                      "--extractor zeek|suricata for a file that does not exist yet", file=sys.stderr)
                return 2
            counts = asyncio.run(_follow(args.input, kind, settings))
        else:
            counts = asyncio.run(publish_file(args.input, settings))
    except (OSError, ValueError, EOFError, RuntimeError) as exc:
        print(f"moe-ids stream publish: {args.input}: {exc}", file=sys.stderr)
        return 1
    line = f"published {counts['published']} messages from {args.input} ({counts.get('extractor', '?')})"
    if counts.get("duplicates"):
        line += f", {counts['duplicates']} already in the stream (same ids)"
    if counts.get("skipped_events"):
        line += f", skipped {counts['skipped_events']} events that are not flows"
    if counts.get("skipped_header_rows"):
        line += f", skipped {counts['skipped_header_rows']} rows that repeat the header line"
    print(line, file=sys.stderr)
    return 0


async def _follow(path: Path, kind: str, settings: object) -> dict:
    import signal

    from moe_ids.streaming.publisher import follow_file

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await follow_file(path, kind, settings, stop)


def run_bench(args: argparse.Namespace) -> int:
    from moe_ids.streaming.bench import run_stream_bench

    workers = [int(w) for w in str(args.workers).split(",") if w.strip()]
    return run_stream_bench(args.flows, workers, args.latency_seconds, args.json)
