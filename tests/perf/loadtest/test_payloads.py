"""Request encodings: binary framing, JSON NaN literal, malformations, and the real flows behind them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moe_ids.core.contract import INPUT_FEATURES, INPUT_IMPUTATION, PREDICTED_CLASS, PRIORITY_PARAMETER
from moe_ids.core.schema import N_FEATURES
from moe_ids.perf.loadtest import payloads
from moe_ids.perf.loadtest.flows import SAMPLE_FILE, load_feature_matrix, make_batch
from moe_ids.perf.loadtest.scenarios import MALFORMATIONS, SCENARIOS, RequestKind, get_scenario


@pytest.fixture(scope="module")
def flows() -> np.ndarray:
    return load_feature_matrix()


def test_sample_is_real_labelled_cicids_flows() -> None:
    from moe_ids.data.loading import load_flows

    table = load_flows(SAMPLE_FILE)
    assert table.source_format == "corrected"
    assert len(table) > 2000 and not table.unknown_columns
    assert table.labels.nunique() >= 15  # every label of the bundled sample, rare attacks included
    assert table.features.notna().all().all()


def test_make_batch_blanks_the_requested_share(flows: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    x = make_batch(flows, 1024, 0.5, rng)
    assert x.shape == (1024, N_FEATURES) and x.dtype == np.float32 and x.flags.c_contiguous
    assert 0.47 < np.isnan(x).mean() < 0.53
    assert not np.isnan(make_batch(flows, 64, 0.0, rng)).any()


def test_http_binary_body_is_header_json_plus_raw_tensor(flows: np.ndarray) -> None:
    kind = RequestKind("k", batch=3, missing=0.25, imputation="median", priority=1)
    req = payloads.build_request(kind, flows, np.random.default_rng(1), payloads.Wire(imputation_input=True))
    body = payloads.encode_http_binary(req)
    n = int(body.headers[payloads.HEADER_LENGTH])
    head = json.loads(body.body[:n])
    features = next(i for i in head["inputs"] if i["name"] == INPUT_FEATURES)
    assert features["shape"] == [3, N_FEATURES] and features["datatype"] == "FP32"
    assert head["parameters"]["priority"] == 1
    assert {o["name"] for o in head["outputs"]} == set(payloads.REQUESTED_OUTPUTS)
    raw = np.frombuffer(body.body[n:n + 3 * N_FEATURES * 4], dtype=np.float32).reshape(3, N_FEATURES)
    np.testing.assert_array_equal(np.isnan(raw), np.isnan(req.tensors[0].data))  # NaN survives as raw bits


def test_http_json_writes_bare_nan(flows: np.ndarray) -> None:
    kind = RequestKind("k", batch=2, missing=0.5, imputation="zero")
    req = payloads.build_request(kind, flows, np.random.default_rng(2), payloads.Wire(imputation_input=False))
    text = payloads.encode_http_json(req).body.decode()
    assert "NaN" in text and "null" not in text and '"NaN"' not in text
    doc = json.loads(text)  # Python reads the bare literal back
    assert doc["parameters"] == {"priority": kind.priority, payloads.IMPUTATION_PARAMETER: "zero",
                                 PRIORITY_PARAMETER: kind.priority}  # the level a Python model can read
    assert [i["name"] for i in doc["inputs"]] == [INPUT_FEATURES]


def test_imputation_goes_where_the_server_declares_it() -> None:
    with_input = {"inputs": [{"name": INPUT_FEATURES}, {"name": INPUT_IMPUTATION}]}
    assert payloads.wire_from_metadata(with_input).imputation_input
    assert not payloads.wire_from_metadata({"inputs": [{"name": INPUT_FEATURES}]}).imputation_input


def test_malformed_pool_covers_every_malformation(flows: np.ndarray) -> None:
    kind = get_scenario("bad-request").kind("malformed")
    pool = payloads.build_pool(kind, flows, np.random.default_rng(3), payloads.Wire(), 8)
    assert {r.malformation for r in pool} == set(MALFORMATIONS)
    by = {r.malformation: r for r in pool}
    assert by["wrong-width"].tensors[0].data.shape[1] == N_FEATURES - 1
    assert by["wrong-datatype"].tensors[0].datatype == "FP64"
    assert all(t.name != INPUT_FEATURES for t in by["missing-input"].tensors)
    assert any(t.name == INPUT_IMPUTATION for t in by["unknown-imputation"].tensors)


def test_scenarios_cover_the_brief() -> None:
    expected = {"realtime", "batch256", "batch1024", "missing25", "missing50", "missing75", "impute-zero",
                "impute-mean", "impute-median", "mixed", "bad-request"}
    assert expected <= set(SCENARIOS)
    mixed = get_scenario("mixed")
    assert mixed.kind("realtime").priority < mixed.kind("bulk1024").priority  # 1 outranks 2 in Triton
    assert mixed.kind("realtime").weight > mixed.kind("bulk256").weight + mixed.kind("bulk1024").weight
    with pytest.raises(ValueError, match="unknown scenario"):
        get_scenario("nope")


def test_check_http_response_wants_every_output_with_batch_rows() -> None:
    good = {"outputs": [{"name": n, "shape": [4, 1]} for n in payloads.REQUESTED_OUTPUTS]}
    assert payloads.check_http_response(json.dumps(good).encode(), None, 4) is None
    assert "rows" in payloads.check_http_response(json.dumps(good).encode(), None, 5)
    short = {"outputs": [{"name": PREDICTED_CLASS, "shape": [4, 1]}]}
    assert "lacks" in payloads.check_http_response(json.dumps(short).encode(), None, 4)
