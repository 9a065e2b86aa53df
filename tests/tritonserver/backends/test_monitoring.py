"""Monitor arithmetic, with an in-memory stand-in for the Python backend's metric API.

These check the counting, warm-up skipping, emulated histogram and PSI maths without a server; the metrics as
Triton publishes them at /metrics are checked against the real server in test_monitoring_server.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from moe_ids.core import drift
from moe_ids.core.preprocessing import STRATEGIES, PreprocessingStats
from moe_ids.core.schema import FEATURE_NAMES, N_FEATURES
from moe_ids.triton.backends import monitoring as mon


class FakeMetric:
    def __init__(self, family: FakeFamily, labels: dict[str, str]) -> None:
        self.family, self.labels, self.value = family, labels, 0.0
        self.calls = 0

    def increment(self, v: float) -> None:
        assert self.family.kind == "COUNTER" and v >= 0
        self.value += v
        self.calls += 1

    def set(self, v: float) -> None:
        assert self.family.kind == "GAUGE"
        self.value = v
        self.calls += 1


class FakeFamily:
    COUNTER, GAUGE, HISTOGRAM = "COUNTER", "GAUGE", "HISTOGRAM"
    registry: dict[str, FakeFamily] = {}

    def __init__(self, name: str, description: str, kind: str) -> None:
        assert description
        self.name, self.kind, self.metrics = name, kind, {}
        FakeFamily.registry[name] = self

    def Metric(self, labels: dict[str, str]) -> FakeMetric:  # noqa: N802 - mirrors pb_utils
        key = tuple(sorted(labels.items()))
        return self.metrics.setdefault(key, FakeMetric(self, labels))


class FakeApi:
    MetricFamily = FakeFamily


def value(name: str, **labels: str) -> float:
    family = FakeFamily.registry[name]
    metric = family.metrics.get(tuple(sorted(labels.items())))
    return 0.0 if metric is None else metric.value


@pytest.fixture(autouse=True)
def _clean_registry():
    FakeFamily.registry.clear()
    yield


def synthetic_stats(rng: np.random.Generator) -> tuple[PreprocessingStats, np.ndarray]:
    train = rng.lognormal(2.0, 1.0, size=(4000, N_FEATURES))
    train[:, 5] = 0.0  # a point mass, like most CIC flag counters
    return PreprocessingStats.fit(train), train


def test_input_counters_are_exact() -> None:
    rng = np.random.default_rng(0)
    stats, train = synthetic_stats(rng)
    m = mon.Monitor(FakeApi, inputs=True, stats=stats, flush_interval_s=0)
    x = train[:100].astype(np.float32).copy()
    x[:7, 3] = np.nan
    x[10:12, 3] = np.inf
    x[20, 8] = np.nan
    x[30:35, 9] = stats.maximum[9] * 10  # above the training range
    x[40, 9] = -1.0  # below (training values are positive)
    codes = np.zeros(100, dtype=np.int64)
    codes[:5] = 1  # mean for five of the rows with a missing value
    m.observe_inputs(x, codes)
    m.observe_inputs(x[:3], 2)  # scalar strategy code for a whole execution
    m.flush()
    assert value(mon.FLOWS) == 103
    assert value(mon.MISSING_VALUES, feature=FEATURE_NAMES[3]) == 9 + 3
    assert value(mon.MISSING_VALUES, feature=FEATURE_NAMES[8]) == 1
    assert value(mon.MISSING_VALUES, feature=FEATURE_NAMES[0]) == 0
    assert value(mon.IMPUTED_FLOWS, strategy="mean") == 5
    assert value(mon.IMPUTED_FLOWS, strategy="zero") == 10 - 5  # rows 5..6, 10, 11, 20
    assert value(mon.IMPUTED_FLOWS, strategy="median") == 3
    assert value(mon.OUT_OF_RANGE, feature=FEATURE_NAMES[9]) == 6
    assert value(mon.OUT_OF_RANGE, feature=FEATURE_NAMES[3]) == 0  # missing is not out of range
    m.flush()  # nothing pending: no change, no calls for unchanged series
    assert value(mon.FLOWS) == 103
    assert sorted(FakeFamily.registry[mon.IMPUTED_FLOWS].metrics) == sorted(
        (("strategy", s),) for s in STRATEGIES)
    m.close()


def test_warmup_rows_are_not_counted() -> None:
    m = mon.Monitor(FakeApi, inputs=True, flush_interval_s=0, warmup_flows=1 + 4)
    zeros = np.zeros((1, N_FEATURES), np.float32)
    m.observe_inputs(zeros, 2)
    m.observe_inputs(np.zeros((4, N_FEATURES), np.float32), 2)
    m.observe_inputs(zeros, 2)  # warm-up budget spent: an all-zero flow now is traffic
    m.flush()
    assert value(mon.FLOWS) == 1


def test_warmup_ends_at_first_real_row() -> None:
    m = mon.Monitor(FakeApi, inputs=True, flush_interval_s=0, warmup_flows=100)
    x = np.zeros((5, N_FEATURES), np.float32)
    x[2:, 0] = 1.0
    m.observe_inputs(x, 2)
    m.observe_inputs(np.zeros((2, N_FEATURES), np.float32), 2)
    m.flush()
    assert value(mon.FLOWS) == 3 + 2


def test_outputs_histogram_and_predictions() -> None:
    m = mon.Monitor(FakeApi, outputs=True, flush_interval_s=0)
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]], np.float32)
    temporal = np.array([0.05, 0.5, 0.55, 1.0])
    gating = np.stack([1 - temporal, temporal], axis=1).astype(np.float32)
    m.observe_outputs(probs, gating)
    m.observe_outputs(probs[:1], gating[:1])
    m.flush()
    assert value(mon.PREDICTIONS, predicted_class="Attack") == 2
    assert value(mon.PREDICTIONS, predicted_class="Normal") == 3
    bucket = f"{mon.GATING_WEIGHT}_bucket"
    assert value(bucket, le="0.05") == 2
    assert value(bucket, le="0.1") == 2
    assert value(bucket, le="0.5") == 3
    assert value(bucket, le="0.6") == 4
    assert value(bucket, le="0.95") == 4
    assert value(bucket, le="1") == 5
    assert value(bucket, le="+Inf") == 5
    assert value(f"{mon.GATING_WEIGHT}_count") == 5
    assert value(f"{mon.GATING_WEIGHT}_sum") == pytest.approx(float(temporal.sum() + temporal[0]), rel=1e-6)


def test_out_of_distribution_flows_are_counted_per_predicted_class() -> None:
    m = mon.Monitor(FakeApi, outputs=True, flush_interval_s=0, warmup_flows=1)
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]], np.float32)
    gating = np.full((5, 2), 0.5, np.float32)
    ood = np.array([[True], [True], [True], [False], [False]])
    inputs = np.ones((5, 3), np.float32)
    inputs[0] = 0.0  # the warm-up sample: not counted, whatever its flag
    m.observe_outputs(probs, gating, inputs, ood)
    m.observe_outputs(probs[1:2], gating[1:2], None, ood[1:2])
    m.observe_outputs(probs[2:3], gating[2:3])  # a model without a trust score: nothing flagged
    m.flush()
    assert value(mon.OUT_OF_DISTRIBUTION_FLOWS, predicted_class="Normal") == 2
    assert value(mon.OUT_OF_DISTRIBUTION_FLOWS, predicted_class="Attack") == 1
    assert value(mon.PREDICTIONS, predicted_class="Attack") == 3


def test_outputs_skip_warmup_by_inputs() -> None:
    m = mon.Monitor(FakeApi, outputs=True, flush_interval_s=0, warmup_flows=2)
    probs = np.array([[0.1, 0.9]] * 3, np.float32)
    gating = np.array([[0.5, 0.5]] * 3, np.float32)
    inputs = np.zeros((3, 4), np.float32)
    inputs[2] = 1.0
    m.observe_outputs(probs, gating, inputs)
    m.flush()
    assert value(mon.PREDICTIONS, predicted_class="Attack") == 1


def test_reference_bins_and_psi() -> None:
    rng = np.random.default_rng(1)
    _, train = synthetic_stats(rng)
    ref = drift.build_drift_reference(train, bins=10)
    assert ref.feature_names == list(FEATURE_NAMES)
    assert ref.edges[5] == [0.0] and ref.proportions[5] == [1.0, 0.0]  # point mass: one edge, not ten
    assert all(abs(sum(p) - 1) < 1e-9 for p in ref.proportions)
    counter = mon.BinCounter(ref)
    same = counter.psi(counter.count(rng.lognormal(2.0, 1.0, size=(20000, N_FEATURES))))
    shifted = counter.psi(counter.count(rng.lognormal(3.0, 1.0, size=(20000, N_FEATURES))))
    assert np.all(same[np.arange(N_FEATURES) != 5] < 0.02)
    assert np.all(shifted[np.arange(N_FEATURES) != 5] > 0.25)
    # the vectorised bins agree with a per-feature searchsorted
    x = rng.lognormal(2.0, 1.0, size=(50, N_FEATURES))
    x[3, 7] = np.nan
    counts = counter.count(x)
    for f in (0, 7, 69):
        expected = np.bincount(np.searchsorted(ref.edges[f], x[np.isfinite(x[:, f]), f], side="left"),
                               minlength=len(ref.edges[f]) + 1)
        assert counts[f, :len(expected)].tolist() == expected.tolist()
    # the gauge's PSI is the textbook sum over bins of (actual - expected) * ln(actual / expected)
    n_bins = len(ref.proportions[0])
    actual = np.maximum(counts[0, :n_bins] / counts[0, :n_bins].sum(), mon.PSI_EPSILON)
    expected = np.maximum(np.asarray(ref.proportions[0]), mon.PSI_EPSILON)
    assert counter.psi(counts)[0] == pytest.approx(np.sum((actual - expected) * np.log(actual / expected)))


def test_psi_gauge_published_after_min_flows(tmp_path) -> None:
    rng = np.random.default_rng(2)
    stats, train = synthetic_stats(rng)
    ref = drift.build_drift_reference(train, feature_names=FEATURE_NAMES[:3])
    ref.to_json(tmp_path / drift.DRIFT_REFERENCE_FILE)
    ref = drift.DriftReference.from_json(tmp_path / drift.DRIFT_REFERENCE_FILE)
    m = mon.Monitor(FakeApi, inputs=True, stats=stats, reference=ref, flush_interval_s=0, drift_min_flows=1000,
                    drift_window_flows=4000, drift_sample_rows=10_000)
    m.observe_inputs(train[:999] * 20, 2)
    m.flush()
    assert value(mon.FEATURE_PSI, feature=FEATURE_NAMES[0]) == 0.0  # too few flows yet
    m.observe_inputs(train[999:2000] * 20, 2)
    m.flush()
    assert value(mon.FEATURE_PSI, feature=FEATURE_NAMES[0]) > 1.0
    assert value(mon.DRIFT_WINDOW) == 2000
    m.observe_inputs(train[2000:4000] * 20, 2)
    m.flush()
    assert value(mon.DRIFT_WINDOW) == 4000
    m.observe_inputs(train[:10], 2)
    m.flush()
    assert value(mon.DRIFT_WINDOW) == 2000 + 10  # halved past the window size


def test_reference_rejects_unknown_feature(tmp_path) -> None:
    path = tmp_path / "ref.json"
    path.write_text(json.dumps({"feature_names": ["Nope"], "edges": [[]], "proportions": [[1.0]]}))
    with pytest.raises(ValueError, match="Nope"):
        drift.DriftReference.from_json(path)


def test_background_flush_and_close() -> None:
    m = mon.Monitor(FakeApi, outputs=True, flush_interval_s=0.01)
    m.observe_outputs(np.array([[0.1, 0.9]], np.float32), np.array([[0.3, 0.7]], np.float32))
    m.close()  # joins the thread and publishes anything left
    assert value(mon.PREDICTIONS, predicted_class="Attack") == 1


def test_from_triton_args_reads_warmup_and_switch() -> None:
    config = {"parameters": {"metrics_flush_interval_s": {"string_value": "0"}},
              "model_warmup": [{"batch_size": 1}, {"batch_size": 1024, "count": 2}]}
    m = mon.Monitor.from_triton_args({"model_config": json.dumps(config)}, FakeApi, inputs=True)
    assert m._warmup_left == 1 + 2048 and m._thread is None
    args = {"model_config": json.dumps(config), "model_instance_name": "moe_ids_preprocess_0_1"}
    rng = np.random.default_rng(4)
    ref = drift.build_drift_reference(rng.lognormal(size=(100, N_FEATURES)), feature_names=FEATURE_NAMES[:1])
    mon.Monitor.from_triton_args(args, FakeApi, inputs=True, reference=ref)
    assert value(mon.DRIFT_WINDOW, model_instance="moe_ids_preprocess_0_1") == 0
    assert (("feature", FEATURE_NAMES[0]), ("model_instance", "moe_ids_preprocess_0_1")) in \
        FakeFamily.registry[mon.FEATURE_PSI].metrics
    config["parameters"]["metrics"] = {"string_value": "false"}
    off = mon.Monitor.from_triton_args({"model_config": json.dumps(config)}, FakeApi, inputs=True)
    off.observe_inputs(np.ones((2, N_FEATURES), np.float32), 2)
    assert not off.inputs


def test_drift_samples_large_executions() -> None:
    rng = np.random.default_rng(3)
    _, train = synthetic_stats(rng)
    ref = drift.build_drift_reference(train, feature_names=FEATURE_NAMES[:2])
    m = mon.Monitor(FakeApi, inputs=True, reference=ref, flush_interval_s=0, drift_sample_rows=100)
    m.observe_inputs(train[:1000], 2)  # strided down to 100 rows
    m.observe_inputs(train[:30], 2)  # small executions are kept whole
    m.flush()
    assert value(mon.FLOWS) == 1030
    assert value(mon.DRIFT_WINDOW) == 130


def test_admission_refusals_waits_and_queue_depth() -> None:
    m = mon.Monitor(FakeApi, admission=True, flush_interval_s=0, instance="moe_ids_0")
    m.observe_admission(refused_on_arrival=1)
    m.observe_admission(refused_on_arrival=1)
    m.observe_admission(refused_in_queue=2, queued_flows=3072, waits_ns=np.array([100_000_000, 300_000_000]))
    m.flush()
    assert value(mon.ADMISSION_REFUSALS, when="on_arrival") == 2
    assert value(mon.ADMISSION_REFUSALS, when="in_queue") == 2
    assert value(f"{mon.QUEUE_WAIT}_sum") == pytest.approx(0.4)
    assert value(f"{mon.QUEUE_WAIT}_count") == 2
    assert value(mon.QUEUED_FLOWS, model_instance="moe_ids_0") == 3072
    m.observe_admission(queued_flows=0)
    m.flush()
    assert value(mon.QUEUED_FLOWS, model_instance="moe_ids_0") == 0
    assert value(f"{mon.QUEUE_WAIT}_count") == 2  # counters only grow by what is new
    m.close()
