"""Served outputs equal the offline PyTorch model's on real held-out flows, for every imputation strategy, in
both cpu layouts: the ensemble (Python preprocess -> Python ONNX Runtime model) and the one-hop model.

Tolerance: 1e-5 absolute on probabilities, gating and family probabilities (fp32 ONNX Runtime vs fp32
PyTorch; the measured gap is below 2e-6). Preprocessing is the same code in both paths, so any larger gap
would be training/serving skew.
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serving_requests import features_input, infer

from moe_ids.core import contract
from moe_ids.core.preprocessing import STRATEGIES
from moe_ids.export.verify import TRUST_TOLERANCE, at_host_thresholds
from moe_ids.model.trust import DEFAULT_ALPHA, attack_move
from moe_ids.triton.repository import LAYOUTS

pytestmark = pytest.mark.integration
ATOL = 1e-5


@pytest.fixture(scope="module", params=LAYOUTS)
def served(request, triton_server, triton_serving, tmp_path_factory):
    """The session's ensemble server, or a server of the one-hop layout."""
    if request.param == "ensemble":
        yield triton_server
    else:
        with triton_serving(tmp_path_factory.mktemp("one-hop"), layout=request.param) as server:
            yield server


@pytest.fixture(scope="module")
def client(served) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(served.grpc_url)


def reference(reference_model, x: np.ndarray, strategy: str | None) -> dict[str, np.ndarray]:
    from moe_ids.model.prediction import predict_numpy

    model, pre = reference_model
    return {**predict_numpy(model, pre, x, strategy), "host_change": float(model.trust.host_change)}


def assert_matches(served: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> None:
    np.testing.assert_allclose(served[contract.PROBABILITIES], ref["probabilities"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(served[contract.GATING], ref["gating"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(served[contract.FAMILY_PROBABILITIES], ref["family"], rtol=0, atol=ATOL)
    probs = ref["probabilities"]
    decided = np.abs(probs[:, 0] - probs[:, 1]) > 1e-4  # exact ties may break either way
    np.testing.assert_array_equal(served[contract.PREDICTED_CLASS][decided, 0], probs[decided].argmax(1))
    np.testing.assert_allclose(served[contract.CONFIDENCE][:, 0], probs.max(1), rtol=0, atol=ATOL)
    # the trust score's interpolation magnifies rounding of the distance, and it steps where the host view's move
    # sits at one of its thresholds (see moe_ids.export.verify)
    ties = at_host_thresholds(attack_move(probs, ref["host_free"]), ref["host_change"])
    np.testing.assert_allclose(served[contract.TRUST][~ties, 0], ref["trust"][~ties], rtol=0, atol=TRUST_TOLERANCE)
    assert served[contract.OUT_OF_DISTRIBUTION].dtype == np.bool_
    clear = (np.abs(ref["trust"] - DEFAULT_ALPHA) > TRUST_TOLERANCE) & ~ties
    np.testing.assert_array_equal(served[contract.OUT_OF_DISTRIBUTION][clear, 0], ref["ood"][clear])


def test_default_strategy_matches_pytorch(client, reference_model, held_out_flows) -> None:
    assert np.isnan(held_out_flows).any(), "the sample must include flows with missing features"
    served = infer(client, held_out_flows)
    assert served[contract.PROBABILITIES].shape == (len(held_out_flows), 2)
    assert served[contract.PREDICTED_CLASS].dtype == np.int64
    default = reference_model[1].stats.default_strategy
    assert_matches(served, reference(reference_model, held_out_flows, default))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_through_the_ensemble_matches_pytorch(client, reference_model, held_out_flows,
                                                            strategy: str) -> None:
    assert_matches(infer(client, held_out_flows, strategy), reference(reference_model, held_out_flows, strategy))


def test_strategies_differ_on_flows_with_missing_features(client, held_out_flows) -> None:
    missing = held_out_flows[np.isnan(held_out_flows).any(axis=1)]
    outs = {s: infer(client, missing, s)[contract.PROBABILITIES] for s in STRATEGIES}
    assert np.abs(outs["zero"] - outs["median"]).max() > 1e-3
    assert np.abs(outs["mean"] - outs["median"]).max() > 1e-3


def test_per_flow_strategies_in_one_request(client, reference_model, held_out_flows) -> None:
    x = held_out_flows[-6:]
    strategies = [STRATEGIES[i % len(STRATEGIES)] for i in range(len(x))]
    served = infer(client, x, strategies)
    for i, strategy in enumerate(strategies):
        ref = reference(reference_model, x[i:i + 1], strategy)
        np.testing.assert_allclose(served[contract.PROBABILITIES][i:i + 1], ref["probabilities"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("strategy", ["zero", "mean"])
def test_request_parameter_selects_the_strategy(client, reference_model, held_out_flows, strategy: str) -> None:
    """A whole-request strategy may also come as the request parameter ``imputation``."""
    x = held_out_flows[-16:]
    result = client.infer(contract.ENSEMBLE_MODEL, [features_input(x)], parameters={"imputation": strategy})
    ref = reference(reference_model, x, strategy)
    np.testing.assert_allclose(result.as_numpy(contract.PROBABILITIES), ref["probabilities"], atol=ATOL, rtol=0)


def test_single_flows_match_batched(client, held_out_flows) -> None:
    batched = infer(client, held_out_flows[-8:])[contract.PROBABILITIES]
    single = np.concatenate([infer(client, held_out_flows[i:i + 1])[contract.PROBABILITIES]
                             for i in range(len(held_out_flows) - 8, len(held_out_flows))])
    np.testing.assert_allclose(single, batched, atol=ATOL, rtol=0)


def test_http_json_with_nan(served, reference_model, held_out_flows) -> None:
    client = httpclient.InferenceServerClient(served.http_url)
    x = held_out_flows[-4:]
    assert np.isnan(x).any()
    tensor = httpclient.InferInput(contract.INPUT_FEATURES, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=False)
    result = client.infer(contract.ENSEMBLE_MODEL, [tensor])
    ref = reference(reference_model, x, reference_model[1].stats.default_strategy)
    np.testing.assert_allclose(result.as_numpy(contract.PROBABILITIES), ref["probabilities"], atol=ATOL, rtol=0)


def test_classification_extension_returns_labels(client, held_out_flows) -> None:
    x = held_out_flows[:3]
    outputs = [grpcclient.InferRequestedOutput(contract.PROBABILITIES, class_count=2),
               grpcclient.InferRequestedOutput(contract.FAMILY_PROBABILITIES, class_count=3)]
    result = client.infer(contract.ENSEMBLE_MODEL, [features_input(x)], outputs=outputs)
    top = result.as_numpy(contract.PROBABILITIES)
    assert top.shape == (3, 2)
    for row in top:
        entries = [item.decode().split(":") for item in row]
        assert {label for _, _, label in entries} == set(contract.OUTPUT_LABELS[contract.PROBABILITIES])
        for score, index, label in entries:
            assert contract.OUTPUT_LABELS[contract.PROBABILITIES][int(index)] == label
            assert 0.0 <= float(score) <= 1.0
    families = result.as_numpy(contract.FAMILY_PROBABILITIES)
    assert families.shape == (3, 3)
    assert families[0][0].decode().split(":")[2] in contract.OUTPUT_LABELS[contract.FAMILY_PROBABILITIES]


def test_model_config_publishes_version_and_labels(client) -> None:
    from moe_ids.core.artifacts import default_model_dir, read_json

    config = client.get_model_config(contract.ENSEMBLE_MODEL).config
    version = read_json(default_model_dir() / "metadata.json")["model_version"]
    assert config.parameters["model_version"].string_value == version
    labels = config.parameters[f"labels_{contract.PROBABILITIES}"].string_value.split(",")
    assert labels == list(contract.OUTPUT_LABELS[contract.PROBABILITIES])
    steps = (contract.PREPROCESS_MODEL, contract.CLASSIFIER_MODEL)
    assert client.is_model_ready(contract.ENSEMBLE_MODEL)
    if config.platform == "ensemble":
        assert all(client.is_model_ready(model) for model in steps)
    else:  # one hop: the same public model, nothing behind it
        assert config.backend == "python"
        assert [m.name for m in client.get_model_repository_index().models] == [contract.ENSEMBLE_MODEL]


def test_a_bad_request_gets_its_own_error_and_the_server_stays_up(client, held_out_flows) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as err:
        infer(client, held_out_flows[:2], ["median", "mode"])
    assert contract.INPUT_IMPUTATION in err.value.message() and "mode" in err.value.message()
    assert infer(client, held_out_flows[:2])[contract.PROBABILITIES].shape == (2, 2)


def test_model_metrics_are_published(served, client, held_out_flows) -> None:
    import urllib.request

    infer(client, held_out_flows[:4])
    text = urllib.request.urlopen(f"http://{served.metrics_url}/metrics", timeout=10).read().decode()
    for family in ("moe_ids_flows_total", "moe_ids_missing_values_total", "moe_ids_predictions_total"):
        assert family in text, family
