"""Bad requests get clear errors naming the field; the server keeps answering, other requests are unaffected."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serving_requests import features_input, imputation_input, infer
from tritonclient.utils import InferenceServerException

from moe_ids.core import contract

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(triton_server) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(triton_server.grpc_url)


def error_of(client, inputs, model: str = contract.ENSEMBLE_MODEL) -> str:
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, inputs)
    return str(info.value)


def assert_still_serving(client, held_out_flows) -> None:
    out = infer(client, held_out_flows[:2])
    assert out[contract.PROBABILITIES].shape == (2, 2)


def test_wrong_width(client, held_out_flows) -> None:
    msg = error_of(client, [features_input(held_out_flows[:2, :69])])
    assert contract.INPUT_FEATURES in msg and "69" in msg and "70" in msg
    assert_still_serving(client, held_out_flows)


def test_wrong_rank(client, held_out_flows) -> None:
    msg = error_of(client, [features_input(held_out_flows[:2].reshape(2, 7, 10))])
    assert contract.INPUT_FEATURES in msg and "shape" in msg
    msg = error_of(client, [features_input(held_out_flows[0])])
    assert contract.INPUT_FEATURES in msg
    assert_still_serving(client, held_out_flows)


def test_wrong_dtype(client, held_out_flows) -> None:
    msg = error_of(client, [features_input(held_out_flows[:2].astype(np.float64), "FP64")])
    assert contract.INPUT_FEATURES in msg and "FP32" in msg.upper()
    assert_still_serving(client, held_out_flows)


def test_empty_batch(client, held_out_flows) -> None:
    msg = error_of(client, [features_input(np.zeros((0, 70), dtype=np.float32))])
    assert contract.INPUT_FEATURES in msg or "batch" in msg.lower()
    assert_still_serving(client, held_out_flows)


def test_unknown_strategy(client, held_out_flows) -> None:
    msg = error_of(client, [features_input(held_out_flows[:2]), imputation_input(["zero", "bogus"])])
    assert contract.INPUT_IMPUTATION in msg and "bogus" in msg and "median" in msg
    assert_still_serving(client, held_out_flows)


def test_unknown_strategy_parameter(client, held_out_flows) -> None:
    with pytest.raises(InferenceServerException, match="parameter 'imputation'.*unknown imputation strategy"):
        client.infer(contract.ENSEMBLE_MODEL, [features_input(held_out_flows[:2])], parameters={"imputation": "avg"})
    assert_still_serving(client, held_out_flows)


def test_strategy_count_mismatch(client, held_out_flows) -> None:
    # Triton itself checks that every input of a batching model has the same batch size.
    msg = error_of(client, [features_input(held_out_flows[:3]), imputation_input(["zero", "mean"])])
    assert "batch size does not match" in msg
    assert_still_serving(client, held_out_flows)


def test_bad_json_value_over_http(triton_server) -> None:
    client = httpclient.InferenceServerClient(triton_server.http_url)
    tensor = httpclient.InferInput(contract.INPUT_FEATURES, [1, 70], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 70), dtype=np.float32), binary_data=False)
    tensor._raw_data = None
    tensor._data = ["x"] * 70  # not numbers
    with pytest.raises(InferenceServerException):
        client.infer(contract.ENSEMBLE_MODEL, [tensor])
    assert client.is_server_ready()


def test_bad_request_in_a_batch_fails_alone(client, reference_model, held_out_flows) -> None:
    """Concurrent good and bad requests land in the same executions; only the bad ones fail."""
    good_x = held_out_flows[:1]
    expected = infer(client, good_x)[contract.PROBABILITIES]

    def call(i: int):
        if i % 4 == 3:
            try:
                client.infer(contract.ENSEMBLE_MODEL, [features_input(good_x), imputation_input(["nope"])])
            except InferenceServerException as exc:
                return "error", str(exc)
            return "ok", None
        return "ok", infer(client, good_x)[contract.PROBABILITIES]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(64)))
    for i, (status, value) in enumerate(results):
        if i % 4 == 3:
            assert status == "error" and contract.INPUT_IMPUTATION in value
        else:
            assert status == "ok"
            np.testing.assert_allclose(value, expected, atol=1e-6, rtol=0)
