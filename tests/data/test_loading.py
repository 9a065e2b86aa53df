"""The loader on the real published formats: quirks of the original files and the corrected release."""

import numpy as np
import pytest

from moe_ids.core.labels import FAMILIES
from moe_ids.core.schema import FEATURE_NAMES
from moe_ids.data.extractors import get_profile
from moe_ids.data.loading import NoFeatureColumns, bundled_data_dir, detect_format, load_flows

ORIG = bundled_data_dir() / "cicids2017-original"


def test_original_format_infinity_becomes_missing():
    t = load_flows(ORIG / "orig_Friday-DDos_head9998.csv.gz")
    assert t.source_format == "original"
    assert list(t.features.columns) == list(FEATURE_NAMES)
    rates = t.features[["Flow Bytes/s", "Flow Packets/s"]].to_numpy()
    assert np.isfinite(t.features.to_numpy()[~np.isnan(t.features.to_numpy())]).all()
    assert 1 <= np.isnan(rates).any(axis=1).sum() <= 7  # the README: 7 rows hold Infinity/NaN
    assert (t.binary == 0).all()


def test_original_duplicated_header_length_is_read_once():
    t = load_flows(ORIG / "orig_Wednesday_head200.csv.gz")
    assert "Fwd Header Length.1" in t.unknown_columns
    assert "Destination Port" in t.unknown_columns
    assert t.features["Fwd Header Length"].notna().all()
    assert len(t) == 200


def test_binarised_labels():
    t = load_flows(ORIG / "orig_Tuesday_head4998_binarylabel.csv.gz")
    assert int(t.binary.sum()) == 89 and len(t) == 4998


def test_trafficlabelling_identifiers_are_not_features():
    t = load_flows(ORIG / "trafficlabelling_Friday-DDos_head299.csv.gz")
    assert t.source_format == "trafficlabelling"
    for col in ("Flow ID", "Source IP", "Source Port", "Destination IP", "Timestamp", "Protocol"):
        assert col in t.unknown_columns
    assert t.extractor == "cicids2017-original"
    delivered = [f for f in t.features.columns if f not in get_profile(t.extractor).unavailable]
    assert t.features[delivered].notna().mean().mean() > 0.95
    assert t.features.drop(columns=delivered).isna().all().all()  # V3's flag and subflow columns: missing


def test_corrected_release_labels_and_families():
    t = load_flows(bundled_data_dir() / "cicids2017-improved" / "flows.csv.gz")
    assert t.source_format == "corrected"
    assert len(t) == 23767
    counts = t.labels.value_counts()
    assert counts["BENIGN"] == 2500 and counts["Heartbleed"] == 4
    fam = {FAMILIES[i] for i in set(t.family.tolist()) if i >= 0}
    assert fam == set(FAMILIES)
    assert ((t.family >= 0) == (t.binary == 1)).all()


def test_detect_format():
    assert detect_format(["Flow Duration", "Total Fwd Packet"]) == "corrected"
    assert detect_format(["flow_duration"]) == "features"


def test_repeated_header_lines_are_not_flows(repeated_header_csv):
    src = ORIG / "orig_Wednesday_head200.csv.gz"
    t = load_flows(repeated_header_csv(src, at=100))
    reference = load_flows(src)
    assert len(t) == 200 and t.labels.eq("BENIGN").all()
    np.testing.assert_array_equal(t.features.to_numpy(), reference.features.to_numpy())


def test_a_table_without_any_feature_column_is_refused_naming_the_file_and_columns(tmp_path):
    # UNSW-NB15's Argus columns: scored anyway, every flow would be all-missing and get the model's prior
    path = tmp_path / "argus.csv"
    path.write_text("dur,proto,spkts,dpkts,sbytes,dbytes,label\n0.1,tcp,2,1,100,50,0\n")
    with pytest.raises(NoFeatureColumns, match=r"argus\.csv: none of its 6 columns \('dur', 'proto'"):
        load_flows(path)


def test_one_feature_column_is_enough_to_read_a_table(tmp_path):
    path = tmp_path / "few.csv"
    path.write_text("dur,Flow Duration,Label\n0.1,100000,BENIGN\n")
    table = load_flows(path)
    assert table.features["Flow Duration"].tolist() == [100000.0]
    assert table.unknown_columns == ["dur"]
