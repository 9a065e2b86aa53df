"""Training is deterministic for a seed and writes a complete, pickle-free artifact directory."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from moe_ids import artifacts
from moe_ids.data import bundled_data_dir
from moe_ids.training import TrainConfig, drop_features, train

SMALL = [bundled_data_dir() / "cicids2017-original" / "orig_Tuesday_head4998_binarylabel.csv.gz"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    cfg = TrainConfig(epochs=2, seed=3)
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    train(a, cfg, SMALL, log=lambda _: None)
    train(b, cfg, SMALL, log=lambda _: None)
    return a, b


def test_same_seed_same_weights(two_runs):
    a, b = (load_file(str(d / artifacts.WEIGHTS)) for d in two_runs)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k


def test_artifact_directory_is_complete(two_runs):
    d = two_runs[0]
    for name in (artifacts.WEIGHTS, artifacts.MODEL_CONFIG, artifacts.FEATURE_SCHEMA, artifacts.PREPROCESSING,
                 artifacts.LABELS, artifacts.METADATA):
        assert (d / name).exists(), name
    meta = json.loads((d / artifacts.METADATA).read_text())
    assert len(meta["training_data"]["sha256"]) == 64
    assert meta["input_schema"]["shape"] == [-1, 70]
    assert "torch" in meta["dependencies"]
    model = artifacts.load_model(d)
    assert not model.training


def test_drop_features_removes_exact_share():
    x = np.ones((50, 70))
    out = drop_features(x, 0.5, np.random.default_rng(0))
    assert (np.isnan(out).sum(axis=1) == 35).all()
    assert not np.isnan(x).any()
