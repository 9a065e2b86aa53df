"""``moe-ids importance``: which features matter, per expert group, and what F1 K features keep."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("importance", help="permutation importance and top-K feature analysis")
    p.add_argument("--data", type=Path, default=None,
                   help="labelled CSV in either format (default: held-out split of the bundled corpus)")
    p.add_argument("--model-dir", type=Path, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--k", type=str, default="5,10,15,20,30,45", help="comma-separated K values")
    p.add_argument("--top", type=int, default=20, help="features to list in the text report")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moe_ids.core.artifacts import default_model_dir
    from moe_ids.model.importance import feature_importance, format_importance

    ks = tuple(int(v) for v in args.k.split(",") if v.strip())
    result = feature_importance(args.model_dir or default_model_dir(), args.data, args.repeats, ks=ks)
    print(json.dumps(result) if args.json else format_importance(result, args.top))
    return 0
