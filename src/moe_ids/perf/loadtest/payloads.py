"""Inference requests for the load generator, encoded once per process and replayed.

Locust shares the two CPU cores with the server, so encoding a 1024-flow body per request would measure the
client, not Triton. Each process therefore encodes a small pool of distinct requests per request kind up
front (different real flows, different NaN patterns) and the users cycle through it.

Three wire encodings of the same tensors: KServe v2 HTTP with binary tensors (the
``Inference-Header-Content-Length`` framing, built by tritonclient's request helper), KServe v2 HTTP JSON
(missing values as the bare ``NaN`` literal, the only spelling Triton's JSON parser accepts), and gRPC.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moe_ids.client.protocol import priority_parameters
from moe_ids.core.contract import (
    CONFIDENCE,
    ENSEMBLE_MODEL,
    IMPUTATION_PARAMETER,
    INPUT_FEATURES,
    INPUT_IMPUTATION,
    PREDICTED_CLASS,
)
from moe_ids.core.schema import N_FEATURES
from moe_ids.perf.loadtest.flows import make_batch
from moe_ids.perf.loadtest.scenarios import MALFORMATIONS, RequestKind

REQUESTED_OUTPUTS: tuple[str, ...] = (PREDICTED_CLASS, CONFIDENCE)

HTTP_INFER_PATH = f"/v2/models/{ENSEMBLE_MODEL}/infer"
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class Wire:
    """How the deployed server takes the imputation strategy (read from the model's metadata)."""

    imputation_input: bool = True


@dataclass
class Tensor:
    name: str
    datatype: str
    data: np.ndarray


@dataclass
class Request:
    """One logical request, independent of the protocol."""

    kind: str
    batch: int
    priority: int
    tensors: list[Tensor]
    parameters: dict[str, Any] = field(default_factory=dict)
    malformation: str | None = None

    @property
    def wire_parameters(self) -> dict[str, Any]:
        """The request parameters sent: the kind's own plus the priority level, as the SDK sends it."""
        return {**priority_parameters(self.priority), **self.parameters}


def wire_from_metadata(metadata: dict[str, Any]) -> Wire:
    """Imputation travels as the IMPUTATION input when the ensemble declares one, else as a parameter."""
    names = {str(i.get("name")) for i in metadata.get("inputs", [])}
    return Wire(imputation_input=INPUT_IMPUTATION in names)


def _imputation(strategy: str, batch: int, wire: Wire) -> tuple[list[Tensor], dict[str, Any]]:
    if wire.imputation_input:
        return [Tensor(INPUT_IMPUTATION, "BYTES", np.full((batch, 1), strategy.encode(), dtype=object))], {}
    return [], {IMPUTATION_PARAMETER: strategy}


def build_request(kind: RequestKind, flows: np.ndarray, rng: np.random.Generator, wire: Wire,
                  malformation: str | None = None) -> Request:
    """The tensors of one request of ``kind``; ``malformation`` breaks it in one of MALFORMATIONS' ways."""
    x = make_batch(flows, kind.batch, kind.missing, rng)
    tensors = [Tensor(INPUT_FEATURES, "FP32", x)]
    params: dict[str, Any] = {}
    if kind.imputation is not None:
        extra, params = _imputation(kind.imputation, kind.batch, wire)
        tensors += extra
    if malformation == "wrong-width":
        tensors[0] = Tensor(INPUT_FEATURES, "FP32", np.ascontiguousarray(x[:, : N_FEATURES - 1]))
    elif malformation == "wrong-datatype":
        tensors[0] = Tensor(INPUT_FEATURES, "FP64", x.astype(np.float64))
    elif malformation == "unknown-imputation":
        extra, params = _imputation("nearest-neighbour", kind.batch, wire)
        tensors = [tensors[0], *extra]
    elif malformation == "missing-input":
        tensors = tensors[1:]
    elif malformation is not None:
        raise ValueError(f"unknown malformation {malformation!r}; choose from {MALFORMATIONS}")
    return Request(kind.name, kind.batch, kind.priority, tensors, params, malformation)


def build_pool(kind: RequestKind, flows: np.ndarray, rng: np.random.Generator, wire: Wire,
               size: int) -> list[Request]:
    """``size`` distinct requests of ``kind``; malformed kinds rotate through every malformation."""
    if kind.malformed:
        bad = itertools.cycle(MALFORMATIONS)
        return [build_request(kind, flows, rng, wire, next(bad)) for _ in range(max(size, len(MALFORMATIONS)))]
    return [build_request(kind, flows, rng, wire) for _ in range(size)]


def pool_size(kind: RequestKind) -> int:
    """Enough variety to defeat any caching, small enough that a 1024-flow pool stays a few MB."""
    return 64 if kind.batch <= 16 else 8


# ---------------------------------------------------------------- HTTP, binary tensors

@dataclass
class HttpBody:
    body: bytes
    headers: dict[str, str]


def encode_http_binary(req: Request) -> HttpBody:
    import tritonclient.http as httpclient

    inputs = []
    for t in req.tensors:
        inp = httpclient.InferInput(t.name, list(t.data.shape), t.datatype)
        inp.set_data_from_numpy(t.data, binary_data=True)
        inputs.append(inp)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in REQUESTED_OUTPUTS]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs, priority=req.priority, parameters=req.wire_parameters)
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers[HEADER_LENGTH] = str(json_size)
    return HttpBody(bytes(body), headers)


# ---------------------------------------------------------------- HTTP, JSON

def _json_data(t: Tensor) -> list[Any]:
    if t.datatype == "BYTES":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in t.data.reshape(-1)]
    return t.data.reshape(-1).tolist()


def encode_http_json(req: Request) -> HttpBody:
    """KServe v2 JSON; ``json.dumps`` writes NaN as the bare literal Triton expects."""
    doc: dict[str, Any] = {
        "inputs": [{"name": t.name, "shape": list(t.data.shape), "datatype": t.datatype, "data": _json_data(t)}
                   for t in req.tensors],
        "outputs": [{"name": name} for name in REQUESTED_OUTPUTS],
        "parameters": {"priority": req.priority, **req.wire_parameters},
    }
    return HttpBody(json.dumps(doc, allow_nan=True).encode(), {"Content-Type": "application/json"})


def check_http_response(body: bytes, header_length: str | None, batch: int) -> str | None:
    """None when the response carries every requested output with ``batch`` rows, else what is wrong."""
    try:
        head = body[: int(header_length)] if header_length else body
        doc = json.loads(head)
    except (ValueError, TypeError) as exc:
        return f"unparseable response: {exc}"
    shapes = {o.get("name"): o.get("shape") for o in doc.get("outputs", [])}
    for name in REQUESTED_OUTPUTS:
        if name not in shapes:
            return f"response lacks output {name}"
        if not shapes[name] or shapes[name][0] != batch:
            return f"output {name} has shape {shapes[name]}, expected {batch} rows"
    return None


def http_error_text(body: bytes) -> str:
    """Triton's error message from a failed HTTP response (its JSON ``error`` field when present)."""
    try:
        return str(json.loads(body).get("error") or body[:300].decode(errors="replace"))
    except (ValueError, AttributeError):
        return body[:300].decode(errors="replace")


# ---------------------------------------------------------------- gRPC

@dataclass
class GrpcCall:
    inputs: list[Any]
    outputs: list[Any]
    priority: int
    parameters: dict[str, Any] | None


def encode_grpc(req: Request) -> GrpcCall:
    import tritonclient.grpc as grpcclient

    inputs = []
    for t in req.tensors:
        inp = grpcclient.InferInput(t.name, list(t.data.shape), t.datatype)
        inp.set_data_from_numpy(t.data)
        inputs.append(inp)
    outputs = [grpcclient.InferRequestedOutput(name) for name in REQUESTED_OUTPUTS]
    return GrpcCall(inputs, outputs, req.priority, req.wire_parameters)
