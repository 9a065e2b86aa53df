"""Input messages to feature rows, verdicts to output messages: the payload half of the streaming contract.

An input message is ``{"id": str, "features": {name: number | null}}`` with optional ``sensor``, ``ts``,
``imputation`` and ``flow`` (identifier fields, copied into the verdict so an alert names its hosts). Feature
names may use any naming the SDK accepts and are converted by the extractor profile their spelling
identifies, exactly as ``predict_batch`` does; on ``flows.zeek.>`` / ``flows.suricata.>`` the body is the
sensor's own record, mapped by the SDK's ``from_zeek_conn`` / ``from_suricata_flow``. Anything that cannot
become a feature row raises ``Rejected`` with a reason from ``REASONS``: the worker dead-letters it instead of
sending a wrong number or retrying it forever.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
import pandas as pd

from moe_ids.client.errors import InvalidInputError
from moe_ids.client.features import column_mapping, encode_frame
from moe_ids.client.model_info import ModelInfo
from moe_ids.client.results import ATTACK, prediction_dicts
from moe_ids.client.suricata import from_suricata_flow
from moe_ids.client.zeek import from_zeek_conn
from moe_ids.core.contract import DEFAULT_IMPUTATION_NAME
from moe_ids.core.preprocessing import STRATEGIES
from moe_ids.data import extractors
from moe_ids.data.extractors import AUTO, DEFAULT_PROFILE

from . import topology

REASONS: tuple[str, ...] = (
    "not_json",  # the payload does not parse as JSON
    "not_object",  # JSON, but not an object
    "missing_id",  # no non-empty string id (body "id", or for sensor records Nats-Msg-Id / uid / flow_id)
    "bad_features",  # "features" absent or not an object
    "unknown_feature",  # a name that is no model feature in any supported naming
    "wrong_type",  # a feature value that is not a number or null, or a field of the wrong type
    "bad_imputation",  # "imputation" not one of the model's strategies
    "bad_record",  # a Zeek / Suricata record the SDK's mapping cannot read
    "rejected_by_model",  # the server refused this flow's values (the rest of its batch was scored)
    "too_many_deliveries",  # delivered more often than the worker's limit without a verdict
    "verdict_too_large",  # the verdict, with the input's "flow" / "ts" copied into it, exceeds the broker's limit
)
MAX_ID_LENGTH = 512
_FEATURE_TYPES = frozenset({int, float, type(None)})  # what JSON numbers and null parse to; bool is not a number
ALLOWED_FIELDS = frozenset({"id", "features", "sensor", "ts", "imputation", "flow"})


class Rejected(ValueError):
    """A message that cannot be scored; ``reason`` is one of ``REASONS``, the text says what and where."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class FlowInput:
    """One valid input: features by the name they were sent under, and what the verdict carries back."""

    id: str
    sensor: str
    features: dict[str, float | None]
    extractor: str  # AUTO: convert by the names' spelling; DEFAULT_PROFILE: already in the model's semantics
    imputation: str | None = None
    ts: Any = None
    flow: dict[str, Any] = field(default_factory=dict)


def parse_input(subject: str, data: bytes, header_id: str | None = None) -> FlowInput:
    """The input a message holds, or ``Rejected``; ``header_id`` is its ``Nats-Msg-Id`` header, if any."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:  # Python producers write NaN / Infinity for missing values: accepted, they mean missing
            body = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise Rejected("not_json", f"payload is not JSON ({exc})") from None
    if not isinstance(body, dict):  # what both JSON parsers return for an object
        raise Rejected("not_object", f"payload is JSON {type(body).__name__}, expected an object")
    kind = topology.record_kind(subject)
    if kind is not None:
        return _parse_record(kind, subject, body, header_id)
    flow_id = _check_id(body.get("id"), "id")
    if not ALLOWED_FIELDS.issuperset(body):
        unknown_fields = sorted(set(body) - ALLOWED_FIELDS)
        raise Rejected("unknown_feature", f"unknown field(s) {unknown_fields} in message {flow_id!r}; features "
                                          "go inside \"features\"")
    features = body.get("features")
    if not isinstance(features, dict):
        raise Rejected("bad_features", f"message {flow_id!r}: \"features\" must be an object of name -> number "
                                       f"or null, got {type(features).__name__}")
    if not set(map(type, features.values())) <= _FEATURE_TYPES:
        name, value = next((k, v) for k, v in features.items() if type(v) not in _FEATURE_TYPES)
        raise Rejected("wrong_type", f"message {flow_id!r}: feature {name!r} is {value!r} "
                                         f"({type(value).__name__}), expected a number or null")
    imputation = body.get("imputation")
    if imputation is not None:
        if not isinstance(imputation, str) or imputation.strip().lower() not in (*STRATEGIES, DEFAULT_IMPUTATION_NAME):
            raise Rejected("bad_imputation", f"message {flow_id!r}: imputation {imputation!r}, expected one of "
                                             f"{', '.join(STRATEGIES)}")
        imputation = imputation.strip().lower()
    flow = body.get("flow") or {}
    if not isinstance(flow, dict):
        raise Rejected("wrong_type", f"message {flow_id!r}: \"flow\" must be an object of identifier fields")
    sensor = body.get("sensor")
    if sensor is not None and not isinstance(sensor, str):
        raise Rejected("wrong_type", f"message {flow_id!r}: \"sensor\" must be a string, got {sensor!r}")
    return FlowInput(id=flow_id, sensor=topology.sensor_token(sensor), features=features, extractor=AUTO,
                     imputation=imputation, ts=body.get("ts"), flow=flow)


def _check_id(value: Any, what: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and what != "id":
        value = str(value)  # Suricata's flow_id is a number
    if not isinstance(value, str) or not value.strip():
        raise Rejected("missing_id", f"{what} must be a non-empty string, got {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise Rejected("missing_id", f"{what} is {len(value)} characters long, at most {MAX_ID_LENGTH}")
    return value


def _parse_record(kind: str, subject: str, body: Mapping[str, Any], header_id: str | None) -> FlowInput:
    ident_field = "uid" if kind == "zeek" else "flow_id"
    raw_id = header_id if header_id else body.get(ident_field)
    flow_id = _check_id(raw_id, f"{topology.MSG_ID_HEADER} header or {ident_field}")
    try:
        features = from_zeek_conn(body) if kind == "zeek" else from_suricata_flow(body)
    except ValueError as exc:
        raise Rejected("bad_record", f"{kind} record {flow_id!r}: {exc}") from None
    if kind == "zeek":
        flow = {k: body[k] for k in ("uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto") if k in body}
        ts = body.get("ts")
    else:
        flow = {k: body[k] for k in ("flow_id", "src_ip", "src_port", "dest_ip", "dest_port", "proto") if k in body}
        ts = body.get("timestamp")
    clean = {k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
             for k, v in features.items()}
    return FlowInput(id=flow_id, sensor=topology.sensor_token(topology.subject_sensor(subject)), features=clean,
                     extractor=DEFAULT_PROFILE, ts=ts, flow=flow)


class FeatureEncoder:
    """Rows of inputs -> the FEATURES tensor of the deployed model, one vectorised conversion per naming.

    Names are checked once per distinct set of names (a sensor sends the same set every time), so a message
    with a typo is rejected on its own while its batch is scored.
    """

    def __init__(self, info: ModelInfo) -> None:
        self.info = info
        self._check = lru_cache(maxsize=256)(self._check_names)
        self._positions: dict[tuple[str, tuple[str, ...]], tuple[list[int], list[int]] | None] = {}

    def _check_names(self, names: tuple[str, ...]) -> str | None:
        try:
            column_mapping(sorted(names), self.info.feature_names, "raise")
        except InvalidInputError as exc:
            return str(exc)
        return None

    def check(self, flow: FlowInput) -> None:
        """Raise ``Rejected`` for names that are not features (or one feature given twice)."""
        problem = self._check(tuple(flow.features))  # the names in the order sent: one cache entry per producer
        if problem is not None:
            raise Rejected("unknown_feature", f"message {flow.id!r}: {problem}")

    def encode(self, flows: Sequence[FlowInput]) -> np.ndarray:
        """[len(flows), F] float32 in the model's feature order and semantics (NaN = missing)."""
        out = np.full((len(flows), self.info.n_features), np.nan, dtype=np.float32)
        groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
        for i, flow in enumerate(flows):
            groups.setdefault((flow.extractor, tuple(flow.features)), []).append(i)
        for (extractor, names), rows in groups.items():
            values = np.array([list(flows[i].features.values()) for i in rows], dtype=np.float64)
            values = values.reshape(len(rows), len(names))
            positions = self._identity_positions(extractor, names)
            if positions is not None:  # the model's own semantics: straight into the tensor
                with np.errstate(over="ignore", invalid="ignore"):
                    block = values[:, positions[0]].astype(np.float32)
                out[np.ix_(rows, positions[1])] = np.where(np.isfinite(block), block, np.nan)
            else:
                frame = pd.DataFrame(values, columns=list(names))
                out[rows] = encode_frame(frame, self.info.feature_names, "ignore", extractor)
        return out

    def _identity_positions(self, extractor: str, names: tuple[str, ...]) -> tuple[list[int], list[int]] | None:
        """(value columns, tensor columns) when ``names`` need no conversion, else None; cached per naming."""
        key = (extractor, names)
        if key not in self._positions:
            if len(self._positions) > 4096:  # producers that send only their non-null features: bounded cache
                self._positions.clear()
            profile = extractors.resolve(extractor, names)
            if profile.identity:
                mapping = column_mapping(names, self.info.feature_names, "ignore")
                where = {name: i for i, name in enumerate(self.info.feature_names)}
                pairs = [(j, where[mapping[n]]) for j, n in enumerate(names) if n in mapping]
                self._positions[key] = ([p[0] for p in pairs], [p[1] for p in pairs])
            else:
                self._positions[key] = None
        return self._positions[key]


def strategies(flows: Sequence[FlowInput]) -> list[str | None]:
    return [flow.imputation for flow in flows]


def severity(prediction: str, confidence: float, high: float, review: float) -> str | None:
    """``high`` / ``review`` for an Attack verdict above the thresholds, None otherwise."""
    if prediction != ATTACK:
        return None
    if confidence > high:
        return "high"
    if confidence > review:
        return "review"
    return None


def verdicts(flows: Sequence[FlowInput], results: pd.DataFrame | Mapping[str, np.ndarray],
             info: ModelInfo) -> list[dict[str, Any]]:
    """One verdict object per input (the ``Prediction`` fields plus id, sensor, ts, flow), in order, from the
    ``predict_batch`` / ``predict_outputs`` results of those inputs."""
    if len(results["confidence"]) != len(flows):
        raise ValueError(f"{len(results['confidence'])} results for {len(flows)} flows")
    out = []
    for flow, prediction in zip(flows, prediction_dicts(results, info)):
        verdict: dict[str, Any] = {"id": flow.id, **prediction, "sensor": flow.sensor}
        if flow.ts is not None:
            verdict["ts"] = flow.ts
        if flow.flow:
            verdict["flow"] = flow.flow
        out.append(verdict)
    return out


def encode_json(obj: Mapping[str, Any]) -> bytes:
    """Compact standard JSON: a non-finite number (a producer's NaN in ``ts`` or ``flow``) becomes null rather
    than a literal other tools cannot parse; numpy scalars become numbers, anything else unknown its text."""
    return orjson.dumps(obj, default=str, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def alert_body(verdict_body: bytes, level: str) -> bytes:
    """The alert: the verdict's JSON object with ``"severity"`` appended, spliced into the encoded verdict rather
    than encoded a second time (most flows of an attack raise one, so this is per-flow cost)."""
    if not verdict_body.endswith(b"}") or level not in ("high", "review"):
        raise ValueError(f"not an encoded verdict object or an unknown severity {level!r}")
    separator = b"," if len(verdict_body) > 2 else b""
    return verdict_body[:-1] + separator + b'"severity":"' + level.encode() + b'"}'


def dead_letter(subject: str, data: bytes, reason: str, detail: str, delivered: int, stream_seq: int | None,
                max_bytes: int | None = None) -> bytes:
    """The DLQ entry: the original payload (text, or base64 when it is not UTF-8), why, and where it came from.

    An entry that would not fit in ``max_bytes`` (an input near the broker's limit grows when quoted) keeps the
    start of the payload and says so (``payload_truncated``: the original length); the whole input stays in
    FLOWS at ``stream_sequence`` for as long as that stream keeps messages."""
    entry: dict[str, Any] = {"reason": reason, "detail": detail, "subject": subject, "delivered": delivered,
                             "stream_sequence": stream_seq}
    try:
        entry["payload"] = data.decode("utf-8")
    except UnicodeDecodeError:
        entry["payload_base64"] = base64.b64encode(data).decode()
    body = json.dumps(entry, separators=(",", ":")).encode()
    if max_bytes is None or len(body) <= max_bytes:
        return body
    key = "payload" if "payload" in entry else "payload_base64"
    text = entry[key]
    entry["payload_truncated"] = len(data)

    def encoded(keep: int) -> bytes:
        return json.dumps({**entry, key: text[:keep]}, separators=(",", ":")).encode()

    low, high = 0, len(text)  # the longest start of the payload that fits (escapes make it not a subtraction)
    while low < high:
        mid = (low + high + 1) // 2
        if len(encoded(mid)) <= max_bytes:
            low = mid
        else:
            high = mid - 1
    return encoded(low)
