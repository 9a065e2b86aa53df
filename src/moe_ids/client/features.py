"""Turning user flows (dicts, DataFrames, arrays) into the FEATURES tensor the server expects.

Flows arrive in any of the schema's namings (original CIC-IDS2017, corrected release, cicflowmeter
snake_case). Names are resolved with the project's one alias table; a feature that is absent is sent as NaN,
which the server imputes and flags as missing. Columns every flow CSV carries that are not features
(identifiers, labels, the original files' dropped columns, the corrected release's extra counters) are skipped
silently; anything else is an unknown name and raises, warns or is ignored as the caller chooses, because a
typo ("flow_duraton") would otherwise turn into a silently missing feature.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from moe_ids.core.schema import (
    DROPPED_COLUMNS,
    FEATURE_NAMES,
    HOST_TCP_FEATURES,
    IDENTIFIER_COLUMNS,
    INFINITY_WORDS,
    canonical_name,
    normalize_name,
)
from moe_ids.data import extractors
from moe_ids.data.extractors import AUTO

from .errors import InvalidInputError

UnknownPolicy = Literal["raise", "warn", "ignore"]
UNKNOWN_POLICIES: tuple[str, ...] = ("raise", "warn", "ignore")

# Non-feature columns of the corrected CIC-IDS2017 release / newer CICFlowMeter and of labelled files.
_EXTRA_KNOWN = {
    "label", "attempted_category", "fwd_rst_flags", "bwd_rst_flags", "fwd_bytes_bulk_avg", "fwd_packet_bulk_avg",
    "fwd_bulk_rate_avg", "bwd_bytes_bulk_avg", "bwd_packet_bulk_avg", "bwd_bulk_rate_avg", "icmp_code",
    "icmp_type", "total_tcp_flow_time", "fwd_byts_b_avg", "fwd_pkts_b_avg", "fwd_blk_rate_avg", "bwd_byts_b_avg",
    "bwd_pkts_b_avg", "bwd_blk_rate_avg", "src_mac", "dst_mac", "simillarhttp", "unnamed_0", "index",
}
KNOWN_NON_FEATURES: frozenset[str] = frozenset(
    {normalize_name(c) for c in DROPPED_COLUMNS} | set(IDENTIFIER_COLUMNS) | _EXTRA_KNOWN
)


def is_known_non_feature(name: str) -> bool:
    """True for columns that flow files carry but that are deliberately not model inputs."""
    key = normalize_name(str(name))
    return key in KNOWN_NON_FEATURES or key.rstrip("0123456789").rstrip("_") in KNOWN_NON_FEATURES


def check_extractor(extractor: str | None) -> str:
    """``auto`` (detect from the column names) or the name of a column-based extractor profile."""
    name = AUTO if extractor is None else str(extractor)
    if name != AUTO:
        try:
            extractors.resolve(name, ())
        except ValueError as exc:
            raise InvalidInputError(str(exc), "extractor") from None
    return name


def check_unknown_policy(unknown: str) -> str:
    if unknown not in UNKNOWN_POLICIES:
        raise InvalidInputError(f"unknown={unknown!r}: expected one of {', '.join(UNKNOWN_POLICIES)}", "unknown")
    return unknown


def column_mapping(columns: Iterable[Any], feature_names: Sequence[str], unknown: str = "raise") -> dict[Any, str]:
    """Input column -> canonical feature for the columns that are features; unknown names per policy."""
    check_unknown_policy(unknown)
    wanted = set(feature_names)
    mapping: dict[Any, str] = {}
    unknown_names: list[str] = []
    for col in columns:
        canonical = canonical_name(str(col))
        if canonical is not None and canonical in wanted:
            if canonical in mapping.values():
                other = next(c for c, v in mapping.items() if v == canonical)
                raise InvalidInputError(
                    f"feature {canonical!r} given twice, as {other!r} and as {col!r}", field=str(col)
                )
            mapping[col] = canonical
        elif not is_known_non_feature(str(col)):
            unknown_names.append(str(col))
    if unknown_names and unknown != "ignore":
        text = (f"unknown feature name(s) {unknown_names}: not a CIC-IDS2017 feature in any supported naming "
                "(original, corrected release, cicflowmeter snake_case)")
        if unknown == "raise":
            raise InvalidInputError(text + "; pass unknown='warn' or 'ignore' to skip them", field=unknown_names[0])
        warnings.warn(text + "; they are ignored", UserWarning, stacklevel=3)
    return mapping


def check_withheld(names: Sequence[str]) -> tuple[str, ...]:
    """Feature names a client always sends as missing; a clear error for a name that is no feature."""
    chosen = tuple(str(n) for n in names)
    unknown = [n for n in chosen if n not in FEATURE_NAMES]
    if unknown:
        raise InvalidInputError(f"withhold: {unknown} are not model features; e.g. "
                                f"moe_ids.core.schema.HOST_TCP_FEATURES = {list(HOST_TCP_FEATURES)}",
                                "withhold")
    return chosen


def withhold_columns(x: np.ndarray, feature_names: Sequence[str], withhold: Sequence[str]) -> np.ndarray:
    """The FEATURES tensor with the withheld features set to NaN (missing), as the server then imputes them."""
    if not withhold:
        return x
    held = set(withhold)
    x = np.array(x, copy=True)  # the caller's array stays as it was; its dtype too
    x[:, [i for i, name in enumerate(feature_names) if name in held]] = np.nan
    return x


def encode_frame(frame: pd.DataFrame, feature_names: Sequence[str], unknown: str = "raise",
                 extractor: str | None = AUTO) -> np.ndarray:
    """[n, F] float32 in ``feature_names`` order, in the model's semantics: values are converted by the
    extractor's profile (detected from the column names for ``auto``), absent, empty, non-finite and
    unavailable values become NaN."""
    try:
        profile = extractors.resolve(check_extractor(extractor), frame.columns)
    except ValueError as exc:
        raise InvalidInputError(str(exc), "extractor") from None
    mapping = column_mapping(frame.columns, feature_names, unknown)
    if profile.identity:  # the common real-time case: no frame to build, values go straight into the tensor
        out = np.full((len(frame), len(feature_names)), np.nan, dtype=np.float32)
        position = {name: i for i, name in enumerate(feature_names)}
        for col, name in mapping.items():
            out[:, position[name]] = _numeric_column(frame[col], str(col), frame.index)
        return out
    canonical = pd.DataFrame(index=pd.RangeIndex(len(frame)), columns=list(FEATURE_NAMES), dtype=np.float64)
    for col, name in mapping.items():
        if name in canonical.columns:
            canonical[name] = _numeric_column(frame[col], str(col), frame.index).astype(np.float64)
    converted = profile.convert(canonical)
    out = np.full((len(frame), len(feature_names)), np.nan, dtype=np.float32)
    for i, name in enumerate(feature_names):
        if name in converted.columns:
            out[:, i] = converted[name].to_numpy(dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(np.isfinite(out), out, np.nan).astype(np.float32, copy=False)


def encode_records(records: Sequence[Mapping[str, Any]], feature_names: Sequence[str],
                   unknown: str = "raise", extractor: str | None = AUTO) -> np.ndarray:
    """Encode flows given as dicts (one per flow); each dict may use its own naming."""
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise InvalidInputError(f"flow {i}: expected a mapping of feature name to value, got "
                                    f"{type(rec).__name__}", field="flows")
    return encode_frame(pd.DataFrame(list(records), index=pd.RangeIndex(len(records))), feature_names, unknown,
                        extractor)


def encode_array(values: Any, feature_names: Sequence[str]) -> np.ndarray:
    """A 2-D array whose columns are already in ``feature_names`` order (the server's order)."""
    try:
        x = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"FEATURES: values are not numbers ({exc})", field="FEATURES") from None
    if x.ndim == 1 and x.shape[0] == len(feature_names):
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != len(feature_names):
        raise InvalidInputError(
            f"FEATURES: expected a 2-D array [n, {len(feature_names)}] in the model's feature order, "
            f"got shape {list(x.shape)}", field="FEATURES")
    return np.where(np.isfinite(x), x, np.nan).astype(np.float32, copy=False)


def encode_flows(flows: Any, feature_names: Sequence[str], unknown: str = "raise",
                 extractor: str | None = AUTO) -> tuple[np.ndarray, pd.Index]:
    """Any supported input to (FEATURES array, index of the result frame). A 2-D array is taken as already in
    the model's order and semantics; named columns go through the extractor profile."""
    if isinstance(flows, pd.DataFrame):
        return encode_frame(flows, feature_names, unknown, extractor), flows.index
    if isinstance(flows, Mapping):
        return encode_records([flows], feature_names, unknown, extractor), pd.RangeIndex(1)
    if isinstance(flows, (str, bytes)):
        raise InvalidInputError("flows: expected a pandas DataFrame, a list of dicts or a 2-D array, got text (to "
                                "score a CSV file use `moe-ids score` or moe_ids.data.loading.load_flows)",
                                field="flows")
    if isinstance(flows, np.ndarray) or (isinstance(flows, Sequence) and flows and not isinstance(flows[0], Mapping)):
        x = encode_array(flows, feature_names)
        return x, pd.RangeIndex(x.shape[0])
    if isinstance(flows, Sequence):
        return encode_records(flows, feature_names, unknown, extractor), pd.RangeIndex(len(flows))
    raise InvalidInputError(
        f"flows: expected a pandas DataFrame, a list of dicts or a 2-D array, got {type(flows).__name__}",
        field="flows")


def _numeric_column(series: pd.Series, name: str, index: pd.Index) -> np.ndarray:
    """The column as float; a clear error naming the column and row for a value that is not a number."""
    if series.dtype.kind in "fiub":
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        numeric = pd.to_numeric(series.map(_scalar), errors="coerce")
        bad = numeric.isna() & ~series.map(_is_blank)
        if bad.any():
            row = bad.to_numpy().nonzero()[0][0]
            raise InvalidInputError(
                f"feature {name!r}: value {series.iloc[row]!r} at row {index[row]!r} is not a number",
                field=name)
        values = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(over="ignore", invalid="ignore"):
        values = values.astype(np.float32)
    return np.where(np.isfinite(values), values, np.nan)


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        return text if text.lower() not in INFINITY_WORDS else np.nan
    if isinstance(value, bool):
        return float(value)
    return value


def _is_blank(value: Any) -> bool:
    """Values that mean "missing": None, NaN, empty text, NaN/Infinity spellings, Zeek's '-' unset marker."""
    if value is None:
        return True
    if isinstance(value, str):
        text = value.strip().lower()
        return text in {"", "nan", "-", "null", "none"} or text in INFINITY_WORDS
    try:
        return bool(pd.isna(value)) or not np.isfinite(float(value))
    except (TypeError, ValueError):
        return False
