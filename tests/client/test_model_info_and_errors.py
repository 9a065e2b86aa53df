"""Reading the deployed model's description, classifying Triton's failures, and the retry policy."""

from __future__ import annotations

import copy

import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from moe_ids.client.errors import (
    InvalidInputError,
    ModelNotReadyError,
    MoEClientError,
    OverloadedError,
    RequestTimeoutError,
    SchemaMismatchError,
    ServerUnavailableError,
    translate,
)
from moe_ids.client.model_info import ModelInfo
from moe_ids.client.retry import RetryPolicy, call_with_retry
from moe_ids.core import contract
from moe_ids.core.schema import EXPERT_LABELS, FEATURE_NAMES
from moe_ids.triton.repository import RepositoryOptions, render_repository


@pytest.fixture(scope="module")
def ensemble_config() -> dict:
    """The generated ensemble config, as get_model_config(as_json=True) returns it over gRPC."""
    text = render_repository(RepositoryOptions(model_version="9.9.9"))[f"{contract.ENSEMBLE_MODEL}/config.pbtxt"]
    message = text_format.Parse(text, model_config_pb2.ModelConfig())
    return {"config": json_format.MessageToDict(message, preserving_proto_field_name=True)}


def test_info_comes_from_the_generated_config(ensemble_config: dict) -> None:
    info = ModelInfo.from_config(ensemble_config)
    assert info.feature_names == FEATURE_NAMES
    assert info.binary_labels == contract.BINARY_LABELS and info.experts == EXPERT_LABELS
    assert info.families == contract.OUTPUT_LABELS[contract.FAMILY_PROBABILITIES]
    assert info.version == "9.9.9" and info.accepts_imputation and info.max_batch_size > 0
    assert set(info.outputs) == set(contract.ONNX_OUTPUTS)


def test_server_feature_order_is_followed(ensemble_config: dict) -> None:
    cfg = copy.deepcopy(ensemble_config)
    reordered = list(reversed(FEATURE_NAMES))
    cfg["config"]["parameters"]["feature_names"] = {"string_value": ",".join(reordered)}
    assert ModelInfo.from_config(cfg).feature_names == tuple(reordered)


def test_disagreeing_server_is_refused(ensemble_config: dict) -> None:
    narrow = copy.deepcopy(ensemble_config)
    narrow["config"]["input"][0]["dims"] = ["69"]
    with pytest.raises(SchemaMismatchError, match="69 columns"):
        ModelInfo.from_config(narrow)
    alien = copy.deepcopy(ensemble_config)
    alien["config"]["parameters"]["feature_names"] = {"string_value": "Flow Duration,Packet Entropy"}
    with pytest.raises(SchemaMismatchError, match="Packet Entropy"):
        ModelInfo.from_config(alien)
    labels = copy.deepcopy(ensemble_config)
    labels["config"]["parameters"][f"labels_{contract.FAMILY_PROBABILITIES}"] = {"string_value": "DoS,DDoS"}
    with pytest.raises(SchemaMismatchError, match="8 columns but 2 labels"):
        ModelInfo.from_config(labels)


# Messages as tritonclient raises them for Triton 2.51's answers (seen on the real server).
@pytest.mark.parametrize(("status", "message", "expected", "field"), [
    ("StatusCode.UNAVAILABLE", "[StatusCode.UNAVAILABLE] [request id: <id_unknown>] Exceeds maximum queue size",
     OverloadedError, None),
    ("503", "[request id: <id_unknown>] Exceeds maximum queue size", OverloadedError, None),
    ("StatusCode.UNAVAILABLE", "Request timeout expired", OverloadedError, None),
    ("StatusCode.UNAVAILABLE", "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
     "Failed to connect to remote host: Connection refused", ServerUnavailableError, None),
    ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", RequestTimeoutError, None),
    ("StatusCode.NOT_FOUND", "Request for unknown model: 'nope' is not found", ModelNotReadyError, None),
    ("404", "Request for unknown model: 'nope' is not found", ModelNotReadyError, None),
    ("StatusCode.INVALID_ARGUMENT", "[request id: <id_unknown>] unexpected shape for input 'FEATURES' for model "
     "'moe_ids'. Expected [-1,70], got [1,69].", InvalidInputError, "FEATURES"),
    ("500", "in ensemble 'moe_ids', IMPUTATION: unknown imputation strategy 'bogus'; expected one of zero, mean",
     InvalidInputError, "IMPUTATION"),
    ("StatusCode.INTERNAL", "Stub process is not healthy.", MoEClientError, None),
])
def test_triton_errors_are_classified(status: str, message: str, expected: type, field: str | None) -> None:
    error = translate(InferenceServerException(msg=message, status=status), url="127.0.0.1:1", model="moe_ids")
    assert type(error) is expected
    assert "127.0.0.1:1" in str(error)
    if field is not None:
        assert error.field == field


def test_network_errors_are_classified() -> None:
    assert isinstance(translate(ConnectionRefusedError(111, "Connection refused"), url="h:1", model="m"),
                      ServerUnavailableError)
    assert isinstance(translate(TimeoutError("timed out"), url="h:1", model="m"), RequestTimeoutError)


def test_retry_policy_retries_transient_errors_only() -> None:
    sleeps: list[float] = []
    calls = iter([OverloadedError("full"), ServerUnavailableError("down"), "ok"])

    def flaky() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    policy = RetryPolicy(retries=3, base=0.1, cap=1.0)
    assert call_with_retry(flaky, policy, lambda e: e, sleep=sleeps.append) == "ok"
    assert len(sleeps) == 2 and all(0 <= s <= 0.2 for s in sleeps)

    attempts = []

    def bad() -> None:
        attempts.append(1)
        raise InvalidInputError("FEATURES: no", field="FEATURES")

    with pytest.raises(InvalidInputError):
        call_with_retry(bad, policy, lambda e: e, sleep=sleeps.append)
    assert len(attempts) == 1  # bad input is never retried

    def down() -> None:
        raise ServerUnavailableError("down")

    with pytest.raises(ServerUnavailableError):
        call_with_retry(down, RetryPolicy(retries=2), lambda e: e, sleep=lambda s: None)


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    import random

    policy = RetryPolicy(retries=10, base=0.1, cap=2.0)
    rng = random.Random(0)
    ceilings = [max(policy.delay(a, rng) for _ in range(200)) for a in range(8)]
    assert ceilings[0] <= 0.1 and 0.3 < ceilings[3] <= 0.8 and ceilings[7] <= 2.0


@pytest.mark.parametrize("url", ["https://triton.example:8000", "HTTPS://triton.example", "grpcs://triton:8001"])
def test_tls_urls_are_refused_rather_than_downgraded(url: str) -> None:
    from moe_ids.client import MoEClient

    with pytest.raises(InvalidInputError, match="TLS") as info:
        MoEClient(url, protocol="http")
    assert info.value.field == "url"


def test_plain_schemes_are_stripped() -> None:
    from moe_ids.client.protocol import normalize_url

    assert normalize_url("http://127.0.0.1:8000/", "http") == "127.0.0.1:8000"
    assert normalize_url("grpc://127.0.0.1:8001", "grpc") == "127.0.0.1:8001"


def test_attempts_made_elsewhere_count_against_the_retries() -> None:
    """A pipelined request that failed has used one attempt: the retry after it gets only the rest."""
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise ServerUnavailableError("down")

    policy = RetryPolicy(retries=2, base=0.0, cap=0.0)
    with pytest.raises(ServerUnavailableError):
        call_with_retry(down, policy, lambda e: e, sleep=lambda _s: None, first_attempt=1)
    assert len(calls) == 2  # 1 attempt before + 2 here = the policy's 1 + 2 retries
    calls.clear()
    with pytest.raises(ServerUnavailableError):
        call_with_retry(down, RetryPolicy(retries=0), lambda e: e, sleep=lambda _s: None)
    assert len(calls) == 1  # moe-ids score's client: its own deadline loop is the only retry layer
