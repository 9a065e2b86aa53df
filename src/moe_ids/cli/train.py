"""``moe-ids train``: train the MoE on labelled CIC-IDS2017 CSVs and write the artifact directory."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the MoE and write a model artifact directory")
    p.add_argument("--output", type=Path, default=None, help="artifact directory (default: models/default)")
    p.add_argument("--data", type=Path, nargs="*", default=None,
                   help="labelled CSVs (default: the bundled real CIC-IDS2017 sample)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moe_ids.core.artifacts import default_model_dir
    from moe_ids.model.training import TrainConfig, train

    cfg = TrainConfig()
    for field in ("seed", "epochs", "threads"):
        if getattr(args, field) is not None:
            setattr(cfg, field, getattr(args, field))
    train(args.output or default_model_dir(), cfg, args.data)
    return 0
