"""``moe-ids evaluate``: held-out figures of the MoE and of a tree baseline, with the missing-feature curve."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from moe_ids.cli.extractors import add_withhold_argument, withheld_features


def parse_fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--missing: expected comma-separated fractions, got {text!r}") from exc
    if not values or any(not 0.0 <= v < 1.0 for v in values):
        raise argparse.ArgumentTypeError("--missing: fractions must lie in [0, 1)")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate on labelled CIC-IDS2017 flows (held-out split by default)")
    p.add_argument("--data", type=Path, default=None,
                   help="labelled flows: a CSV of any supported extractor, or a Zeek conn.log with label fields "
                        "(default: held-out split of the bundled corpus)")
    p.add_argument("--label", default=None,
                   help="label every flow of --data with this (e.g. 'PortScan' for a capture of an nmap scan), "
                        "replacing any label column it has")
    p.add_argument("--model-dir", type=Path, default=None)
    p.add_argument("--missing", type=parse_fractions, default="0,0.25,0.5,0.75",
                   help="fractions of features removed at random per flow (default 0,0.25,0.5,0.75)")
    p.add_argument("--no-baseline", action="store_true", help="skip the gradient-boosted-tree baseline")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", type=Path, default=None, help="write a reliability + tolerance plot (PNG)")
    p.add_argument("--seed", type=int, default=2017)
    add_withhold_argument(p)
    p.add_argument("--extractor", default=None,
                   help="extractor profile of --data (default: detected from its columns; see `moe-ids extractors`)")
    p.add_argument("--leave-one-out", action="store_true",
                   help="also train a model without each extraction of the corpus and test it on that extraction")
    p.add_argument("--leave-out", action="append", default=[], metavar="EXTRACTION",
                   help="like --leave-one-out for the named extraction only (repeatable)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs of the leave-one-out models")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    import numpy as np

    from moe_ids.core.artifacts import default_model_dir
    from moe_ids.data.corpus import load_corpus
    from moe_ids.model.evaluation import evaluate, format_report, leave_one_out, plot_report

    missing = args.missing if isinstance(args.missing, tuple) else parse_fractions(args.missing)
    try:
        result = evaluate(args.model_dir or default_model_dir(), args.data, missing, args.seed,
                          with_baseline=not args.no_baseline, extractor=args.extractor,
                          withhold=withheld_features(args), label=args.label)
    except (ValueError, OSError, EOFError) as exc:  # the data cannot be evaluated: say why, no traceback
        where = f"{args.data}: " if args.data is not None and str(args.data) not in str(exc) else ""
        print(f"moe-ids evaluate: {where}{exc}", file=sys.stderr)
        return 2
    left_out = list(args.leave_out)
    if args.leave_one_out:
        left_out += [e for e in sorted(set(np.unique(load_corpus().extraction).tolist())) if e not in left_out]
    if left_out:
        result["leave_one_out"] = [leave_one_out(e, args.seed, args.epochs, log=lambda m: print(m, file=sys.stderr))
                                   for e in left_out]
    if args.plot:
        plot_report(result, args.plot)
    print(json.dumps(result) if args.json else format_report(result))
    return 0
