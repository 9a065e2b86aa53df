"""``moe-ids export``: fp32 ONNX, INT8 ONNX and (where possible) a TensorRT plan, each checked against PyTorch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the trained model to ONNX (fp32, INT8) and TensorRT, and verify them")
    p.add_argument("--model-dir", type=Path, default=None, help="artifact directory (default: models/default)")
    p.add_argument("--skip-int8", action="store_true", help="do not write model.int8.onnx")
    p.add_argument("--tensorrt", choices=("auto", "require", "skip"), default="auto",
                   help="auto: build model.plan when TensorRT and a CUDA GPU exist, else say why not; "
                        "require: fail without them; skip: do not try (default: auto)")
    p.add_argument("--max-batch-size", type=int, default=1024,
                   help="largest batch of the TensorRT optimization profile (default: 1024)")
    p.add_argument("--bench-seconds", type=float, default=4.0,
                   help="seconds of the fp32 vs INT8 in-process throughput comparison; 0 to skip (default: 4)")
    p.add_argument("--data", type=Path, nargs="*", default=None,
                   help="the labelled CSVs the model was trained on, when not the bundled corpus "
                        "(the checks recompute its held-out test split from them)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moe_ids.core.artifacts import default_model_dir
    from moe_ids.export.pipeline import REPORT, run_export
    from moe_ids.export.verify import VerificationError

    model_dir = args.model_dir or default_model_dir()
    if not (model_dir / "metadata.json").is_file():
        print(f"moe-ids export: {model_dir} holds no trained model (run `moe-ids train` first)", file=sys.stderr)
        return 2
    try:
        report = run_export(model_dir, int8=not args.skip_int8, tensorrt=args.tensorrt,
                            max_batch_size=args.max_batch_size, bench_seconds=args.bench_seconds,
                            data=args.data or None)
    except (VerificationError, RuntimeError, ValueError) as exc:
        print(f"moe-ids export: FAILED: {exc} (details in {model_dir / REPORT})", file=sys.stderr)
        return 1
    print(f"export passed in {report['seconds']} s; report: {model_dir / REPORT}")
    return 0
