"""``moe-ids bench``: served throughput vs the in-process ceiling and a Flask + PyTorch baseline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark Triton serving against the in-process ceiling and a Flask baseline")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per scenario")
    p.add_argument("--model-dir", type=Path, default=None, help="model artifacts (default: models/default)")
    p.add_argument("--no-queue-policy", action="store_true",
                   help="serve without priority levels and queue policies (see `moe-ids repository --help`)")
    p.add_argument("--json", action="store_true", help="print one JSON object (progress goes to stderr)")
    p.add_argument("--output", type=Path, default=None, help="also write the JSON report to this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moe_ids.perf.bench import format_report, run_benchmark

    if args.seconds <= 0:
        print("--seconds: must be > 0", file=sys.stderr)
        return 2
    report = run_benchmark(seconds=args.seconds, model_dir=args.model_dir,
                           log=lambda msg: print(msg, file=sys.stderr, flush=True),
                           queue_policy=not args.no_queue_policy)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report) if args.json else format_report(report))
    return 0
