"""The feature schema: one list, two groups, every common naming resolves to it."""

import pandas as pd
import pytest

from moe_ids.core import schema
from moe_ids.data.loading import bundled_data_dir


def test_groups_partition_the_features():
    assert schema.N_FEATURES == 70
    assert sorted(schema.TABULAR_INDICES + schema.TEMPORAL_INDICES) == list(range(schema.N_FEATURES))
    temporal = {schema.FEATURE_NAMES[i] for i in schema.TEMPORAL_INDICES}
    assert {"Flow Duration", "Flow IAT Mean", "Idle Max", "Active Min", "Flow Bytes/s"} <= temporal
    assert "Total Fwd Packets" not in temporal


def test_dropped_columns_are_not_features():
    for col in schema.DROPPED_COLUMNS:
        assert col not in schema.FEATURE_NAMES
    assert "Destination Port" in schema.DROPPED_COLUMNS


@pytest.mark.parametrize(
    "alias, canonical",
    [
        ("Total Fwd Packet", "Total Fwd Packets"),
        ("FWD Init Win Bytes", "Init_Win_bytes_forward"),
        ("Fwd Segment Size Avg", "Avg Fwd Segment Size"),
        ("CWR Flag Count", "CWE Flag Count"),
        ("Packet Length Min", "Min Packet Length"),
        ("tot_fwd_pkts", "Total Fwd Packets"),
        ("flow_byts_s", "Flow Bytes/s"),
        ("init_fwd_win_byts", "Init_Win_bytes_forward"),
        (" Flow IAT Mean", "Flow IAT Mean"),
        ("FLOW-IAT-MEAN", "Flow IAT Mean"),
        ("flow_iat_mean", "Flow IAT Mean"),
    ],
)
def test_aliases(alias, canonical):
    assert schema.canonical_name(alias) == canonical


def test_identifiers_and_unknown_names_are_not_features():
    for name in ("Flow ID", "Src IP", "Timestamp", "Destination Port", "Label", "id", "Protocol", "bogus"):
        assert schema.canonical_name(name) is None


def test_every_corrected_release_feature_column_resolves():
    header = pd.read_csv(bundled_data_dir() / "cicids2017-improved" / "flows.csv.gz", nrows=0).columns
    mapping, _ = schema.resolve_columns(header)
    assert set(mapping.values()) == set(schema.FEATURE_NAMES)


def test_each_naming_is_complete_and_unambiguous():
    for attr in ("name", "corrected", "snake"):
        names = [getattr(f, attr) for f in schema.FEATURES]
        mapping, unknown = schema.resolve_columns(names)
        assert not unknown, attr
        assert list(mapping.values()) == list(schema.FEATURE_NAMES), attr


def test_duplicate_column_counts_once():
    mapping, unknown = schema.resolve_columns(["Fwd Header Length", "fwd_header_len"])
    assert list(mapping.values()) == ["Fwd Header Length"]
    assert unknown == ["fwd_header_len"]
