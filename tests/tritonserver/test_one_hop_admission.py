"""The one-hop model admits requests itself: refusals on arrival read as overload, real-time and bulk budgets
reach it through the SDK's priority parameter, and a flood ends with every request answered or refused.

The server here gives real-time requests a 1 us budget, so every real-time request is refused on arrival
(no run takes a microsecond) while bulk requests, with the production 5 s budget, are answered.
"""

from __future__ import annotations

import threading
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serving_requests import infer
from tritonclient.utils import InferenceServerException

from moe_ids.client import MoEClient, OverloadedError
from moe_ids.core import contract
from moe_ids.core.schema import FEATURE_NAMES
from moe_ids.triton.backends import monitoring

pytestmark = pytest.mark.integration

REALTIME = {contract.PRIORITY_PARAMETER: contract.PRIORITY_REALTIME}


@pytest.fixture(scope="module")
def one_hop_server(triton_serving, tmp_path_factory: pytest.TempPathFactory):
    with triton_serving(tmp_path_factory.mktemp("one-hop-admission"), layout="one-hop", realtime_timeout_us=1,
                        warmup_batch_sizes=(1,)) as server:
        yield server


def metric(metrics_url: str, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(f"http://{metrics_url}/metrics", timeout=10).read().decode()
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_request_that_cannot_meet_its_budget_is_refused_as_overload(one_hop_server, held_out_flows) -> None:
    client = grpcclient.InferenceServerClient(one_hop_server.grpc_url)
    with pytest.raises(InferenceServerException) as caught:
        infer(client, held_out_flows[:8], parameters=REALTIME)
    assert caught.value.status() == "StatusCode.UNAVAILABLE"
    message = caught.value.message()
    assert contract.ENSEMBLE_MODEL in message and contract.QUEUE_TIMEOUT_TEXT in message.lower()
    assert "would wait" in message and "(budget 0 ms)" in message

    http = httpclient.InferenceServerClient(one_hop_server.http_url)
    tensor = httpclient.InferInput(contract.INPUT_FEATURES, [1, held_out_flows.shape[1]], "FP32")
    tensor.set_data_from_numpy(held_out_flows[:1])
    with pytest.raises(InferenceServerException) as caught_http:
        http.infer(contract.ENSEMBLE_MODEL, [tensor], parameters=REALTIME)
    assert caught_http.value.status() == "503"

    # Triton's own per-request timeout overrides the level's budget, both ways
    assert infer(client, held_out_flows[:8], parameters=REALTIME, timeout=5_000_000)[
        contract.PROBABILITIES].shape == (8, 2)
    with pytest.raises(InferenceServerException, match="would wait"):
        infer(client, held_out_flows[:8], timeout=1)


def test_bulk_and_unnamed_levels_get_the_bulk_budget(one_hop_server, held_out_flows, reference_model) -> None:
    client = grpcclient.InferenceServerClient(one_hop_server.grpc_url)
    bulk = infer(client, held_out_flows, parameters={contract.PRIORITY_PARAMETER: contract.PRIORITY_BULK})
    unnamed = infer(client, held_out_flows)
    np.testing.assert_array_equal(bulk[contract.PROBABILITIES], unnamed[contract.PROBABILITIES])
    model, preprocessor = reference_model
    from moe_ids.model.prediction import predict_numpy

    expected = predict_numpy(model, preprocessor, held_out_flows)
    np.testing.assert_allclose(bulk[contract.PROBABILITIES], expected["probabilities"], atol=1e-4)


def test_a_priority_parameter_that_is_not_a_level_is_a_bad_request(one_hop_server, held_out_flows) -> None:
    client = grpcclient.InferenceServerClient(one_hop_server.grpc_url)
    with pytest.raises(InferenceServerException) as caught:
        infer(client, held_out_flows[:2], parameters={contract.PRIORITY_PARAMETER: "urgent"})
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert contract.PRIORITY_PARAMETER in caught.value.message() and "urgent" in caught.value.message()


def test_the_sdk_sends_its_priority_level(one_hop_server, held_out_flows) -> None:
    client = MoEClient(one_hop_server.grpc_url, retries=1, backoff=0.01)
    with pytest.raises(OverloadedError, match="request timeout expired"):
        client.predict(dict(zip(FEATURE_NAMES, held_out_flows[0].tolist(), strict=True)))
    frame = client.predict_batch(held_out_flows[:16])  # bulk by default
    assert len(frame) == 16
    with pytest.raises(OverloadedError):
        client.predict_batch(held_out_flows[:16], priority="realtime")


def test_a_flood_is_answered_or_refused_and_the_refusals_are_counted(one_hop_server, held_out_flows) -> None:
    """24 clients send 384-flow requests with a 100 ms budget for 3 s: each gets the right answer or an
    overload refusal, nothing else, and the model's refusal counter moves."""
    client = grpcclient.InferenceServerClient(one_hop_server.grpc_url)
    expected = infer(client, held_out_flows)[contract.PROBABILITIES]
    before = metric(one_hop_server.metrics_url, monitoring.ADMISSION_REFUSALS, when="on_arrival")
    outcomes: dict[str, int] = {"answered": 0, "refused": 0}
    problems: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + 3.0

    def sender() -> None:
        own = grpcclient.InferenceServerClient(one_hop_server.grpc_url)
        while time.monotonic() < stop:
            try:
                out = infer(own, held_out_flows, timeout=100_000)
            except InferenceServerException as exc:
                kind = "refused" if contract.QUEUE_TIMEOUT_TEXT in exc.message().lower() else None
                with lock:
                    if kind is None:
                        problems.append(exc.message())
                    else:
                        outcomes[kind] += 1
                continue
            ok = np.allclose(out[contract.PROBABILITIES], expected, atol=1e-5)
            with lock:
                outcomes["answered"] += 1
                if not ok:
                    problems.append("an accepted request got another request's answer")

    threads = [threading.Thread(target=sender) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not problems, problems[:3]
    assert outcomes["answered"] > 0 and outcomes["refused"] > 0, outcomes
    time.sleep(2 * monitoring.DEFAULT_FLUSH_INTERVAL_S)
    refused = metric(one_hop_server.metrics_url, monitoring.ADMISSION_REFUSALS, when="on_arrival") - before
    assert refused >= 1
    assert metric(one_hop_server.metrics_url, f"{monitoring.QUEUE_WAIT}_count") >= outcomes["answered"]
    assert infer(client, held_out_flows[:4])[contract.PROBABILITIES].shape == (4, 2)
