"""The protocol-independent behaviour both clients inherit from ``ClientBase``, checked without a server."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from moe_ids.client import AsyncMoEClient, MoEClient
from moe_ids.client.base import ClientBase
from moe_ids.client.errors import ServerUnavailableError
from moe_ids.client.model_info import ModelInfo
from moe_ids.core import contract
from moe_ids.core.schema import FEATURE_NAMES


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _info() -> ModelInfo:
    config = {"name": contract.ENSEMBLE_MODEL, "max_batch_size": 4,
              "input": [{"name": contract.INPUT_FEATURES, "data_type": "TYPE_FP32", "dims": [len(FEATURE_NAMES)]},
                        {"name": contract.INPUT_IMPUTATION, "data_type": "TYPE_STRING", "dims": [1],
                         "optional": True}],
              "output": [{"name": n, "data_type": "TYPE_FP32", "dims": [2]} for n in (contract.PROBABILITIES,
                                                                                        contract.GATING)],
              "parameters": {"feature_names": {"string_value": ",".join(FEATURE_NAMES)}}}
    return ModelInfo.from_config(config, contract.ENSEMBLE_MODEL)


@pytest.mark.parametrize("cls", [MoEClient, AsyncMoEClient])
def test_both_clients_are_the_base_with_their_own_name(cls: type) -> None:
    client = cls(f"127.0.0.1:{_free_port()}", protocol="http")
    assert isinstance(client, ClientBase)
    assert repr(client).startswith(f"{cls.__name__}(url='127.0.0.1:")
    assert client._config_kw() == {}  # HTTP answers JSON already


def test_an_unreachable_server_gives_the_same_health_report_from_both_clients() -> None:
    url = f"127.0.0.1:{_free_port()}"
    with MoEClient(url, timeout=1.0) as sync:
        blocking = sync.health()

    async def probe() -> dict:
        async with AsyncMoEClient(url, timeout=1.0) as client:
            return await client.health()

    assert blocking == asyncio.run(probe())
    assert blocking["live"] is False and blocking["ready"] is False
    assert blocking["error"] == f"cannot reach Triton at {url}"


def test_grpc_asks_for_the_config_as_json() -> None:
    client = MoEClient(f"127.0.0.1:{_free_port()}", timeout=2.5)
    assert client._config_kw() == {"as_json": True, "client_timeout": 2.5}
    assert client._config_kw(with_timeout=False) == {"as_json": True}
    client.close()


def test_a_batch_plan_cuts_requests_at_the_model_limit_with_per_flow_strategies() -> None:
    client = MoEClient(f"127.0.0.1:{_free_port()}")
    flows = np.arange(10 * len(FEATURE_NAMES), dtype=np.float64).reshape(10, -1)
    strategies = ["zero", "mean", None, "median", "zero", "mean", None, "median", "zero", "mean"]
    plan = client._plan(flows, _info(), 1024, strategies, "bulk", None, None)
    assert [(s.start, s.stop) for s in plan.slices] == [(0, 4), (4, 8), (8, 10)]  # max_batch_size 4 wins
    assert plan.priority == contract.PRIORITY_BULK
    x, strategy = plan.request(plan.slices[1])
    np.testing.assert_array_equal(x, flows[4:8].astype(np.float32))
    assert list(strategy) == ["zero", "mean", contract.DEFAULT_IMPUTATION_NAME, "median"]  # None: the default
    client.close()


def test_an_unreachable_server_is_an_error_of_the_sdk_not_of_tritonclient() -> None:
    client = MoEClient(f"127.0.0.1:{_free_port()}", timeout=1.0, retries=0)
    with pytest.raises(ServerUnavailableError):
        client.predict({"Flow Duration": 1.0})
    client.close()
