"""Fixtures for the export tests: one trained model per session, exported once.

The default artifact (``models/default``) is copied when it is complete and loads, so the tests never write
into the directory a running server reads; otherwise a small model is trained (2 epochs on the bundled
corpus, whose test split the checks need) in a temporary directory.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from moe_ids.core import artifacts

ARTIFACT_FILES = (artifacts.WEIGHTS, artifacts.MODEL_CONFIG, artifacts.FEATURE_SCHEMA, artifacts.PREPROCESSING,
                  artifacts.LABELS, artifacts.METADATA)


def _copy_default(target: Path) -> bool:
    source = artifacts.default_model_dir()
    if not all((source / name).is_file() for name in ARTIFACT_FILES):
        return False
    target.mkdir(parents=True, exist_ok=True)
    for name in ARTIFACT_FILES:
        shutil.copy2(source / name, target / name)
    try:
        artifacts.load_model(target)
        meta = artifacts.read_json(target / artifacts.METADATA)
        return "test_indices_digest" in meta.get("training_data", {})
    except Exception:  # half-written or stale (other schema) default model: train a fresh one instead
        return False


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained artifact directory (no ONNX files yet) owned by this test session."""
    target = tmp_path_factory.mktemp("model")
    if not _copy_default(target):
        from moe_ids.model.training import TrainConfig, train

        shutil.rmtree(target)
        target.mkdir()
        train(target, TrainConfig(epochs=2), log=lambda _: None)
    return target


@dataclass
class Exported:
    model_dir: Path
    fp32: Path
    int8: Path
    integer_ops: dict
    held: object  # moe_ids.export.verify.HeldOut
    reference: dict  # PyTorch outputs on ``held``


@pytest.fixture(scope="session")
def exported(model_dir: Path) -> Exported:
    from moe_ids.export import onnx_export, quantize, verify

    fp32 = onnx_export.export_onnx(model_dir, exporter="dynamo")  # the fallback must not hide a failure
    int8 = model_dir / artifacts.ONNX_INT8
    ops = quantize.quantize_int8(fp32, int8)
    held = verify.held_out_flows(model_dir)
    return Exported(model_dir, fp32, int8, ops, held, verify.torch_outputs(model_dir, held))
