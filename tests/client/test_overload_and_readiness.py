"""Overload and not-ready, provoked for real on a server of this module's own: the generated repository with a
2 ms queueing deadline, in explicit model-control mode so a model can be unloaded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from moe_ids.client import AsyncMoEClient, ModelNotReadyError, MoEClient, OverloadedError
from moe_ids.core import contract
from moe_ids.data.loading import load_flows

pytestmark = pytest.mark.integration

FLOWS_CSV = "data/cicids2017-original/orig_Friday-DDos_head9998.csv.gz"


@pytest.fixture(scope="module")
def tiny_queue_server(triton_serving, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    # One request per execution (max_batch_size 512 = one request of the flood) on one instance per step, so
    # requests queue instead of all joining one batch; 2 ms deadlines at admission and after it then reject part
    # of any flood for certain.
    with triton_serving(tmp_path_factory.mktemp("tiny-queue"),
                        extra_args=["--model-control-mode=explicit", "--load-model=*"], layout="ensemble",
                        max_batch_size=512, realtime_timeout_us=2000, bulk_timeout_us=2000, admitted_timeout_us=2000,
                        preprocess_instances=1, warmup_batch_sizes=()) as server:
        yield server


@pytest.fixture(scope="module")
def flood() -> np.ndarray:
    """40K real flows: enough 512-flow requests in flight to outrun a 2 ms queueing deadline."""
    return np.tile(load_flows(FLOWS_CSV).features.to_numpy(np.float32), (4, 1))


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_full_queue_raises_overloaded(tiny_queue_server, flood: np.ndarray, protocol: str) -> None:
    """Several clients flood a queue with a 2 ms deadline at once; at least one of them is told it was refused.

    One HTTP client alone encodes its requests one after another, slower than the server drains them, so the
    flood comes from several clients, as it would in production.
    """
    url = tiny_queue_server.grpc_url if protocol == "grpc" else tiny_queue_server.http_url

    def flood_once(part: np.ndarray) -> Exception | None:
        client = MoEClient(url, protocol=protocol, retries=0, concurrency=16)
        try:
            client.predict_batch(part, batch_size=512)
        except Exception as exc:  # noqa: BLE001 - collected and checked below
            return exc
        finally:
            client.close()
        return None

    with ThreadPoolExecutor(max_workers=6) as pool:
        errors = [e for e in pool.map(flood_once, np.array_split(flood[:24000], 6)) if e is not None]
    assert errors, "six concurrent clients never outran a 2 ms queueing deadline"
    for error in errors:
        assert isinstance(error, OverloadedError), repr(error)
        assert "request timeout expired" in str(error).lower()  # Triton's refusal or the classifier's
    assert MoEClient(url, protocol=protocol).is_ready()  # rejecting is not failing: the server serves on


def test_retries_ride_out_overload(tiny_queue_server, flood: np.ndarray) -> None:
    client = MoEClient(tiny_queue_server.grpc_url, retries=12, backoff=0.05, max_backoff=1.0, concurrency=8)
    result = client.predict_batch(flood[:20000], batch_size=512)
    assert len(result) == 20000 and result["prediction"].isin(contract.BINARY_LABELS).all()


def test_async_client_overloaded(tiny_queue_server, flood: np.ndarray) -> None:
    async def run() -> None:
        async with AsyncMoEClient(tiny_queue_server.grpc_url, retries=0, concurrency=16) as client:
            for _ in range(10):
                await client.predict_batch(flood, batch_size=512)

    with pytest.raises(OverloadedError):
        asyncio.run(run())


def test_unloaded_model_is_not_ready(tiny_queue_server) -> None:
    # Runs last in this module: it unloads the ensemble.
    # readiness, not a scored flow: with 2 ms budgets a single flow may be refused as overload on a busy machine
    client = MoEClient(tiny_queue_server.grpc_url, retries=0)
    assert client.is_ready() and client.model_info.name == contract.ENSEMBLE_MODEL
    admin = grpcclient.InferenceServerClient(tiny_queue_server.grpc_url)
    admin.unload_model(contract.ENSEMBLE_MODEL)
    assert client.is_live() and not client.is_ready()
    with pytest.raises(ModelNotReadyError, match=contract.ENSEMBLE_MODEL):
        client.predict({"Flow Duration": 5})
    with pytest.raises(ModelNotReadyError):
        MoEClient(tiny_queue_server.http_url, protocol="http", retries=0).refresh_model_info()
    assert client.health()["error"] is not None
