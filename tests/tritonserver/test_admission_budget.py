"""The classifier step refuses flows that waited past their budget after admission (cpu target).

A server whose budget is 1 us refuses every flow that went through the ensemble, since no hop between two
processes takes under a microsecond; the refusal must read as overload (HTTP 503 / gRPC UNAVAILABLE, Triton's
"request timeout expired" wording) so clients back off, and callers of the classifier alone carry no stamp and
are answered.
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serving_requests import features_input, infer
from tritonclient.utils import InferenceServerException

from moe_ids.client import MoEClient, OverloadedError
from moe_ids.core import contract

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def impatient_server(triton_serving, tmp_path_factory: pytest.TempPathFactory):
    with triton_serving(tmp_path_factory.mktemp("triton-admission"), layout="ensemble", admitted_timeout_us=1,
                        warmup_batch_sizes=(1,)) as server:
        yield server


def test_overdue_flows_are_refused_as_overload(impatient_server, held_out_flows) -> None:
    client = grpcclient.InferenceServerClient(impatient_server.grpc_url)
    with pytest.raises(InferenceServerException) as caught:
        infer(client, held_out_flows[:3])
    assert caught.value.status() == "StatusCode.UNAVAILABLE"
    message = caught.value.message()
    assert contract.CLASSIFIER_MODEL in message and "request timeout expired" in message.lower()
    assert "after admission (budget 0 ms)" in message

    http = httpclient.InferenceServerClient(impatient_server.http_url)
    tensor = httpclient.InferInput(contract.INPUT_FEATURES, [1, held_out_flows.shape[1]], "FP32")
    tensor.set_data_from_numpy(held_out_flows[:1])
    with pytest.raises(InferenceServerException) as caught_http:
        http.infer(contract.ENSEMBLE_MODEL, [tensor])
    assert caught_http.value.status() == "503"


def test_client_sdk_reports_overload(impatient_server) -> None:
    client = MoEClient(impatient_server.grpc_url, retries=1, backoff=0.01)
    with pytest.raises(OverloadedError, match="request timeout expired"):
        client.predict({"Flow Duration": 5})


def test_direct_classifier_calls_carry_no_stamp_and_are_answered(impatient_server, held_out_flows) -> None:
    from moe_ids.core.artifacts import default_model_dir, load_stats
    from moe_ids.core.preprocessing import Preprocessor

    arrays = Preprocessor(load_stats(default_model_dir())).transform(held_out_flows[:4])
    client = grpcclient.InferenceServerClient(impatient_server.grpc_url)
    inputs = []
    for name, array in zip(contract.ONNX_INPUTS, arrays, strict=True):
        tensor = grpcclient.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        inputs.append(tensor)
    result = client.infer(contract.CLASSIFIER_MODEL, inputs)
    assert result.as_numpy(contract.PROBABILITIES).shape == (4, 2)
    # a stale stamp sent by hand is refused like one from the preprocess step
    stamp = grpcclient.InferInput(contract.ADMITTED_NS, [4, 1], "INT64")
    stamp.set_data_from_numpy(np.zeros((4, 1), dtype=np.int64))
    with pytest.raises(InferenceServerException, match="request timeout expired"):
        client.infer(contract.CLASSIFIER_MODEL, [*inputs, stamp])


def test_default_budget_answers_normal_traffic(triton_server, held_out_flows) -> None:
    """The production budget (1 s) refuses nothing when the server keeps up."""
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    for rows in (1, 64, len(held_out_flows)):
        out = infer(client, held_out_flows[:rows])
        assert out[contract.PROBABILITIES].shape == (rows, 2)
    x = np.ones((1, contract.INPUT_WIDTHS[contract.INPUT_FEATURES]), dtype=np.float32)
    client.infer(contract.ENSEMBLE_MODEL, [features_input(x)], priority=contract.PRIORITY_REALTIME)
