"""Making sure a model is there to serve: train and export the default model when it is missing.

``moe-ids serve`` and the test fixture both start from a clean clone. Training and export write one shared
directory, so concurrent starters (several test sessions, a server) take an exclusive file lock first and the
second one finds the work done.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable
from pathlib import Path

from moe_ids.core import artifacts


def ensure_model(model_dir: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """The model directory, with weights (trained if absent) and model.onnx (exported if absent)."""
    model_dir = Path(model_dir) if model_dir else artifacts.default_model_dir()
    if (model_dir / artifacts.ONNX_FP32).is_file() and (model_dir / artifacts.PREPROCESSING).is_file():
        return model_dir
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(model_dir.parent / f".{model_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (model_dir / artifacts.METADATA).is_file():
            from moe_ids.model.training import train

            log(f"no trained model in {model_dir}: training the default model (about a minute on 2 cores)")
            train(model_dir)
        if not (model_dir / artifacts.ONNX_FP32).is_file():
            from moe_ids.export.onnx_export import export_onnx

            log(f"exporting {model_dir / artifacts.ONNX_FP32}")
            export_onnx(model_dir)
    return model_dir
