"""Client SDK of the MoE intrusion detector on Triton: numpy, pandas and tritonclient only (no torch).

    from moe_ids.client import MoEClient, analyze
    with MoEClient("127.0.0.1:8001") as client:
        result = client.predict({"Flow Duration": 1200, "Total Fwd Packets": 3})
        print(result.prediction, analyze(result)["interpretation"])
"""

from __future__ import annotations

from .async_client import AsyncMoEClient
from .errors import (
    InvalidInputError,
    ModelNotReadyError,
    MoEClientError,
    OverloadedError,
    RequestTimeoutError,
    SchemaMismatchError,
    ServerUnavailableError,
)
from .model_info import ModelInfo
from .results import Prediction, analyze
from .retry import RetryPolicy
from .suricata import from_suricata_flow
from .sync_client import MoEClient
from .zeek import from_zeek_conn

__all__ = [
    "AsyncMoEClient",
    "InvalidInputError",
    "ModelInfo",
    "ModelNotReadyError",
    "MoEClient",
    "MoEClientError",
    "OverloadedError",
    "Prediction",
    "RequestTimeoutError",
    "RetryPolicy",
    "SchemaMismatchError",
    "ServerUnavailableError",
    "analyze",
    "from_suricata_flow",
    "from_zeek_conn",
]
