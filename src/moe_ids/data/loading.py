"""Loading CIC-IDS2017 flow CSVs in either published format into the model's feature matrix.

Handles the original MachineLearningCVE / TrafficLabelling files (leading spaces in names, the duplicated
``Fwd Header Length``, ``Infinity``/``NaN`` in the rate columns) and the corrected re-extraction (newer
CICFlowMeter names, identifier columns), detected from the header. Non-finite values become NaN, which the
preprocessing treats as a missing feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from moe_ids.core import labels as label_mod
from moe_ids.core.schema import FEATURE_NAMES, normalize_name, resolve_columns
from moe_ids.data import extractors
from moe_ids.data.tables import read_table

CsvFormat = Literal["original", "trafficlabelling", "corrected", "features"]


@dataclass
class FlowTable:
    """Flows as the model sees them, plus their labels when the file has them."""

    features: pd.DataFrame  # canonical feature columns in schema order, float64, NaN = missing
    labels: pd.Series | None  # cleaned raw labels
    binary: np.ndarray | None  # 1 = attack
    family: np.ndarray | None  # index into labels.FAMILIES, -1 = normal/unknown
    source_format: CsvFormat
    unknown_columns: list[str]
    extractor: str = "cicflowmeter"  # the profile whose semantics the columns were converted from

    def __len__(self) -> int:
        return len(self.features)


class NoFeatureColumns(ValueError):
    """A table none of whose columns is a flow feature: scored anyway, every flow would be all-missing and get the
    model's prior as its verdict, so the file is refused instead (most often another tool's CSV layout)."""

    def __init__(self, columns: list[object], source: object | None = None) -> None:
        self.columns = list(columns)
        shown = ", ".join(repr(str(c)) for c in columns[:8]) + (", ..." if len(columns) > 8 else "")
        where = f"{source}: " if source is not None else ""
        super().__init__(f"{where}none of its {len(columns)} columns ({shown}) is a flow feature of a supported "
                         "extractor (CICFlowMeter of any version, the cicflowmeter Python package; Zeek conn.log, "
                         "Suricata eve.json and pcap files are read as records): see `moe-ids extractors`")


def detect_format(columns: list[str]) -> CsvFormat:
    """Tell the CSV flavour from its header."""
    norm = {normalize_name(c) for c in columns}
    if "total_fwd_packet" in norm or "fwd_init_win_bytes" in norm or "attempted_category" in norm:
        return "corrected"
    if "flow_id" in norm and "source_ip" in norm:
        return "trafficlabelling"
    if "init_win_bytes_forward" in norm:
        return "original"
    return "features"


def frame_to_features(frame: pd.DataFrame, extractor: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Canonical feature frame in the model's semantics (schema order, NaN where absent, non-finite or
    unavailable from that extractor) and the unmatched columns.

    ``extractor`` names a profile of ``moe_ids.data.extractors``; ``None`` or ``auto`` detects it from the header.
    """
    profile = extractors.resolve(extractor, frame.columns)
    label_like = {"label", "attempted_category"}
    candidates = [c for c in frame.columns if normalize_name(str(c)) not in label_like]
    mapping, unknown = resolve_columns([str(c) for c in candidates])
    if not mapping:
        raise NoFeatureColumns(candidates)
    selected = frame[list(mapping)].rename(columns=mapping)
    values = selected.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    values = values.replace([np.inf, -np.inf], np.nan)
    return profile.convert(values.reindex(columns=list(FEATURE_NAMES))), unknown


def repeated_header_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows that repeat the header line: not flows, and read as flows they would be all-missing rows with the
    label "Label". CSE-CIC-IDS2018's day files hold thousands of them where CSVs were concatenated.

    A row counts when at least half of its cells spell their column's name; only a column pandas read as text can
    hold one, so a file without them costs one dtype check.
    """
    first = frame.columns[0] if len(frame.columns) else None
    if first is None or pd.api.types.is_numeric_dtype(frame[first].dtype):
        return np.zeros(len(frame), dtype=bool)
    candidates = np.flatnonzero(frame[first].astype(str).str.strip().to_numpy() == str(first).strip())
    out = np.zeros(len(frame), dtype=bool)
    if len(candidates):
        cells = frame.iloc[candidates].astype(str).apply(lambda col: col.str.strip() == str(col.name).strip())
        out[candidates] = cells.sum(axis=1).to_numpy() * 2 >= len(frame.columns)
    return out


def load_flows(path: str | Path, nrows: int | None = None, extractor: str | None = None) -> FlowTable:
    """Read a flow CSV (optionally gzip) or Parquet file of any supported extractor into a FlowTable in the model's
    semantics."""
    frame = read_table(path, nrows)
    frame = frame[~repeated_header_rows(frame)].reset_index(drop=True)
    fmt = detect_format(list(frame.columns))
    profile = extractors.resolve(extractor, frame.columns)
    try:
        features, unknown = frame_to_features(frame, profile.name)
    except NoFeatureColumns as exc:
        raise NoFeatureColumns(exc.columns, source=path) from None
    label_col = next((c for c in frame.columns if normalize_name(c) == "label"), None)
    if label_col is None:
        return FlowTable(features, None, None, None, fmt, unknown, profile.name)
    cleaned, binary, family = label_mod.encode(frame[label_col])
    return FlowTable(features, cleaned.reset_index(drop=True), binary, family, fmt, unknown, profile.name)


def bundled_data_dir() -> Path:
    """The real CIC-IDS2017 flows shipped with the project (see data/README.md for the citation)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "data" / "cicids2017-improved" / "flows.csv.gz"
        if candidate.exists():
            return candidate.parent.parent
    packaged = resources.files("moe_ids").joinpath("_data")
    return Path(str(packaged))


def default_training_csv() -> Path:
    """The corrected-release sample used to train the default model."""
    return bundled_data_dir() / "cicids2017-improved" / "flows.csv.gz"
