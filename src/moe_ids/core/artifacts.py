"""The model artifact directory: what training writes and export, serving and evaluation read.

Layout (all plain files; weights in safetensors, which load without executing pickled code)::

    weights.safetensors   model parameters
    model_config.json     MoEConfig
    feature_schema.json   feature list, groups, aliases, dropped columns
    preprocessing.json    PreprocessingStats (imputation fills, scaling, clipping, training range)
    labels.json           binary labels and attack families, in head order
    metadata.json         version, date, data hash, metrics, dependency versions, input schema
    model.onnx            fp32 ONNX (written by export)
    model.int8.onnx       dynamically quantised ONNX (written by export)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moe_ids.core import contract
from moe_ids.core.labels import BINARY_LABELS, FAMILIES
from moe_ids.core.preprocessing import PreprocessingStats
from moe_ids.core.schema import FEATURE_NAMES, schema_dict

if TYPE_CHECKING:
    from moe_ids.model.network import MixtureOfExperts

WEIGHTS = "weights.safetensors"
MODEL_CONFIG = "model_config.json"
FEATURE_SCHEMA = "feature_schema.json"
PREPROCESSING = contract.STATS_FILE  # the name the Triton backends load it by
LABELS = "labels.json"
METADATA = "metadata.json"
ONNX_FP32 = "model.onnx"
ONNX_INT8 = "model.int8.onnx"
TRT_PLAN = "model.plan"


def project_root() -> Path:
    """The checkout's root (holds pyproject.toml); artifacts and generated repositories live below it."""
    env = os.environ.get("MOE_IDS_HOME")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists():
            return parent
    return Path.cwd()


def default_model_dir() -> Path:
    return project_root() / "models" / "default"


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_static_files(model_dir: Path, stats: PreprocessingStats) -> None:
    """Schema, statistics and labels: the numbers that must travel with the weights."""
    model_dir.mkdir(parents=True, exist_ok=True)
    write_json(model_dir / FEATURE_SCHEMA, schema_dict())
    stats.to_json(model_dir / PREPROCESSING)
    write_json(model_dir / LABELS, {"binary": list(BINARY_LABELS), "family": list(FAMILIES)})


def load_stats(model_dir: Path) -> PreprocessingStats:
    return PreprocessingStats.from_json(Path(model_dir) / PREPROCESSING)


def check_schema(model_dir: Path) -> None:
    """Refuse an artifact whose feature list differs from this code's: that would be silent skew."""
    stored = [f["name"] for f in read_json(Path(model_dir) / FEATURE_SCHEMA)["features"]]
    if tuple(stored) != FEATURE_NAMES:
        raise ValueError(f"{model_dir}: feature schema differs from the installed code's schema")


def load_model(model_dir: Path) -> MixtureOfExperts:
    """The trained torch model in eval mode (needs the train extra)."""
    from safetensors.torch import load_file

    from moe_ids.model.network import MixtureOfExperts, MoEConfig

    model_dir = Path(model_dir)
    check_schema(model_dir)
    config = MoEConfig(**read_json(model_dir / MODEL_CONFIG))
    model = MixtureOfExperts(config)
    model.load_state_dict(load_file(str(model_dir / WEIGHTS)))
    model.eval()
    return model
