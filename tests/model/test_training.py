"""Training is deterministic for a seed and writes a complete, pickle-free artifact directory."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from moe_ids.core import artifacts, drift
from moe_ids.data.loading import bundled_data_dir
from moe_ids.model.prediction import drop_features
from moe_ids.model.training import TrainConfig, train

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
                 artifacts.LABELS, artifacts.METADATA, drift.DRIFT_REFERENCE_FILE):
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


def test_augment_draws_other_extractors_missing_patterns():
    from moe_ids.model.training import EXTRACTOR_MASKS, augment

    x = np.ones((400, 70))
    cfg = TrainConfig(clean_fraction=0.0, max_missing=0.0, extractor_fraction=1.0, time_scale_fraction=0.0)
    out = augment(x, cfg, np.random.default_rng(0))
    observed = ~np.isnan(out)
    patterns = {tuple(m) for m in EXTRACTOR_MASKS}
    assert all(tuple(row) in patterns for row in observed)
    assert len({tuple(row) for row in observed}) == len(patterns)  # every extractor's pattern was drawn


def test_augment_stretches_times_and_shrinks_rates_together():
    from moe_ids.core.schema import FEATURE_NAMES
    from moe_ids.model.training import augment

    x = load_table_rows()
    cfg = TrainConfig(clean_fraction=1.0, extractor_fraction=0.0, time_scale_fraction=1.0)
    out = augment(x, cfg, np.random.default_rng(1))
    dur, rate = FEATURE_NAMES.index("Flow Duration"), FEATURE_NAMES.index("Flow Packets/s")
    size = FEATURE_NAMES.index("Total Length of Fwd Packets")
    ok = (x[:, dur] > 0) & (x[:, rate] > 0)
    factor = out[ok, dur] / x[ok, dur]
    assert factor.min() >= 0.5 - 1e-9 and factor.max() <= 2.0 + 1e-9 and factor.std() > 0.1
    np.testing.assert_allclose(out[ok, rate] * out[ok, dur], x[ok, rate] * x[ok, dur], rtol=1e-9)
    np.testing.assert_array_equal(out[:, size], x[:, size])  # sizes are not times


def load_table_rows() -> np.ndarray:
    from moe_ids.data.loading import load_flows

    return load_flows(SMALL[0], nrows=300).features.to_numpy(np.float64)


def test_trust_calibration_is_recorded(two_runs):
    meta = json.loads((two_runs[0] / artifacts.METADATA).read_text())
    from moe_ids.model.trust import DEFAULT_ALPHA

    assert meta["trust"]["alpha"] == DEFAULT_ALPHA and meta["trust"]["calibration_flows"] > 400
    model = artifacts.load_model(two_runs[0])
    knots = model.trust.knots.numpy()
    assert np.all(np.diff(knots) > 0) and knots[0] >= 0  # distances of the validation flows, ascending


def test_trust_input_view_of_the_graph_is_the_calibrated_one(two_runs):
    """The centroids were fitted on ``training.input_view``; the graph must build the same vector, or every
    served trust would be measured in another space than the one calibrated."""
    import torch

    from moe_ids.core.preprocessing import Preprocessor
    from moe_ids.model.prediction import input_view, to_tensors

    model = artifacts.load_model(two_runs[0])
    pre = Preprocessor(artifacts.load_stats(two_runs[0]))
    x = drop_features(load_table_rows(), 0.4, np.random.default_rng(0))
    tab, tmp, mask = to_tensors(pre, x, "zero")
    with torch.no_grad():
        values, missing = (t.numpy() for t in model.grouped_inputs(tab, tmp, mask))
    ref_values, ref_missing = input_view(pre, x)
    np.testing.assert_array_equal(missing, ref_missing)
    observed = missing == 0  # imputed values differ (zero here, the default there) and must not matter
    np.testing.assert_allclose(values[observed], ref_values[observed], atol=1e-6)
    centroids = model.trust.input_centroids.numpy()
    assert centroids.shape[1] == 70 and np.isfinite(centroids).all() and np.abs(centroids).sum() > 0
    from moe_ids.model import trust as trust_mod

    np.testing.assert_allclose(trust_mod.observed_distance(values, missing, centroids),
                               trust_mod.observed_distance(ref_values, ref_missing, centroids), rtol=1e-5, atol=1e-9)
    meta = json.loads((two_runs[0] / artifacts.METADATA).read_text())
    assert meta["trust"]["calibration_flagged_share"] <= 0.025  # alpha on the calibration flows themselves


def test_drift_reference_is_the_training_split_binned(two_runs):
    """Serving's PSI compares traffic with this file: it must be the training split's own bins, written once by
    training (not re-derived later from a corpus that may have changed)."""
    from moe_ids.data.corpus import load_corpus, split_indices

    ref = drift.DriftReference.from_json(two_runs[0] / drift.DRIFT_REFERENCE_FILE)
    corpus = load_corpus(SMALL)
    train_rows = corpus.features[split_indices(corpus, 3)["train"]]
    assert ref.source["flows"] == len(train_rows) and ref.source["split"] == "train"
    expected = drift.build_drift_reference(train_rows)
    assert ref.edges == expected.edges and ref.proportions == expected.proportions
