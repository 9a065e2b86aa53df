"""``moe-ids score`` end to end on bundled CSVs: one output row per input row, in order, and a summary;
a failing server gives a non-zero exit; a server restart midway loses and duplicates nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moe_ids.cli import main
from moe_ids.client import MoEClient
from moe_ids.core import contract
from moe_ids.data.loading import load_flows
from moe_ids.triton.ops.server import free_port

pytestmark = pytest.mark.integration

FRIDAY_CSV = "data/cicids2017-original/orig_Friday-DDos_head9998.csv.gz"
WEDNESDAY_CSV = "data/cicids2017-original/orig_Wednesday_head200.csv.gz"
CORRECTED_CSV = "data/cicids2017-improved/flows.csv.gz"
PYTHON_SCAN = "data/cicflowmeter-python/nmap_loopback_syn_scan.csv.gz"


def test_score_original_csv_row_for_row(triton_server, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "scored.csv"
    rc = main(["score", FRIDAY_CSV, "--output", str(out), "--url", triton_server.grpc_url, "--quiet",
               "--chunk-rows", "3000"])
    assert rc == 0
    source = pd.read_csv(FRIDAY_CSV, skipinitialspace=True)
    scored = pd.read_csv(out)
    assert len(scored) == len(source) == 9998
    assert list(scored.columns[:2]) == ["Destination Port", "Label"]  # identifiers first, then verdicts
    assert (scored["Destination Port"].to_numpy() == source["Destination Port"].to_numpy()).all()
    assert (scored["Label"].to_numpy() == source["Label"].to_numpy()).all()
    with MoEClient(triton_server.grpc_url) as client:
        expected = client.predict_batch(load_flows(FRIDAY_CSV).features)
    assert (scored["prediction"].to_numpy() == expected["prediction"].to_numpy()).all()
    assert not out.with_name(out.name + ".partial").exists()
    summary = capsys.readouterr().err
    assert "scored 9998 flows" in summary and "flows/s" in summary and "agreement with the file's labels" in summary


def test_score_a_parquet_table_as_its_csv(triton_server, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    source = pd.read_csv(CORRECTED_CSV, nrows=2000, low_memory=False)
    table = tmp_path / "flows.parquet"
    source.to_parquet(table, index=False)
    csv = tmp_path / "flows.csv"
    source.to_csv(csv, index=False)
    outputs = []
    for path in (table, csv):
        out = tmp_path / f"{path.name}.scored.csv"
        assert main(["score", str(path), "-o", str(out), "--url", triton_server.grpc_url, "-q",
                     "--chunk-rows", "700"]) == 0
        outputs.append(pd.read_csv(out))
    from_parquet, from_csv = outputs
    assert len(from_parquet) == 2000
    assert from_parquet["Flow ID"].tolist() == source["Flow ID"].tolist()
    assert from_parquet["prediction"].tolist() == from_csv["prediction"].tolist()
    np.testing.assert_allclose(from_parquet["trust"], from_csv["trust"], atol=1e-6)


def test_score_agreement_leaves_attempted_attacks_out(triton_server, attempted_csv, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    """Flows labelled '- Attempted' get their verdicts like any other row, but count neither as agreeing nor as
    disagreeing with the labels: they are neither Normal nor Attack."""
    out = tmp_path / "scored.csv"
    assert main(["score", str(attempted_csv), "-o", str(out), "--url", triton_server.grpc_url, "-q"]) == 0
    assert len(pd.read_csv(out)) == 105
    summary = capsys.readouterr().err
    assert "of 80 flows, attempted attacks left out" in summary


def test_score_a_labelled_conn_log_keeps_its_labels(triton_server, labelled_conn_log, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    """IoT-23's layout: every record scored, its label carried into the output, the unlabelled one in no
    agreement figure."""
    out = tmp_path / "scored.csv"
    assert main(["score", str(labelled_conn_log), "-o", str(out), "--url", triton_server.grpc_url, "-q"]) == 0
    scored = pd.read_csv(out)
    assert list(scored["uid"]) == ["CUmrqr4svHuSXJy5z7", "CH98aB1hFpwZ1k8Xa4", "Ck3Tz23sBzQcLp0vV1"]
    assert list(scored["label"][:2]) == ["PartOfAHorizontalPortScan", "Benign"] and pd.isna(scored["label"][2])
    assert "of 2 flows" in capsys.readouterr().err


def test_score_skips_repeated_header_lines(triton_server, repeated_header_csv, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    """A header line repeated inside the file is not a flow: no verdict for it, every real row scored."""
    out, reference = tmp_path / "scored.csv", tmp_path / "reference.csv"
    assert main(["score", str(repeated_header_csv(WEDNESDAY_CSV, at=100)), "-o", str(out), "--url",
                 triton_server.grpc_url, "-q", "--chunk-rows", "64"]) == 0
    assert "skipped 1 rows that repeat the header line" in capsys.readouterr().err
    assert main(["score", WEDNESDAY_CSV, "-o", str(reference), "--url", triton_server.grpc_url, "-q"]) == 0
    scored, expected = pd.read_csv(out), pd.read_csv(reference)
    assert len(scored) == 200 and scored["Label"].eq("BENIGN").all()
    assert (scored["prediction"] == expected["prediction"]).all()
    np.testing.assert_allclose(scored["prob_attack"], expected["prob_attack"], rtol=1e-6)


def test_score_converts_another_extractor_and_writes_the_trust_columns(triton_server, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """Real nmap SYN-scan flows written by the cicflowmeter Python package: detected through its profile."""
    out = tmp_path / "scan.csv"
    assert main(["score", PYTHON_SCAN, "-o", str(out), "--url", triton_server.grpc_url, "-q"]) == 0
    scored = pd.read_csv(out)
    assert len(scored) == 1001
    assert {"src_ip", "dst_port", "timestamp", "trust", "out_of_distribution"} <= set(scored.columns)
    assert scored["trust"].between(0.0, 1.0).all() and scored["out_of_distribution"].isin([True, False]).all()
    assert (scored["prediction"] == "Attack").mean() >= 0.9
    summary = capsys.readouterr().err
    assert "extractor: cicflowmeter-python" in summary
    as_named = tmp_path / "as-named.csv"
    assert main(["score", PYTHON_SCAN, "-o", str(as_named), "--url", triton_server.grpc_url, "-q",
                 "--extractor", "cicflowmeter"]) == 0
    assert (pd.read_csv(as_named)["prediction"] == "Attack").mean() < 0.5  # frame bytes read as payload bytes


def test_score_sensor_logs_keeps_their_identifiers(triton_server, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    from test_sensor_logs import ZEEK_TSV, eve_lines

    conn, eve = tmp_path / "conn.log", tmp_path / "eve.json"
    conn.write_text(ZEEK_TSV)
    eve.write_text("\n".join(eve_lines()) + "\n")
    assert main(["score", str(conn), "-o", str(tmp_path / "conn.csv"), "--url", triton_server.grpc_url, "-q"]) == 0
    zeek = pd.read_csv(tmp_path / "conn.csv")
    assert list(zeek["uid"]) == ["CAbc1", "CAbc2"] and list(zeek.columns[:2]) == ["ts", "uid"]
    assert {"prediction", "trust", "out_of_distribution"} <= set(zeek.columns)
    assert "extractor: zeek" in capsys.readouterr().err
    assert main(["score", str(eve), "-o", str(tmp_path / "eve.csv"), "--url", triton_server.grpc_url, "-q"]) == 0
    suricata = pd.read_csv(tmp_path / "eve.csv")
    assert list(suricata["flow_id"]) == [1234, 1235]  # the alert between them is not a flow
    summary = capsys.readouterr().err
    assert "extractor: suricata" in summary and "skipped 1 events that are not flows" in summary
    eve.write_text(eve.read_text() + "not json\n")
    assert main(["score", str(eve), "-o", str(tmp_path / "bad.csv"), "--url", triton_server.grpc_url, "-q"]) == 1
    assert "line 4: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "bad.csv").exists()


def test_score_a_packet_capture(triton_server, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The loopback nmap capture, turned into flows by NFStream with payload accounting: detected."""
    out = tmp_path / "capture.csv"
    assert main(["score", "data/pcaps/nmap_loopback_syn_scan.pcap.gz", "-o", str(out), "--url",
                 triton_server.grpc_url, "-q"]) == 0
    scored = pd.read_csv(out)
    assert len(scored) == 1001 and list(scored.columns[:4]) == ["src_ip", "src_port", "dst_ip", "dst_port"]
    assert (scored["prediction"] == "Attack").mean() >= 0.9
    assert "extractor: pcap" in capsys.readouterr().err


def test_withholding_host_features_scores_as_if_the_sensor_had_not_sent_them(triton_server, tmp_path: Path) -> None:
    """``--withhold-host-features`` equals scoring the same real flows with those columns absent."""
    from moe_ids.core.schema import HOST_TCP_FEATURES

    flows = load_flows(CORRECTED_CSV, nrows=400).features
    full, stripped = tmp_path / "full.csv", tmp_path / "stripped.csv"
    flows.to_csv(full, index=False)
    flows.drop(columns=list(HOST_TCP_FEATURES)).to_csv(stripped, index=False)
    for path, extra in ((full, ["--withhold-host-features"]), (stripped, []), (full, [])):
        assert main(["score", str(path), "-o", str(path.with_suffix(".out" + "".join(extra) + ".csv")), "--url",
                     triton_server.grpc_url, "-q", *extra]) == 0
    held = pd.read_csv(full.with_suffix(".out--withhold-host-features.csv"))
    absent = pd.read_csv(stripped.with_suffix(".out.csv"))
    as_sent = pd.read_csv(full.with_suffix(".out.csv"))
    pd.testing.assert_frame_equal(held, absent, check_exact=False, rtol=1e-5, atol=1e-6)
    assert not np.allclose(held["prob_attack"], as_sent["prob_attack"])  # the values did count


def test_score_suggests_withholding_for_another_networks_flows(triton_server, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    """The Python package's flows of a scan across the Internet are mostly flagged: the summary says what to do."""
    scan = "data/cicflowmeter-python/nmap_syn_scan.csv.gz"
    hint = "a second run with --withhold-host-features"
    for path, extra, expected in ((scan, [], True), (scan, ["--withhold-host-features"], False),
                                  (WEDNESDAY_CSV, [], False)):
        assert main(["score", path, "-o", str(tmp_path / "out.csv"), "--url", triton_server.grpc_url, "-q",
                     *extra]) == 0
        assert (hint in capsys.readouterr().err) == expected, (path, extra)


def test_score_over_http_at_realtime_priority(triton_server, tmp_path: Path) -> None:
    out = tmp_path / "wednesday.csv"
    rc = main(["score", WEDNESDAY_CSV, "-o", str(out), "--url", triton_server.http_url, "--protocol", "http",
               "--priority", "realtime", "--missing-strategy", "zero", "--batch-size", "16", "-q"])
    assert rc == 0
    scored = pd.read_csv(out)
    assert len(scored) == 200 and scored["prediction"].isin(contract.BINARY_LABELS).all()
    assert scored["gating_tabular"].add(scored["gating_temporal"]).sub(1).abs().max() < 1e-4


def test_score_fails_cleanly_without_a_server(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "never.csv"
    rc = main(["score", WEDNESDAY_CSV, "-o", str(out), "--url", f"127.0.0.1:{free_port()}", "--max-wait", "1",
               "--timeout", "2", "-q"])
    assert rc == 1
    assert not out.exists()
    assert "cannot reach Triton" in capsys.readouterr().err


def test_score_refuses_a_file_without_feature_columns(triton_server, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    argus = tmp_path / "argus.csv"
    argus.write_text("dur,proto,spkts,dpkts,sbytes,dbytes,label\n0.1,tcp,2,1,100,50,0\n")
    out = tmp_path / "scored.csv"
    rc = main(["score", str(argus), "-o", str(out), "--url", triton_server.grpc_url, "-q"])
    assert rc == 1
    assert "argus.csv: none of its 6 columns ('dur', 'proto'" in capsys.readouterr().err
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_a_truncated_gzip_is_reported_by_score_and_evaluate_without_a_traceback(tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture) -> None:
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(Path(CORRECTED_CSV).read_bytes()[:4000])  # a download that stopped early
    out = tmp_path / "scored.csv"
    assert main(["score", str(cut), "-o", str(out), "--url", f"127.0.0.1:{free_port()}", "-q"]) == 1
    assert main(["evaluate", "--data", str(cut), "--missing", "0", "--no-baseline"]) == 2
    err = capsys.readouterr().err
    assert err.count("cut.csv.gz: Compressed file ended before the end-of-stream marker") == 2
    assert "Traceback" not in err
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


@pytest.mark.slow
def test_score_survives_a_server_restart(tmp_path: Path) -> None:
    from moe_ids.triton.ops.bootstrap import ensure_model
    from moe_ids.triton.ops.server import TritonServer
    from moe_ids.triton.repository import build_repository, options_for_model

    source = pd.read_csv(CORRECTED_CSV)
    source["id"] = range(len(source))  # unique row ids make any lost or repeated row visible
    flows = tmp_path / "flows.csv"
    source.to_csv(flows, index=False)
    model_dir = ensure_model()
    repository = build_repository(model_dir, tmp_path / "repository", options_for_model(model_dir))
    server = TritonServer(repository, log_path=tmp_path / "tritonserver.log").start()
    ports = (server.http_port, server.grpc_port, server.metrics_port)
    out = tmp_path / "scored.csv"
    partial = out.with_name(out.name + ".partial")
    cmd = [sys.executable, "-m", "moe_ids.cli", "score", str(flows), "-o", str(out), "--url", server.grpc_url,
           "--chunk-rows", "200", "--batch-size", "25", "--concurrency", "1", "--max-wait", "120", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    restarted = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if partial.exists() and partial.stat().st_size > 200_000:  # a few chunks are written
                break
            time.sleep(0.05)
        assert proc.poll() is None, "scoring finished before the restart; slow it down"
        server.stop()
        restarted = TritonServer(repository, *ports, log_path=tmp_path / "tritonserver2.log").start()
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
        if restarted is not None:
            restarted.stop()
    assert proc.returncode == 0, err
    assert "retrying" in err  # the outage was seen and ridden out
    scored = pd.read_csv(out)
    assert scored["id"].tolist() == source["id"].tolist()  # every row once, in order
    assert scored["prediction"].isin(contract.BINARY_LABELS).all()
