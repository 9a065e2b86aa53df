"""Locust users speaking to the ``moe_ids`` ensemble: HTTP binary, HTTP JSON and gRPC.

All three play the same scenario from the same request pools, so their numbers compare protocols, not
traffic. Users are closed-loop (no think time): the user count is the number of requests in flight.
gRPC runs on tritonclient's gRPC client with gRPC's gevent integration switched on before any channel
exists; each call fires one Locust request event, so gRPC lands in the same statistics, CSVs and gates.
"""

from __future__ import annotations

import json
import logging
import random
import time
import urllib.request
from typing import Any

import numpy as np
from locust import User, constant, task
from locust.contrib.fasthttp import FastHttpUser

from moe_ids.core.contract import ENSEMBLE_MODEL
from moe_ids.perf.loadtest import payloads
from moe_ids.perf.loadtest.flows import load_feature_matrix
from moe_ids.perf.loadtest.scenarios import IMPUTATION_STRATEGIES, RequestKind, Scenario, get_scenario

log = logging.getLogger(__name__)

_FLOWS: np.ndarray | None = None
_WIRE: payloads.Wire | None = None
_POOLS: dict[tuple[str, str], list[Any]] = {}


def _flows() -> np.ndarray:
    global _FLOWS
    if _FLOWS is None:
        _FLOWS = load_feature_matrix()
    return _FLOWS


def _scenario(options: object) -> Scenario:
    """The scenario of the run, with ``--imputation`` (when given) applied to every request kind."""
    base = get_scenario(getattr(options, "scenario", None) or "realtime")
    strategy = getattr(options, "imputation", None)
    if not strategy:
        return base
    if strategy not in IMPUTATION_STRATEGIES:
        raise ValueError(f"imputation: unknown strategy {strategy!r}; choose from {IMPUTATION_STRATEGIES}")
    kinds = tuple(RequestKind(k.name, k.batch, k.missing, strategy, k.priority, k.weight, k.malformed)
                  for k in base.kinds)
    return Scenario(base.name, base.description, kinds)


def _pool(protocol: str, kind: RequestKind, wire: payloads.Wire, seed: int, encode: Any) -> list[Any]:
    """Encoded requests of ``kind``, built once per process (the first user pays, the others reuse)."""
    key = (protocol, kind.name)
    if key not in _POOLS:
        rng = np.random.default_rng([seed, sum(map(ord, kind.name))])
        requests = payloads.build_pool(kind, _flows(), rng, wire, payloads.pool_size(kind))
        _POOLS[key] = [(r, encode(r)) for r in requests]
    return _POOLS[key]


class _ScenarioMixin:
    """Request selection shared by the user classes: weighted kind, then a random pooled request."""

    protocol = ""
    scenario: Scenario
    _rand: random.Random

    def _setup_scenario(self, options: object) -> None:
        self.scenario = _scenario(options)
        self._rand = random.Random()

    def _next(self, wire: payloads.Wire, encode: Any, seed: int) -> tuple[payloads.Request, Any]:
        kind = self._rand.choices(self.scenario.kinds, weights=self.scenario.weights)[0]
        return self._rand.choice(_pool(self.protocol, kind, wire, seed, encode))


def _seed(options: object) -> int:
    return int(getattr(options, "flow_seed", 0) or 0)


def _request_name(req: payloads.Request) -> str:
    return f"{req.kind}:{req.malformation}" if req.malformation else req.kind


class _HttpUser(_ScenarioMixin, FastHttpUser):
    abstract = True
    wait_time = constant(0)
    network_timeout = 30.0
    connection_timeout = 10.0
    encode: Any = None

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self._setup_scenario(options)
        self.wire = _http_wire(self.host)

    @task
    def infer(self) -> None:
        options = self.environment.parsed_options
        req, body = self._next(self.wire, type(self).encode, _seed(options))
        with self.client.post(payloads.HTTP_INFER_PATH, data=body.body, headers=body.headers,
                              name=_request_name(req), catch_response=True) as resp:
            content = resp.content or b""
            if req.malformation:
                if resp.status_code == 200:
                    resp.failure(f"server accepted a malformed request ({req.malformation})")
                else:
                    resp.failure(f"HTTP {resp.status_code}: {payloads.http_error_text(content)}")
            elif resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {payloads.http_error_text(content)}")
            else:
                problem = payloads.check_http_response(content, resp.headers.get(payloads.HEADER_LENGTH),
                                                       req.batch)
                if problem:
                    resp.failure(problem)
                else:
                    resp.success()


def _http_wire(host: str | None) -> payloads.Wire:
    """Read the ensemble's metadata once per process, outside Locust's statistics."""
    global _WIRE
    if _WIRE is None:
        try:
            with urllib.request.urlopen(f"{host}/v2/models/{ENSEMBLE_MODEL}", timeout=10) as resp:
                _WIRE = payloads.wire_from_metadata(json.load(resp))
        except OSError as exc:  # server not up: keep the default wire; the requests will show the failure
            log.warning("could not read %s metadata from %s: %s", ENSEMBLE_MODEL, host, exc)
            return payloads.Wire()
    return _WIRE


class HttpBinaryUser(_HttpUser):
    """KServe v2 over HTTP with binary tensors (what tritonclient sends; NaN travels as raw float bits)."""

    protocol = "http"
    encode = staticmethod(payloads.encode_http_binary)


class HttpJsonUser(_HttpUser):
    """KServe v2 over HTTP, pure JSON (what a curl or a non-Triton client sends)."""

    protocol = "http-json"
    encode = staticmethod(payloads.encode_http_json)


class GrpcUser(_ScenarioMixin, User):
    """tritonclient's gRPC client under gevent; one Locust request event per call."""

    protocol = "grpc"
    wait_time = constant(0)

    def on_start(self) -> None:
        import tritonclient.grpc as grpcclient

        _init_grpc_gevent()
        options = self.environment.parsed_options
        self._setup_scenario(options)
        self.client = grpcclient.InferenceServerClient(grpc_target(self.host))
        self.wire = self._grpc_wire()

    def on_stop(self) -> None:
        self.client.close()

    def _grpc_wire(self) -> payloads.Wire:
        global _WIRE
        if _WIRE is None:
            try:
                _WIRE = payloads.wire_from_metadata(self.client.get_model_metadata(ENSEMBLE_MODEL, as_json=True))
            except Exception as exc:  # noqa: BLE001 - server not up: requests will report it
                log.warning("could not read %s metadata over gRPC: %s", ENSEMBLE_MODEL, exc)
                return payloads.Wire()
        return _WIRE

    @task
    def infer(self) -> None:
        from tritonclient.utils import InferenceServerException

        req, call = self._next(self.wire, payloads.encode_grpc, _seed(self.environment.parsed_options))
        start = time.perf_counter()
        exception: Exception | None = None
        length = 0
        try:
            result = self.client.infer(ENSEMBLE_MODEL, call.inputs, outputs=call.outputs, priority=call.priority,
                                       parameters=call.parameters, client_timeout=30.0)
            response = result.get_response()
            length = sum(len(c) for c in response.raw_output_contents)
            if req.malformation:
                exception = AcceptedMalformedRequest(f"server accepted a malformed request ({req.malformation})")
            else:
                exception = _check_grpc_rows(result, req.batch)
        except InferenceServerException as exc:
            exception = TritonError(exc.message() or str(exc))
        self.environment.events.request.fire(
            request_type="gRPC", name=_request_name(req), response_time=(time.perf_counter() - start) * 1000,
            response_length=length, exception=exception, context={})


class TritonError(Exception):
    """The server's error message (tritonclient's exception has an empty repr, which Locust reports)."""


class AcceptedMalformedRequest(Exception):
    """The server answered 200 to a request it should have refused."""


class MissingOutput(Exception):
    """A successful response without the rows or outputs the client asked for."""


def _check_grpc_rows(result: Any, batch: int) -> Exception | None:
    for name in payloads.REQUESTED_OUTPUTS:
        out = result.get_output(name)
        if out is None:
            return MissingOutput(f"response lacks output {name}")
        if not out.shape or out.shape[0] != batch:
            return MissingOutput(f"output {name} has shape {list(out.shape)}, expected {batch} rows")
    return None


def grpc_target(host: str | None) -> str:
    """``host:port`` for the gRPC channel from Locust's ``--host`` (``grpc://`` or bare)."""
    if not host:
        raise ValueError("host: the gRPC user needs --host grpc://127.0.0.1:PORT")
    return host.split("://", 1)[-1].rstrip("/")


_GEVENT_READY = False


def _init_grpc_gevent() -> None:
    """gRPC's C core must cooperate with gevent, or one blocking call freezes every user in the process."""
    global _GEVENT_READY
    if not _GEVENT_READY:
        import grpc.experimental.gevent as grpc_gevent

        grpc_gevent.init_gevent()
        _GEVENT_READY = True
