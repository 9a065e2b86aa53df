"""The SDK against the real tritonserver of the session fixture: both protocols, every input form and naming,
row order, missing features, errors, the asyncio client and analyze()."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pandas as pd
import pytest

from moe_ids.client import (
    AsyncMoEClient,
    InvalidInputError,
    ModelNotReadyError,
    MoEClient,
    Prediction,
    RequestTimeoutError,
    ServerUnavailableError,
    analyze,
)
from moe_ids.core import contract
from moe_ids.core.artifacts import default_model_dir
from moe_ids.core.schema import FEATURE_NAMES, FEATURES
from moe_ids.data.loading import load_flows
from moe_ids.triton.ops.server import free_port

pytestmark = pytest.mark.integration

ORIGINAL_CSV = "data/cicids2017-original/orig_Wednesday_head200.csv.gz"
CORRECTED_CSV = "data/cicids2017-improved/flows.csv.gz"
PYTHON_SCAN = "data/cicflowmeter-python/nmap_loopback_syn_scan.csv.gz"
PROTOCOLS = ("grpc", "http")


def url_of(server, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


@pytest.fixture(scope="module")
def original_raw() -> pd.DataFrame:
    """Real flows exactly as the original CIC-IDS2017 CSV names them (leading spaces and all)."""
    return pd.read_csv(ORIGINAL_CSV, na_values=["Infinity"])


@pytest.fixture(scope="module")
def mixed_flows() -> pd.DataFrame:
    """Real flows of the corrected release, benign and attacks, as canonical features."""
    table = load_flows(CORRECTED_CSV, nrows=3000)
    picked = np.r_[np.flatnonzero(table.binary == 0)[:150], np.flatnonzero(table.binary == 1)[:150]]
    return table.features.iloc[picked].reset_index(drop=True)


@pytest.fixture(scope="module", params=PROTOCOLS)
def client(request, triton_server):
    with MoEClient(url_of(triton_server, request.param), protocol=request.param) as c:
        yield c


def test_health_and_model_description(client: MoEClient) -> None:
    assert client.is_live() and client.is_ready()
    report = client.health()
    version = json.loads((default_model_dir() / "metadata.json").read_text())["model_version"]
    assert report["live"] and report["ready"] and report["error"] is None
    assert report["model_version"] == version
    assert client.feature_names == FEATURE_NAMES


def test_predict_one_flow(client: MoEClient, mixed_flows: pd.DataFrame) -> None:
    attack = mixed_flows.iloc[200].to_dict()  # an attack flow of the corrected release
    result = client.predict(attack)
    assert isinstance(result, Prediction)
    assert result.prediction == "Attack" and result.is_attack
    assert result.family in contract.FAMILIES
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert result.confidence == pytest.approx(result.probabilities["Attack"], abs=1e-6)
    assert set(result.gating) == {"Tabular Expert", "Temporal Expert"}
    assert sum(result.gating.values()) == pytest.approx(1.0, abs=1e-5)
    assert sum(result.family_probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    benign = client.predict(mixed_flows.iloc[0].to_dict())
    assert benign.prediction == "Normal" and benign.family is None


def test_predict_batch_detects_attacks(client: MoEClient, mixed_flows: pd.DataFrame) -> None:
    result = client.predict_batch(mixed_flows, batch_size=64)
    assert list(result.columns[:6]) == ["prediction", "confidence", "prob_normal", "prob_attack",
                                        "gating_tabular", "gating_temporal"]
    assert {"family", "prob_DoS", "prob_PortScan"} <= set(result.columns)
    truth = np.r_[np.zeros(150), np.ones(150)].astype(bool)
    assert ((result["prediction"] == "Attack").to_numpy() == truth).mean() > 0.9
    assert result.loc[result["prediction"] == "Normal", "family"].isna().all()
    assert result.loc[result["prediction"] == "Attack", "family"].isin(contract.FAMILIES).all()


@pytest.mark.parametrize("naming", ["original", "corrected", "snake"])
def test_every_naming_gives_the_same_verdicts(client: MoEClient, original_raw: pd.DataFrame, naming: str) -> None:
    canonical = load_flows(ORIGINAL_CSV).features
    expected = client.predict_batch(canonical)
    if naming == "original":
        frame = original_raw  # raw file columns, incl. ' Destination Port', ' Label' and 'Fwd Header Length.1'
    else:
        frame = canonical.rename(columns={f.name: getattr(f, "corrected" if naming == "corrected" else "snake")
                                          for f in FEATURES})
    # snake_case is also the cicflowmeter Python package's spelling, whose profile applies unless named
    extractor = None if naming == "original" else "cicflowmeter"  # the original file's header is detected
    result = client.predict_batch(frame, batch_size=50, extractor=extractor)
    pd.testing.assert_frame_equal(result, expected)


def test_named_extractor_profile_converts_before_scoring(client: MoEClient) -> None:
    """The python package's real nmap flows: scored through their profile they are attacks; the same columns
    taken at their names (frame bytes as payload bytes) are not."""
    raw = pd.read_csv(PYTHON_SCAN, nrows=200)
    converted = client.predict_batch(raw)
    assert (converted["prediction"] == "Attack").mean() >= 0.9
    by_name = client.predict_batch(raw, extractor="cicflowmeter")
    assert (by_name["prediction"] == "Attack").mean() < 0.5
    assert {"trust", "out_of_distribution"} <= set(converted.columns)
    assert converted["trust"].between(0.0, 1.0).all() and converted["out_of_distribution"].dtype == bool


def test_row_order_and_index_are_kept(client: MoEClient, mixed_flows: pd.DataFrame) -> None:
    reference = client.predict_batch(mixed_flows)
    rng = np.random.default_rng(3)
    order = rng.permutation(len(mixed_flows))
    shuffled = mixed_flows.iloc[order].set_axis([f"flow-{i}" for i in order])
    result = client.predict_batch(shuffled, batch_size=7, concurrency=5)  # many small requests in flight
    assert list(result.index) == list(shuffled.index)
    np.testing.assert_allclose(result["prob_attack"].to_numpy(), reference["prob_attack"].to_numpy()[order],
                               rtol=1e-5, atol=1e-6)


def test_lists_of_dicts_and_arrays(client: MoEClient, mixed_flows: pd.DataFrame) -> None:
    reference = client.predict_batch(mixed_flows.iloc[:20])
    from_dicts = client.predict_batch(mixed_flows.iloc[:20].to_dict(orient="records"))
    from_array = client.predict_batch(mixed_flows.iloc[:20].to_numpy())
    for result in (from_dicts, from_array):
        assert list(result.index) == list(range(20))
        np.testing.assert_allclose(result["prob_attack"], reference["prob_attack"], rtol=1e-5, atol=1e-6)


def test_missing_features(client: MoEClient, mixed_flows: pd.DataFrame) -> None:
    partial = mixed_flows.iloc[:50, ::2]  # every other feature absent
    result = client.predict_batch(partial)
    assert len(result) == 50 and result["prediction"].isin(contract.BINARY_LABELS).all()
    nothing = client.predict({})  # every feature missing still gets an answer
    assert nothing.prediction in contract.BINARY_LABELS
    flow = {name: value for name, value in mixed_flows.iloc[200].items() if name.startswith(("Flow", "Fwd IAT"))}
    zero = client.predict(flow, missing_strategy="zero")
    median = client.predict(flow, missing_strategy="median")
    assert zero.probabilities != median.probabilities  # the strategy reaches the server
    with pytest.raises(InvalidInputError) as info:
        client.predict(flow, missing_strategy="mode")
    assert info.value.field == "missing_strategy"


def test_bad_input_names_the_field_and_server_stays_up(client: MoEClient) -> None:
    with pytest.raises(InvalidInputError, match="Flow Duration") as info:
        client.predict({"Flow Duration": "twelve"})
    assert info.value.field == "Flow Duration"
    with pytest.raises(InvalidInputError) as info:
        client.predict_batch(np.zeros((2, 69)))
    assert info.value.field == "FEATURES"
    # Bypass the client's own checks: the server's rejection is translated too.
    with pytest.raises(InvalidInputError, match="IMPUTATION") as info:
        client._infer_retrying(np.zeros((2, len(FEATURE_NAMES)), np.float32), "bogus", contract.PRIORITY_REALTIME)
    assert info.value.field == "IMPUTATION"
    assert client.is_ready() and client.predict({"Flow Duration": 12}).prediction in contract.BINARY_LABELS


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unreachable_server(protocol: str) -> None:
    port = free_port()  # nothing listens there
    client = MoEClient(f"127.0.0.1:{port}", protocol=protocol, timeout=5, retries=1, backoff=0.01)
    assert not client.is_live() and not client.is_ready()
    assert client.health()["live"] is False
    with pytest.raises(ServerUnavailableError, match=str(port)):
        client.predict({"Flow Duration": 1})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_too_slow_answer_is_a_timeout(triton_server, protocol: str) -> None:
    client = MoEClient(url_of(triton_server, protocol), protocol=protocol, timeout=1e-4, retries=0)
    with pytest.raises(RequestTimeoutError, match="did not answer in time"):
        client.predict_batch(np.zeros((4096, len(FEATURE_NAMES))), batch_size=4096)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unknown_model(triton_server, protocol: str) -> None:
    client = MoEClient(url_of(triton_server, protocol), protocol=protocol, model_name="moe_ids_v9", retries=0)
    assert client.is_live() and not client.is_ready()
    with pytest.raises(ModelNotReadyError, match="moe_ids_v9"):
        client.predict({"Flow Duration": 1})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_client_matches_sync(triton_server, protocol: str, mixed_flows: pd.DataFrame) -> None:
    url = url_of(triton_server, protocol)
    with MoEClient(url, protocol=protocol) as sync:
        expected = sync.predict_batch(mixed_flows)
        one = sync.predict(mixed_flows.iloc[200].to_dict())

    async def run() -> tuple[pd.DataFrame, Prediction, bool]:
        async with AsyncMoEClient(url, protocol=protocol) as client:
            frame = await client.predict_batch(mixed_flows, batch_size=32, concurrency=4)
            single = await client.predict(mixed_flows.iloc[200].to_dict())
            return frame, single, await client.is_ready()

    frame, single, ready = asyncio.run(run())
    assert ready
    pd.testing.assert_frame_equal(frame, expected, rtol=1e-5, atol=1e-6)
    assert single.prediction == one.prediction and single.family == one.family


def test_async_client_errors() -> None:
    async def run() -> None:
        async with AsyncMoEClient(f"127.0.0.1:{free_port()}", protocol="http", retries=0, timeout=5) as client:
            assert not await client.is_live()
            await client.predict({"Flow Duration": 1})

    with pytest.raises(ServerUnavailableError):
        asyncio.run(run())


def test_analyze(client: MoEClient, mixed_flows: pd.DataFrame) -> None:
    prediction = client.predict(mixed_flows.iloc[200].to_dict())
    report = analyze(prediction)
    assert report["dominant_expert"] == max(prediction.gating, key=prediction.gating.get)
    assert 0.0 <= report["balance"] <= 1.0
    assert report["balance"] == pytest.approx(1 - abs(prediction.gating["Tabular Expert"]
                                                      - prediction.gating["Temporal Expert"]), abs=1e-6)
    assert "Attack" in report["interpretation"] and report["dominant_expert"] in report["interpretation"]
    row = client.predict_batch(mixed_flows.iloc[200:201]).iloc[0]
    assert analyze(row)["dominant_expert"] == report["dominant_expert"]
