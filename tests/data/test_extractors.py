"""Extractor profiles on real rows: detection from real headers, and each profile's conversions."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moe_ids.cli.score import format_summary
from moe_ids.client import from_suricata_flow, from_zeek_conn
from moe_ids.client.errors import InvalidInputError
from moe_ids.client.features import encode_frame
from moe_ids.client.flow_files import read_flow_file
from moe_ids.core.schema import FEATURE_NAMES
from moe_ids.data import extractors
from moe_ids.data.loading import bundled_data_dir, frame_to_features, load_flows

DATA = bundled_data_dir()
PYTHON_NMAP = DATA / "cicflowmeter-python" / "nmap_syn_scan.csv.gz"
ORIGINAL = DATA / "cicids2017-original" / "machinelearningcve_stratified12k.csv.gz"
ROOT = Path(__file__).resolve().parents[2]


def _header(path: Path) -> list[str]:
    return [c.strip() for c in pd.read_csv(path, nrows=0).columns]


@pytest.mark.parametrize(("relative", "expected"), [
    ("cicids2017-improved/flows.csv.gz", "cicflowmeter"),
    ("cicids2017-original/machinelearningcve_stratified12k.csv.gz", "cicids2017-original"),
    ("cicids2017-original/trafficlabelling_attack_slices.csv.gz", "cicids2017-original"),
    ("cicids2017-original/orig_Wednesday_head200.csv.gz", "cicids2017-original"),
    ("cicflowmeter-python/nmap_syn_scan.csv.gz", "cicflowmeter-python"),
])
def test_detects_the_extractor_from_real_headers(relative: str, expected: str) -> None:
    assert extractors.detect(_header(DATA / relative)) == expected
    assert load_flows(DATA / relative, nrows=5).extractor == expected


def test_cse_cic_ids2018_spelling_is_cicflowmeter_v3_and_converted_like_the_original() -> None:
    # real original-extraction rows under CSE-CIC-IDS2018's abbreviated names
    frame = pd.read_csv(ORIGINAL, nrows=200)
    frame.columns = [c.strip() for c in frame.columns]
    renamed = frame.rename(columns={"Total Fwd Packets": "Tot Fwd Pkts", "Total Length of Fwd Packets":
                                    "TotLen Fwd Pkts", "Init_Win_bytes_forward": "Init Fwd Win Byts",
                                    "Init_Win_bytes_backward": "Init Bwd Win Byts", "Flow Bytes/s": "Flow Byts/s"})
    renamed = renamed.drop(columns=["Fwd Header Length.1"])
    assert extractors.detect(renamed.columns) == "cicflowmeter-v3"
    v3, _ = frame_to_features(renamed)
    original, _ = frame_to_features(frame)
    pd.testing.assert_frame_equal(v3, original)


def test_original_profile_sends_flag_counts_missing_and_fixes_absent_windows() -> None:
    raw = pd.read_csv(ORIGINAL)
    raw.columns = [c.strip() for c in raw.columns]
    table = load_flows(ORIGINAL)
    f = table.features
    for name in (*extractors.FLAG_COUNTS, *extractors.DIRECTION_FLAGS, *extractors.SUBFLOWS):
        assert f[name].isna().all(), name
    absent = raw["Init_Win_bytes_backward"] == -1
    assert absent.sum() > 1000  # real rows of the file
    assert (f.loc[absent.to_numpy(), "Init_Win_bytes_backward"] == 0).all()
    kept = ~absent & (raw["Init_Win_bytes_backward"] >= 0)
    np.testing.assert_array_equal(f.loc[kept.to_numpy(), "Init_Win_bytes_backward"],
                                  raw.loc[kept, "Init_Win_bytes_backward"].to_numpy(dtype=float))
    np.testing.assert_array_equal(f["Flow Duration"], raw["Flow Duration"].to_numpy(dtype=float))


def test_python_profile_on_real_rows() -> None:
    raw = pd.read_csv(PYTHON_NMAP)
    f = load_flows(PYTHON_NMAP).features
    # frame lengths and IP-header lengths are not CICFlowMeter's payload / TCP header: missing, never wrong
    for name in (*extractors.LENGTHS, "Flow Bytes/s", *extractors.HEADERS, *extractors.SUBFLOWS, "act_data_pkt_fwd"):
        assert f[name].isna().all(), name
    assert raw["totlen_fwd_pkts"].min() >= 54  # what it would have sent: a bare SYN as 54-58 bytes
    # v0.2 writes microseconds: the durations stay; two-packet flows get their one gap as IAT
    np.testing.assert_allclose(f["Flow Duration"], raw["flow_duration"])
    two = (raw["tot_fwd_pkts"] + raw["tot_bwd_pkts"] == 2).to_numpy()
    assert two.sum() > 500
    np.testing.assert_allclose(f.loc[two, "Flow IAT Max"], raw.loc[two, "flow_duration"])
    assert (raw.loc[two, "flow_iat_max"] == 0).all()  # the package's own value
    # zero-duration flows: the package's 0 packets/s is CICFlowMeter's undefined rate
    zero = (raw["flow_duration"] == 0).to_numpy()
    assert zero.any() and f.loc[zero, "Flow Packets/s"].isna().all()
    # the package keeps the last backward window, as CICFlowMeter does: sent as it is, also for many replies
    many_bwd = (raw["tot_bwd_pkts"] > 1).to_numpy()
    assert many_bwd.any()
    np.testing.assert_array_equal(f["Init_Win_bytes_backward"], raw["init_bwd_win_byts"].to_numpy(dtype=float))


def test_both_cicids2017_extractions_hold_the_last_backward_window() -> None:
    """What the profiles assume of CICFlowMeter itself, checked on its own real rows: flows that began with a
    handshake and had many replies carry small scaled windows of late packets, not a SYN-ACK's window."""
    d = pd.read_csv(DATA / "cicids2017-improved" / "flows.csv.gz")
    handshake = d[(d["Protocol"] == 6) & (d["SYN Flag Count"] >= 2) & (d["Total Bwd packets"] > 3)]
    assert len(handshake) > 1000
    assert (handshake["Bwd Init Win Bytes"] < 1024).mean() > 0.9
    assert (handshake["FWD Init Win Bytes"] >= 1024).mean() > 0.9  # the first forward window: the SYN's


def test_python_profile_reads_seconds_of_newer_versions_as_microseconds() -> None:
    """v0.3+ writes times in seconds: the same real flows with their times in seconds convert identically."""
    raw = pd.read_csv(DATA / "cicflowmeter-python" / "slowloris.csv.gz")
    seconds = raw.copy()
    time_columns = [c for c in raw.columns if c == "flow_duration" or "_iat_" in c]
    seconds[time_columns] = seconds[time_columns] / 1e6
    a, _ = frame_to_features(raw)
    b, _ = frame_to_features(seconds)
    pd.testing.assert_frame_equal(a, b, rtol=1e-9)
    assert a["Flow Duration"].max() > 1e6  # slowloris holds connections open for seconds: microseconds here


def test_python_profile_turns_population_std_into_sample_std() -> None:
    raw = pd.read_csv(DATA / "cicflowmeter-python" / "slowloris.csv.gz")
    f, _ = frame_to_features(raw)
    n = raw["tot_fwd_pkts"] - 1
    rows = (n >= 2).to_numpy() & (raw["fwd_iat_std"] > 0).to_numpy()
    assert rows.sum() > 50
    np.testing.assert_allclose(f.loc[rows, "Fwd IAT Std"],
                               raw.loc[rows, "fwd_iat_std"] * np.sqrt(n[rows] / (n[rows] - 1)))


def test_record_profiles_match_what_the_sensor_mappings_fill() -> None:
    zeek = from_zeek_conn({"duration": 1.5, "orig_pkts": 4, "resp_pkts": 6, "orig_bytes": 300, "resp_bytes": 900})
    suricata = from_suricata_flow({"event_type": "flow", "flow": {
        "start": "2017-07-07T03:30:00.000000+0000", "end": "2017-07-07T03:30:01.500000+0000",
        "pkts_toserver": 4, "pkts_toclient": 6, "bytes_toserver": 540, "bytes_toclient": 1300}})
    for name, features in (("zeek", zeek), ("suricata", suricata)):
        profile = extractors.get_profile(name)
        filled = {f for f, v in features.items() if np.isfinite(v)}
        assert filled == {f for f in FEATURE_NAMES if f not in profile.unavailable}, name
    assert np.isnan(suricata["Total Length of Fwd Packets"])  # whole-packet bytes, not payload
    assert zeek["Total Length of Fwd Packets"] == 300


def test_sdk_converts_named_columns_and_names_a_bad_extractor() -> None:
    raw = pd.read_csv(PYTHON_NMAP, nrows=50)
    x = encode_frame(raw, FEATURE_NAMES, unknown="ignore")
    expected = load_flows(PYTHON_NMAP, nrows=50).features.to_numpy(np.float32)
    np.testing.assert_array_equal(np.isnan(x), np.isnan(expected))
    np.testing.assert_allclose(x[~np.isnan(x)], expected[~np.isnan(expected)], rtol=1e-6)
    with pytest.raises(InvalidInputError, match="unknown extractor 'nfstream'") as info:
        encode_frame(raw, FEATURE_NAMES, unknown="ignore", extractor="nfstream")
    assert info.value.field == "extractor"
    # canonical names typed by hand mean the model's semantics: nothing is converted
    hand = pd.DataFrame([{"Flow Duration": 10.0, "SYN Flag Count": 2.0, "Init_Win_bytes_backward": -1.0}])
    y = encode_frame(hand, FEATURE_NAMES)
    assert y[0, FEATURE_NAMES.index("SYN Flag Count")] == 2.0
    assert y[0, FEATURE_NAMES.index("Init_Win_bytes_backward")] == -1.0


def test_record_profiles_are_refused_for_columns() -> None:
    with pytest.raises(ValueError, match="from_zeek_conn"):
        extractors.resolve("zeek", ["duration"])


def test_docs_are_generated_from_the_profiles() -> None:
    assert (ROOT / "docs" / "extractors.md").read_text() == extractors.docs_markdown()


def test_a_cleaned_original_table_is_read_in_the_models_semantics_and_said_so(tmp_path) -> None:
    original = pd.read_csv(ROOT / "data" / "cicids2017-original" / "machinelearningcve_stratified12k.csv.gz",
                           nrows=50, low_memory=False)
    original.columns = [c.strip() for c in original.columns]
    assert extractors.detect(original.columns) == "cicids2017-original"
    assert extractors.detection_note(original.columns) is None
    # what cleaned re-publications drop: the duplicated Fwd Header Length and the constant-zero bulk columns
    cleaned = original.drop(columns=["Fwd Header Length.1", *[c for c in original.columns if "Bulk" in c]])
    assert extractors.detect(cleaned.columns) == "cicflowmeter"
    assert "--extractor cicids2017-original" in extractors.detection_note(cleaned.columns)
    corrected = pd.read_csv(ROOT / "data" / "cicids2017-improved" / "flows.csv.gz", nrows=5)
    assert extractors.detection_note(corrected.columns) is None
    assert extractors.detection_note(["Flow Duration", "Total Fwd Packets"]) is None  # a hand-made table

    path = tmp_path / "cleaned.csv"
    cleaned.to_csv(path, index=False)
    detected: dict = {"flows": 50, "attacks": 0, "families": {}, "retries": 0, "output": "o.csv"}
    list(read_flow_file(path, counts=detected))
    assert detected["extractor"] == "cicflowmeter" and "cicids2017-original" in detected["extractor_note"]
    assert "pass --extractor cicids2017-original" in format_summary(detected)  # moe-ids score's summary
    named: dict = {}
    list(read_flow_file(path, "cicids2017-original", counts=named))
    assert named["extractor"] == "cicids2017-original" and "extractor_note" not in named
