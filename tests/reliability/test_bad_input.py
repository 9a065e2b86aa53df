"""Malformed and hostile requests over raw HTTP against the real server: the status code and message say what
is wrong, the server stays up, and the next valid request gets the same answer as before.

Raw ``http.client`` rather than tritonclient, so the bodies are exactly what a foreign client (curl, a
proxy, a fuzzer) could send. The gRPC side of width/rank/dtype/empty/strategy errors and bad requests mixed
into one batch are in tests/tritonserver/test_bad_requests.py; here the same inputs are checked over HTTP with
their status codes, plus what only HTTP can get wrong (JSON syntax, truncated binary bodies, body size).
"""

from __future__ import annotations

import http.client
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from moe_ids.core import contract
from moe_ids.data.loading import load_flows

pytestmark = pytest.mark.integration

N = contract.INPUT_WIDTHS[contract.INPUT_FEATURES]
FEATURES = contract.INPUT_FEATURES
INFER_PATH = f"/v2/models/{contract.ENSEMBLE_MODEL}/infer"
FLOWS_CSV = "data/cicids2017-original/orig_Friday-DDos_head9998.csv.gz"
HEADER_LENGTH = "Inference-Header-Content-Length"
FP32_MAX = float(np.finfo(np.float32).max)


class Http:
    """One-request-per-connection raw HTTP client of the server under test."""

    def __init__(self, url: str) -> None:
        host, port = url.rsplit(":", 1)
        self.host, self.port = host, int(port)

    def post(self, body: bytes | str, headers: dict[str, str] | None = None,
             path: str = INFER_PATH) -> tuple[int, dict]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            conn.request("POST", path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, {"raw": data[:500].decode(errors="replace")}

    def binary(self, x: np.ndarray, datatype: str = "FP32", name: str = FEATURES,
               cut: int | None = None) -> tuple[int, dict]:
        """KServe v2 binary-tensor request (what tritonclient sends); ``cut`` truncates the tensor bytes."""
        raw = x.tobytes()
        header = json.dumps({"inputs": [{"name": name, "shape": list(x.shape), "datatype": datatype,
                                         "parameters": {"binary_data_size": len(raw)}}],
                             "outputs": [{"name": n, "parameters": {"binary_data": False}}
                                         for n in contract.ONNX_OUTPUTS]}).encode()
        body = header + (raw if cut is None else raw[:cut])
        return self.post(body, {HEADER_LENGTH: str(len(header)), "Content-Type": "application/octet-stream"})

    def json_tensor(self, shape: list[int], data: list, datatype: str = "FP32", name: str = FEATURES,
                    extra: list[dict] | None = None) -> tuple[int, dict]:
        body = {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}, *(extra or [])]}
        return self.post(json.dumps(body))


def outputs(answer: dict) -> dict[str, np.ndarray]:
    return {o["name"]: np.asarray(o["data"], dtype=np.float64).reshape(o["shape"]) for o in answer["outputs"]}


def assert_valid_result(answer: dict, rows: int) -> dict[str, np.ndarray]:
    out = outputs(answer)
    probs = out[contract.PROBABILITIES]
    assert probs.shape == (rows, 2) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.isfinite(out[contract.FAMILY_PROBABILITIES]).all() and np.isfinite(out[contract.CONFIDENCE]).all()
    assert set(np.unique(out[contract.PREDICTED_CLASS])) <= {0, 1}
    return out


@pytest.fixture(scope="module")
def flows() -> np.ndarray:
    """Eight real CIC-IDS2017 flows (original release format)."""
    return load_flows(FLOWS_CSV).features.to_numpy(np.float32)[:8]


@pytest.fixture(scope="module")
def api(triton_server) -> Http:
    return Http(triton_server.http_url)


@pytest.fixture(scope="module")
def reference(api: Http, flows: np.ndarray) -> np.ndarray:
    status, answer = api.binary(flows)
    assert status == 200, answer
    return assert_valid_result(answer, len(flows))[contract.PROBABILITIES]


def assert_still_serving(api: Http, flows: np.ndarray, reference: np.ndarray) -> None:
    """The next valid request is answered, and answered exactly as before the bad one."""
    status, answer = api.binary(flows)
    assert status == 200, answer
    np.testing.assert_allclose(assert_valid_result(answer, len(flows))[contract.PROBABILITIES], reference,
                               atol=1e-6, rtol=0)


ROW = [1.0] * N
# (case, request builder, expected status, words the error must contain)
BAD_REQUESTS = [
    ("wrong tensor name", lambda a, x: a.json_tensor([1, N], ROW, name="FEATURE"), 400,
     ["unexpected inference input 'FEATURE'"]),
    ("width 69", lambda a, x: a.binary(x[:, :69]), 400, [f"'{FEATURES}'", "[-1,70]", "[8,69]"]),
    ("rank 3", lambda a, x: a.binary(x.reshape(8, 7, 10)), 400, [f"'{FEATURES}'", "[-1,70]", "[8,7,10]"]),
    ("rank 1", lambda a, x: a.binary(x[0]), 400, [f"'{FEATURES}'", "[-1,70]", "[70]"]),
    ("dtype FP64", lambda a, x: a.binary(x.astype(np.float64), "FP64"), 400, [f"'{FEATURES}'", "FP64", "FP32"]),
    ("dtype INT32", lambda a, x: a.json_tensor([1, N], [1] * N, "INT32"), 400, [f"'{FEATURES}'", "INT32", "FP32"]),
    ("empty batch", lambda a, x: a.json_tensor([0, N], []), 400, [f"'{FEATURES}'", "Expected 280, got 0"]),
    ("batch above max_batch_size", lambda a, x: a.binary(np.zeros((8193, N), np.float32)), 400,
     ["batch-size must be <= 8192"]),
    ("unknown imputation strategy", lambda a, x: a.json_tensor(
        [1, N], ROW, extra=[{"name": contract.INPUT_IMPUTATION, "shape": [1, 1], "datatype": "BYTES",
                             "data": ["avg"]}]), 400,
     [contract.INPUT_IMPUTATION, "unknown imputation strategy 'avg'", "zero, mean, median"]),
    ("strings as features", lambda a, x: a.json_tensor([1, N], ["x"] * N), 500, ["'data'", "non-number"]),
    ("data shorter than shape", lambda a, x: a.json_tensor([2, N], ROW), 500,
     ["'data'", "Shape does not match"]),
    ("truncated JSON", lambda a, x: a.post('{"inputs": [{"name": "FEATURES", "shape": [1, 70'), 500,
     ["failed to parse the request JSON"]),
    ("not JSON", lambda a, x: a.post("FEATURES=1,2,3"), 500, ["failed to parse the request JSON"]),
    ("truncated binary tensor", lambda a, x: a.binary(x, cut=100), 400,
     [f"'{FEATURES}'", "expecting 2140 additional bytes"]),
    ("binary header length past the body", lambda a, x: a.post(b'{"inputs": []}', {HEADER_LENGTH: "100000"}),
     400, ["inference header size should be in range"]),
]


@pytest.mark.parametrize("case,send,status,words", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_malformed_request_is_refused_clearly(api: Http, flows: np.ndarray, reference: np.ndarray,
                                              case: str, send, status: int, words: list[str]) -> None:
    got, answer = send(api, flows)
    assert got == status, (case, got, answer)
    message = answer.get("error", "")
    for word in words:
        assert word in message, (case, message)
    assert_still_serving(api, flows, reference)


def test_oversized_body_is_refused_and_memory_released(api: Http, flows: np.ndarray, reference: np.ndarray,
                                                       triton_server) -> None:
    """64 MiB of tensor data. Triton 2.51 has no HTTP body limit (no --http-max-input-size): it buffers the body,
    then the batch-size check refuses it. The buffer must not stay behind."""
    import psutil

    server = psutil.Process(triton_server.pid)
    before = server.memory_info().rss
    rows = 64 * 2**20 // (4 * N)
    status, answer = api.binary(np.zeros((rows, N), np.float32))
    assert status == 400 and "batch-size must be <= 8192" in answer["error"]
    assert_still_serving(api, flows, reference)
    assert server.memory_info().rss - before < 32 * 2**20


def test_all_missing_rows_are_imputed_not_refused(api: Http, flows: np.ndarray) -> None:
    """A flow with every feature NaN is answered from imputed values with its mask all set (the model was
    trained with up to 80% missing): a record a sensor could not fill in must not fail the whole batch."""
    x = flows.copy()
    x[2] = np.nan
    status, answer = api.binary(x)
    assert status == 200, answer
    out = assert_valid_result(answer, len(x))
    status, alone = api.binary(np.full((1, N), np.nan, np.float32))
    assert status == 200
    np.testing.assert_allclose(outputs(alone)[contract.PROBABILITIES][0], out[contract.PROBABILITIES][2], atol=1e-6)
    # over JSON only the bare NaN literal is accepted for a missing value
    status, answer = api.post('{"inputs":[{"name":"FEATURES","shape":[1,70],"datatype":"FP32","data":['
                              + ",".join(["NaN"] * N) + "]}]}")
    assert status == 200
    np.testing.assert_allclose(outputs(answer)[contract.PROBABILITIES][0], out[contract.PROBABILITIES][2], atol=1e-6)


def test_infinity_is_missing(api: Http, flows: np.ndarray) -> None:
    """CICFlowMeter writes Infinity for rates of zero-duration flows: ±Infinity is treated exactly as NaN."""
    x = np.repeat(flows[:1], 3, axis=0)
    x[0, [10, 20, 30]] = np.inf
    x[1, [10, 20, 30]] = -np.inf
    x[2, [10, 20, 30]] = np.nan
    status, answer = api.binary(x)
    assert status == 200, answer
    probs = assert_valid_result(answer, 3)[contract.PROBABILITIES]
    np.testing.assert_allclose(probs[0], probs[2], atol=1e-6)
    np.testing.assert_allclose(probs[1], probs[2], atol=1e-6)


def test_absurd_magnitudes_and_negative_counts_are_clipped(api: Http, flows: np.ndarray) -> None:
    """Values far outside training saturate at the scaler's clip (±8 standard deviations of signed log1p), so
    1e30 and the largest float32 give the same answer; negatives are valid input (CIC-IDS2017 has -1 in
    Init_Win_bytes_* and negative inter-arrival times). Both are counted by moe_ids_out_of_range_values_total."""
    x = np.repeat(flows[:1], 4, axis=0)
    x[0, :] = 1e30
    x[1, :] = FP32_MAX
    x[2, :] = -FP32_MAX
    x[3, :5] = -5.0  # negative packet counts and duration
    status, answer = api.binary(x)
    assert status == 200, answer
    probs = assert_valid_result(answer, 4)[contract.PROBABILITIES]
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          derandomize=True)
@given(x=st.integers(1, 6).flatmap(lambda n: arrays(
    np.float32, (n, N), elements=st.floats(width=32, allow_nan=True, allow_infinity=True)
    | st.sampled_from([0.0, -1.0, FP32_MAX, -FP32_MAX, math.nan, math.inf]))))
def test_server_answers_arbitrary_float_arrays(api: Http, flows: np.ndarray, reference: np.ndarray,
                                               x: np.ndarray) -> None:
    """Any float32 matrix of the right width is a valid request: each answer is a valid result; the server
    stays up and keeps answering the reference request identically."""
    status, answer = api.binary(x)
    if status == 200:
        assert_valid_result(answer, x.shape[0])
    else:  # a refusal is acceptable only as a clean client error with a message
        assert 400 <= status < 500 and answer.get("error"), (status, answer)
    assert_still_serving(api, flows, reference)
