"""Dynamic batching forms batches under concurrency; priorities reach the composing models' queues."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from serving_requests import features_input, infer
from tritonclient.utils import InferenceServerException

from moe_ids.core import contract

pytestmark = pytest.mark.integration


def counts(client: grpcclient.InferenceServerClient, model: str) -> tuple[int, int]:
    stats = client.get_inference_statistics(model).model_stats[0]
    return stats.inference_count, stats.execution_count


def test_dynamic_batching_groups_concurrent_single_flows(triton_server, held_out_flows) -> None:
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    before = {m: counts(client, m) for m in (contract.PREPROCESS_MODEL, contract.CLASSIFIER_MODEL)}
    n_requests = 256

    def one(i: int) -> np.ndarray:
        return infer(client, held_out_flows[i % len(held_out_flows)][None, :])[contract.PROBABILITIES]

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(n_requests)))
    assert all(r.shape == (1, 2) for r in results)
    for model, (inf0, exe0) in before.items():
        inf1, exe1 = counts(client, model)
        inferences, executions = inf1 - inf0, exe1 - exe0
        assert inferences >= n_requests, model
        assert executions < inferences, f"{model}: {executions} executions for {inferences} inferences"


@pytest.mark.parametrize("priority", [0, contract.PRIORITY_REALTIME, contract.PRIORITY_BULK])
def test_priorities_are_accepted(triton_server, held_out_flows, priority: int) -> None:
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    out = infer(client, held_out_flows[:4], priority=priority)
    assert out[contract.PROBABILITIES].shape == (4, 2)


def test_realtime_priority_reaches_the_composing_models(probe_server) -> None:
    """On the probe server only priority-1 requests have a 1 us queue budget: they, and only they, are rejected."""
    client = grpcclient.InferenceServerClient(probe_server.grpc_url)
    x = np.ones((1, contract.INPUT_WIDTHS[contract.INPUT_FEATURES]), dtype=np.float32)
    for model in (contract.ENSEMBLE_MODEL, contract.PREPROCESS_MODEL):
        with pytest.raises(InferenceServerException, match="timeout"):
            client.infer(model, [features_input(x)], priority=contract.PRIORITY_REALTIME)
        client.infer(model, [features_input(x)], priority=contract.PRIORITY_BULK)
        client.infer(model, [features_input(x)])  # no priority: the default level, bulk


def test_timeout_override_is_allowed(probe_server) -> None:
    """``allow_timeout_override``: a bulk request that can wait only 1 us is rejected, like a real-time one."""
    client = grpcclient.InferenceServerClient(probe_server.grpc_url)
    x = np.ones((1, contract.INPUT_WIDTHS[contract.INPUT_FEATURES]), dtype=np.float32)
    with pytest.raises(InferenceServerException, match="timeout"):
        client.infer(contract.PREPROCESS_MODEL, [features_input(x)], priority=contract.PRIORITY_BULK, timeout=1)
