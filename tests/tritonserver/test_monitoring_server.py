"""The model's custom metrics as the real tritonserver publishes them at /metrics, after known requests.

Each test waits until the counters stop moving (the monitor flushes once a second, and earlier tests may have
left counts pending), sends real held-out flows with a known number of missing and out-of-range values, and
checks the exact change of every affected series.
"""

from __future__ import annotations

import math
import re
import time
import urllib.request
from collections.abc import Callable

import numpy as np
import pytest

from moe_ids.core import artifacts
from moe_ids.core.contract import (
    ENSEMBLE_MODEL,
    GATING,
    INPUT_FEATURES,
    INPUT_IMPUTATION,
    PREDICTED_CLASS,
    PROBABILITIES,
)
from moe_ids.core.preprocessing import STRATEGIES
from moe_ids.core.schema import FEATURE_NAMES
from moe_ids.triton.backends import monitoring as mon

pytestmark = pytest.mark.integration

Series = dict[tuple[str, frozenset], float]
_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(metrics_url: str) -> Series:
    with urllib.request.urlopen(f"http://{metrics_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: Series = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and not line.startswith("#"):
            labels = frozenset(_LABEL.findall(m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def get(series: Series, name: str, **labels: str) -> float:
    """Sum of the series of ``name`` carrying ``labels`` (gauges have one series per model instance)."""
    wanted = set(labels.items())
    return sum(v for (n, lab), v in series.items() if n == name and wanted <= lab)


def settled(metrics_url: str) -> Series:
    """A scrape taken once the model metrics have stopped changing (nothing left to flush)."""
    previous = scrape(metrics_url)
    for _ in range(20):
        time.sleep(mon.DEFAULT_FLUSH_INTERVAL_S * 1.3)
        current = scrape(metrics_url)
        if {k: v for k, v in current.items() if k[0].startswith("moe_ids_")} == \
                {k: v for k, v in previous.items() if k[0].startswith("moe_ids_")}:
            return current
        previous = current
    raise AssertionError("moe_ids metrics kept changing with no traffic")


def wait_for(metrics_url: str, condition: Callable[[Series], bool], timeout: float = 15.0) -> Series:
    deadline = time.monotonic() + timeout
    while True:
        series = scrape(metrics_url)
        if condition(series) or time.monotonic() > deadline:
            return series
        time.sleep(0.2)


@pytest.fixture(scope="module")
def held_out_flows() -> np.ndarray:
    """Real CIC-IDS2017 flows of the default model's held-out test split."""
    from moe_ids.data.corpus import model_split

    corpus, split = model_split(artifacts.default_model_dir())
    test = split["test"]
    # Shuffled: the split lists rows in file order, whose first few hundred are all normal traffic.
    return corpus.features[np.random.default_rng(0).permutation(test)].astype(np.float32)


def infer(grpc_url: str, features: np.ndarray, strategy: str | None = None) -> dict[str, np.ndarray]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(grpc_url)
    inputs = [grpcclient.InferInput(INPUT_FEATURES, list(features.shape), "FP32")]
    inputs[0].set_data_from_numpy(features)
    if strategy is not None:
        inputs.append(grpcclient.InferInput(INPUT_IMPUTATION, [features.shape[0], 1], "BYTES"))
        inputs[1].set_data_from_numpy(np.full((features.shape[0], 1), strategy.encode(), dtype=object))
    result = client.infer(ENSEMBLE_MODEL, inputs)
    client.close()
    return {name: result.as_numpy(name) for name in (PROBABILITIES, GATING, PREDICTED_CLASS)}


def test_input_metrics_count_missing_imputed_and_out_of_range(triton_server, held_out_flows) -> None:
    stats = artifacts.load_stats(triton_server.repository / "moe_ids_preprocess" / "1")
    rng = np.random.default_rng(11)
    x = held_out_flows[rng.choice(len(held_out_flows), 40, replace=False)].copy()
    feature = 13  # Flow Bytes/s: NaN/Infinity in the wild for zero-duration flows
    x[:7, feature] = np.nan
    x[7:9, feature] = np.inf  # infinite counts as missing, like the preprocessing
    x[20:23, 4] = np.float32(stats.maximum[4]) * 4  # far above the training range
    expected_missing = (~np.isfinite(x)).sum(axis=0)
    rows_with_missing = int((~np.isfinite(x)).any(axis=1).sum())
    finite = np.isfinite(x)
    low, high = np.float32(stats.minimum), np.float32(stats.maximum)
    expected_oor = (finite & ((x < low) | (x > high))).sum(axis=0)
    assert expected_oor[4] >= 3

    before = settled(triton_server.metrics_url)
    infer(triton_server.grpc_url, x[:25], "mean")
    infer(triton_server.grpc_url, x[25:])  # default strategy (median)
    after = wait_for(triton_server.metrics_url,
                     lambda s: get(s, mon.FLOWS) - get(before, mon.FLOWS) >= 40)

    def delta(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    assert delta(mon.FLOWS) == 40
    for f, name in enumerate(FEATURE_NAMES):
        assert delta(mon.MISSING_VALUES, feature=name) == expected_missing[f], name
        assert delta(mon.OUT_OF_RANGE, feature=name) == expected_oor[f], name
    assert delta(mon.MISSING_VALUES, feature=FEATURE_NAMES[feature]) >= 9
    mean_rows = int((~np.isfinite(x[:25])).any(axis=1).sum())
    assert delta(mon.IMPUTED_FLOWS, strategy="mean") == mean_rows
    assert delta(mon.IMPUTED_FLOWS, strategy="median") == rows_with_missing - mean_rows
    assert delta(mon.IMPUTED_FLOWS, strategy="zero") == 0
    assert {get(after, mon.IMPUTED_FLOWS, strategy=s) >= 0 for s in STRATEGIES} == {True}


def test_output_metrics_count_predictions_and_gating(triton_server, held_out_flows) -> None:
    x = held_out_flows[:300]
    before = settled(triton_server.metrics_url)
    results = [infer(triton_server.grpc_url, x[i:i + 100]) for i in range(0, 300, 100)]
    predicted = np.concatenate([r[PREDICTED_CLASS] for r in results]).reshape(-1)
    temporal = np.concatenate([r[GATING] for r in results])[:, 1].astype(np.float32)
    bucket = f"{mon.GATING_WEIGHT}_bucket"
    after = wait_for(triton_server.metrics_url,
                     lambda s: get(s, bucket, le="+Inf") - get(before, bucket, le="+Inf") >= 300)

    def delta(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    assert delta(mon.PREDICTIONS, predicted_class="Attack") == int((predicted == 1).sum())
    assert delta(mon.PREDICTIONS, predicted_class="Normal") == int((predicted == 0).sum())
    assert 0 < (predicted == 1).sum() < 300  # the held-out flows hold both classes
    for le in mon.GATING_BUCKETS:
        assert delta(bucket, le=f"{le:g}") == int((temporal <= np.float32(le)).sum()), le
    assert delta(bucket, le="+Inf") == 300
    assert delta(f"{mon.GATING_WEIGHT}_count") == 300
    assert delta(f"{mon.GATING_WEIGHT}_sum") == pytest.approx(float(temporal.sum(dtype=np.float64)), rel=1e-4)


def test_drift_gauges_for_held_out_traffic(triton_server, held_out_flows) -> None:
    reference = mon.load_drift_reference(triton_server.repository / "moe_ids_preprocess" / "1")
    assert reference is not None and reference.source["split"] == "train"
    before = settled(triton_server.metrics_url)
    for i in range(0, 1024, 128):  # 1,024 flows: every row is kept for the PSI at 128 per execution
        infer(triton_server.grpc_url, held_out_flows[i:i + 128])
    start = get(before, mon.DRIFT_WINDOW)
    # The gauge is the window the PSI was just computed over; once it passes DRIFT_WINDOW_FLOWS the counts are
    # halved, which shows at the next flush. Earlier traffic of the session may have filled it up to there.
    halved = start + 1024 >= mon.DRIFT_WINDOW_FLOWS
    after = wait_for(triton_server.metrics_url,
                     lambda s: get(s, mon.DRIFT_WINDOW) - start >= 1024 or get(s, mon.DRIFT_WINDOW) < start)
    window = get(after, mon.DRIFT_WINDOW)
    assert window == start + 1024 or (halved and window < start), (start, window)
    psi = {name: get(after, mon.FEATURE_PSI, feature=name) for name in reference.feature_names}
    assert len(psi) == len(FEATURE_NAMES)
    assert all(math.isfinite(v) and v >= 0 for v in psi.values())
    assert any(v > 0 for v in psi.values())
