"""Encoding of user flows into the FEATURES tensor: namings, unknown names, missing values, bad values."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from moe_ids.client.errors import InvalidInputError
from moe_ids.client.features import encode_array, encode_flows, encode_frame, is_known_non_feature
from moe_ids.core.schema import FEATURE_NAMES, FEATURES
from moe_ids.data.loading import load_flows

ORIGINAL_CSV = "data/cicids2017-original/orig_Wednesday_head200.csv.gz"


@pytest.fixture(scope="module")
def real_rows() -> pd.DataFrame:
    return load_flows(ORIGINAL_CSV, nrows=20).features


@pytest.mark.parametrize("naming", ["name", "corrected", "snake"])
def test_every_naming_encodes_to_the_same_tensor(real_rows: pd.DataFrame, naming: str) -> None:
    renamed = real_rows.rename(columns={f.name: getattr(f, naming) for f in FEATURES})
    shuffled = renamed[list(renamed.columns[::-1])]  # column order must not matter
    x = encode_frame(shuffled, FEATURE_NAMES, extractor="cicflowmeter")
    np.testing.assert_array_equal(x, real_rows.to_numpy(np.float32))


def test_a_naming_that_only_one_extractor_writes_selects_its_profile(real_rows: pd.DataFrame) -> None:
    """snake_case is the cicflowmeter Python package's spelling: its frame lengths are sent as missing."""
    snake = real_rows.rename(columns={f.name: f.snake for f in FEATURES})
    x = encode_frame(snake, FEATURE_NAMES)
    column = FEATURE_NAMES.index("Total Length of Fwd Packets")
    assert np.isnan(x[:, column]).all()
    assert not np.isnan(real_rows["Total Length of Fwd Packets"]).any()


def test_absent_and_non_finite_values_are_missing() -> None:
    x, _ = encode_flows({"Flow Duration": 10, "Flow Bytes/s": "Infinity", "flow_pkts_s": None}, FEATURE_NAMES)
    assert x.shape == (1, len(FEATURE_NAMES))
    assert x[0, FEATURE_NAMES.index("Flow Duration")] == 10
    assert np.isnan(x[0, FEATURE_NAMES.index("Flow Bytes/s")])
    assert np.isnan(x[0, FEATURE_NAMES.index("Flow Packets/s")])
    assert np.isnan(x).sum() == len(FEATURE_NAMES) - 1


def test_unknown_name_raises_naming_it_or_warns_or_is_ignored() -> None:
    flow = {"Flow Duration": 1, "Flow Duraton": 2}
    with pytest.raises(InvalidInputError, match="Flow Duraton") as info:
        encode_flows(flow, FEATURE_NAMES)
    assert info.value.field == "Flow Duraton"
    with pytest.warns(UserWarning, match="Flow Duraton"):
        x, _ = encode_flows(flow, FEATURE_NAMES, unknown="warn")
    assert x[0, 0] == 1
    x, _ = encode_flows(flow, FEATURE_NAMES, unknown="ignore")
    assert x[0, 0] == 1


def test_identifier_label_and_dropped_columns_are_not_unknown() -> None:
    for name in ("Flow ID", " Source IP", "Dst Port", "Timestamp", "Label", "Destination Port",
                 "Fwd Header Length.1", "Fwd Avg Bytes/Bulk", "ICMP Code", "Total TCP Flow Time"):
        assert is_known_non_feature(name), name
    assert not is_known_non_feature("Flow Duraton")


def test_non_numeric_value_names_field_and_row() -> None:
    frame = pd.DataFrame({"Flow Duration": ["5", "abc"], "Total Fwd Packets": [1, 2]}, index=[7, 9])
    with pytest.raises(InvalidInputError, match=r"'Flow Duration'.*'abc'.*row 9") as info:
        encode_frame(frame, FEATURE_NAMES)
    assert info.value.field == "Flow Duration"


def test_same_feature_twice_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="given twice"):
        encode_flows({"Flow Duration": 1, "flow_duration": 2}, FEATURE_NAMES)


def test_array_must_have_model_width() -> None:
    with pytest.raises(InvalidInputError, match="FEATURES") as info:
        encode_array(np.zeros((3, 69)), FEATURE_NAMES)
    assert info.value.field == "FEATURES"
    x = encode_array(np.array([[np.inf] * len(FEATURE_NAMES)]), FEATURE_NAMES)
    assert np.isnan(x).all()


def test_text_is_not_a_table() -> None:
    with pytest.raises(InvalidInputError, match="load_flows") as info:
        encode_flows("flows.csv", FEATURE_NAMES)
    assert info.value.field == "flows"


def test_dataframe_index_is_kept(real_rows: pd.DataFrame) -> None:
    frame = real_rows.set_axis([f"flow-{i}" for i in range(len(real_rows))])
    _, index = encode_flows(frame, FEATURE_NAMES)
    assert list(index) == list(frame.index)


def test_client_imports_neither_torch_nor_onnx() -> None:
    code = ("import sys, moe_ids.client, moe_ids.cli.score, moe_ids.data.loading; "
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'onnxruntime', 'sklearn')]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_flow_without_features_is_all_missing() -> None:
    x, index = encode_flows({}, FEATURE_NAMES)
    assert x.shape == (1, len(FEATURE_NAMES)) and len(index) == 1
    assert all(math.isnan(v) for v in x[0])


def test_withheld_features_become_missing_and_unknown_names_are_refused(real_rows: pd.DataFrame) -> None:
    from moe_ids.client.features import check_withheld, withhold_columns
    from moe_ids.core.schema import HOST_TCP_FEATURES

    x = encode_frame(real_rows, FEATURE_NAMES)
    held = withhold_columns(x, FEATURE_NAMES, check_withheld(HOST_TCP_FEATURES))
    cols = [FEATURE_NAMES.index(f) for f in HOST_TCP_FEATURES]
    assert np.isfinite(x[:, cols]).any() and np.isnan(held[:, cols]).all()
    others = np.setdiff1d(np.arange(len(FEATURE_NAMES)), cols)
    np.testing.assert_array_equal(held[:, others], x[:, others])  # nothing else touched
    assert np.isfinite(x[:, cols]).any() and held.dtype == x.dtype  # the input not modified, its dtype kept
    with pytest.raises(InvalidInputError, match="Init Win"):
        check_withheld(["Init Win"])
