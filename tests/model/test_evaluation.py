"""``moe-ids evaluate`` and ``moe-ids importance`` end to end on the default model and real held-out flows."""

import json

import pytest

from moe_ids.cli import main
from moe_ids.data.loading import bundled_data_dir
from moe_ids.model.evaluation import format_report


@pytest.fixture(scope="module")
def model_dir():
    from moe_ids.triton.ops.bootstrap import ensure_model

    return ensure_model()


def test_evaluate_json_reports_the_tolerance_curve(model_dir, capsys, tmp_path):
    plot = tmp_path / "eval.png"
    assert main(["evaluate", "--model-dir", str(model_dir), "--missing", "0,0.5", "--json",
                 "--plot", str(plot)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [m["fraction"] for m in report["missing"]] == [0.0, 0.5]
    assert [m["fraction"] for m in report["baseline"]["missing"]] == [0.0, 0.5]
    for entry in report["missing"] + report["baseline"]["missing"]:
        assert set(entry["binary"]) == {"macro_f1", "attack_f1", "balanced_accuracy"}
        assert 0.0 <= entry["family"]["macro_f1"] <= 1.0
    full, half = report["missing"]
    assert full["binary"]["macro_f1"] > 0.99  # the trained default model on flows it never saw
    assert half["binary"]["macro_f1"] <= full["binary"]["macro_f1"] + 0.002
    assert "Heartbleed" in full["family"]["excluded_low_support"]  # 1 held-out flow: listed, not averaged
    assert report["flows"] == sum(r["flows"] for r in full["per_label_recall"].values())
    assert plot.stat().st_size > 10_000


def test_evaluate_a_training_source_scores_only_its_held_out_rows(model_dir, capsys):
    path = bundled_data_dir() / "cicids2017-original" / "orig_Wednesday_head200.csv.gz"
    assert main(["evaluate", "--model-dir", str(model_dir), "--data", str(path), "--missing", "0",
                 "--no-baseline", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["flows"] == 40  # 20% of 200 rows
    assert "held-out rows" in report["evaluated_on"]


def test_importance_ranks_features_and_groups(model_dir, capsys):
    assert main(["importance", "--model-dir", str(model_dir), "--repeats", "1", "--k", "5,70", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["features"]) == 70 and set(report["groups"]) == {"tabular", "temporal"}
    rises = [f["log_loss_rise"] for f in report["features"]]
    assert rises == sorted(rises, reverse=True) and rises[0] > 0
    top5, all70 = report["top_k"]
    assert top5["k"] == 5 and len(top5["features"]) == 5
    assert all70["macro_f1"] == pytest.approx(report["baseline_macro_f1"])


def test_evaluate_reports_each_extraction_and_source_with_the_trust_columns(model_dir, capsys):
    assert main(["evaluate", "--model-dir", str(model_dir), "--missing", "0", "--no-baseline", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    extractions = report["by_extraction"]
    assert set(extractions) == {"cicflowmeter", "cicids2017-original"}
    assert sum(e["flows"] for e in extractions.values()) == report["flows"]
    original = extractions["cicids2017-original"]
    assert original["macro_f1"] > 0.97  # the MachineLearningCVE/TrafficLabelling flows most users have
    for family in ("DoS", "DDoS", "PortScan", "WebAttack"):
        assert original["families"][family]["flows"] >= 20
        assert original["families"][family]["attack_recall"] >= 0.9, family
    assert extractions["cicflowmeter"]["macro_f1"] > 0.99
    assert report["missing"][0]["extraction_macro_f1"]["cicflowmeter"] == extractions["cicflowmeter"]["macro_f1"]
    trust = report["missing"][0]["trust"]
    assert trust["out_of_distribution_share"] <= 0.02  # calibrated at 1.5% on the validation split (goal: <= 2%)
    assert 0.0 <= trust["host_view_share"] <= 0.005  # and the host view at 0.1% more
    assert all(e["host_view_share"] <= 0.01 for e in extractions.values())
    assert trust["trusted_macro_f1"] >= report["missing"][0]["binary"]["macro_f1"] - 0.001
    assert {"machinelearningcve_stratified12k.csv.gz", "flows.csv.gz"} <= set(report["by_source"])
    wednesday = report["by_source"]["orig_Wednesday_head200.csv.gz"]
    assert wednesday["macro_f1"] is None and wednesday["attacks"] == 0  # one class: accuracy only


def test_evaluate_other_extractor_flows_through_their_profile(model_dir, capsys):
    """Real nmap SYN scan flows written by the cicflowmeter Python package (captured on the loopback
    interface): named like CICFlowMeter, but frame lengths where the model expects payload. Converted by
    their profile they are detected; taken at their names they are not."""
    path = bundled_data_dir() / "cicflowmeter-python" / "nmap_loopback_syn_scan.csv.gz"
    assert main(["evaluate", "--model-dir", str(model_dir), "--data", str(path), "--missing", "0",
                 "--no-baseline", "--json"]) == 0
    converted = json.loads(capsys.readouterr().out)
    assert "cicflowmeter-python" in converted["evaluated_on"]
    scan = converted["by_source"][path.name]
    assert scan["flows"] == scan["attacks"] == 1001
    assert scan["attacks_detected_or_flagged"] >= 0.9
    assert main(["evaluate", "--model-dir", str(model_dir), "--data", str(path), "--missing", "0",
                 "--no-baseline", "--json", "--extractor", "cicflowmeter"]) == 0
    by_name = json.loads(capsys.readouterr().out)["by_source"][path.name]
    assert by_name["accuracy"] < 0.5  # every flow is an attack: accuracy is the detection rate


def test_leave_one_extraction_out_trains_without_it_and_tests_on_it(model_dir, capsys):
    args = ["evaluate", "--model-dir", str(model_dir), "--missing", "0", "--no-baseline",
            "--leave-out", "cicflowmeter", "--epochs", "2"]
    assert main(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (loo,) = report["leave_one_out"]
    held_out = report["by_extraction"]["cicflowmeter"]
    assert loo["left_out"] == "cicflowmeter"
    assert loo["flows"] == held_out["flows"]  # the same held-out flows, scored by a model that never saw any
    # the original extraction's training rows only (70% against its 20% held out); it delivers no TCP flag
    # counts, so the baseline trains without those columns
    assert loo["trained_on_flows"] == pytest.approx(3.5 * report["by_extraction"]["cicids2017-original"]["flows"],
                                                    rel=0.01)
    assert 0.0 <= loo["accuracy"] <= 1.0 and loo["baseline_accuracy"] is not None
    text = format_report(report)
    assert "Leave-one-extraction-out: trained without cicflowmeter" in text
    assert "Per extraction (all features):" in text and "Per source file (all features):" in text


def test_withholding_host_features_on_another_networks_scan(model_dir, capsys):
    """The Python package's flows of an nmap scan across the Internet (2018 capture, not in training): with the
    hosts' TCP parameters the model has only the CIC lab's to compare with and calls the scan Normal, but the
    trust score's host view flags those verdicts; withheld, the scan is detected."""
    from moe_ids.core.schema import HOST_TCP_FEATURES

    scan = str(bundled_data_dir() / "cicflowmeter-python" / "nmap_syn_scan.csv.gz")
    caught, detected = {}, {}
    for extra in ([], ["--withhold-host-features"]):
        assert main(["evaluate", "--model-dir", str(model_dir), "--data", scan, "--missing", "0", "--no-baseline",
                     "--json", *extra]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["withheld"] == (list(HOST_TCP_FEATURES) if extra else [])
        caught[bool(extra)] = report["missing"][0]["trust"]["attacks_detected_or_flagged"]
        detected[bool(extra)] = report["missing"][0]["per_label_recall"]["PortScan"]["recall"]
        host = report["missing"][0]["trust"]["host_view_share"]
        assert (host > 0.5) if not extra else (host == 0.0)  # withheld, both passes are the same
    # with the hosts' parameters the host view flags the scan; withheld, 60% is detected and the rest flagged (at
    # the 1% threshold it was not: 0.60 caught, README 'The threshold')
    assert caught[False] >= 0.9 and caught[True] >= 0.9
    assert detected[True] >= 0.5 > 0.1 > detected[False]


@pytest.mark.parametrize("capture", ["slowloris", "syn_flood_home"])
def test_another_networks_attacks_are_flagged_where_they_are_not_detected(model_dir, capsys, capture):
    """A Slowloris run in a VirtualBox lab and an hping3 SYN flood in home traffic (real captures, the Python
    package's flows, not in training): the model calls them Normal, but the trust score flags them, mostly because
    they are somewhat unfamiliar and their verdicts also move without the hosts' TCP parameters (neither alone
    reaches the 1.5% threshold for half of them)."""
    flows = str(bundled_data_dir() / "cicflowmeter-python" / f"{capture}.csv.gz")
    assert main(["evaluate", "--model-dir", str(model_dir), "--data", flows, "--missing", "0", "--no-baseline",
                 "--json"]) == 0
    trust = json.loads(capsys.readouterr().out)["missing"][0]["trust"]
    assert trust["attacks_detected_or_flagged"] >= 0.95
    assert trust["host_view_share"] < 0.6 < trust["out_of_distribution_share"]  # more than the flip alone flags


def test_attempted_attacks_are_reported_apart_from_every_figure(model_dir, capsys, attempted_csv):
    path = attempted_csv
    assert main(["evaluate", "--model-dir", str(model_dir), "--data", str(path), "--missing", "0",
                 "--no-baseline", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["flows"] == 80  # 40 benign + 40 DoS Hulk; the 25 attempted ones in no figure
    assert set(report["missing"][0]["per_label_recall"]) == {"BENIGN", "DoS Hulk"}
    attempted = report["attempted"]
    assert attempted["flows"] == 25 and set(attempted["by_label"]) == {"DoS Hulk - Attempted"}
    assert 0.0 <= attempted["called_attack"] <= 1.0
    assert "left out of the figures" in report["evaluated_on"]
    text = format_report(report)
    assert "Attempted attacks, in no figure above (25 flows" in text
    assert "DoS Hulk - Attempted" in text


def test_evaluate_reads_a_labelled_zeek_conn_log(model_dir, capsys, labelled_conn_log):
    """A labelled conn.log (IoT-23's layout) is evaluated as `moe-ids score` reads it, through the zeek profile;
    the record without a label is left out and said so."""
    path = labelled_conn_log
    assert main(["evaluate", "--model-dir", str(model_dir), "--data", str(path), "--missing", "0",
                 "--no-baseline", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["flows"] == 2 and "extractor zeek" in report["evaluated_on"]
    assert "1 unlabelled records left out" in report["evaluated_on"]
    assert set(report["missing"][0]["per_label_recall"]) == {"BENIGN", "PartOfAHorizontalPortScan"}
    assert report["by_extraction"]["zeek"]["attacks"] == 1
    assert report["by_extraction"]["zeek"]["families"]["PortScan"]["flows"] == 1


def test_evaluate_refuses_an_unlabelled_sensor_log(model_dir, capsys, tmp_path):
    path = tmp_path / "conn.log"
    path.write_text(json.dumps({"ts": 1.0, "uid": "C1", "id.orig_h": "10.0.0.1", "id.orig_p": 1000,
                                "id.resp_h": "10.0.0.2", "id.resp_p": 443, "proto": "tcp", "duration": 0.25,
                                "orig_bytes": 10, "resp_bytes": 20, "orig_pkts": 2, "resp_pkts": 3}) + "\n")
    assert main(["evaluate", "--model-dir", str(model_dir), "--data", str(path), "--missing", "0",
                 "--no-baseline"]) == 2
    assert "conn.log: a zeek file without a label field" in capsys.readouterr().err


def test_evaluate_a_capture_of_one_attack_tool_with_a_label(model_dir, capsys):
    """A real pcap of an nmap SYN scan (captured on the loopback interface), turned into flows by NFStream as
    `moe-ids score` does, every flow labelled PortScan by --label."""
    path = bundled_data_dir() / "pcaps" / "nmap_loopback_syn_scan.pcap.gz"
    assert main(["evaluate", "--model-dir", str(model_dir), "--data", str(path), "--label", "PortScan",
                 "--missing", "0", "--no-baseline", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    pcap = report["by_extraction"]["pcap"]
    assert pcap["flows"] == pcap["attacks"] == report["flows"] > 900
    assert pcap["families"]["PortScan"]["flows"] == report["flows"]
    assert pcap["attacks_detected_or_flagged"] >= 0.9


def test_label_replaces_a_csvs_own_labels_and_needs_data(model_dir, capsys):
    path = bundled_data_dir() / "cicids2017-original" / "orig_Wednesday_head200.csv.gz"
    assert main(["evaluate", "--model-dir", str(model_dir), "--data", str(path), "--label", "DoS Hulk",
                 "--missing", "0", "--no-baseline", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["flows"] == 200  # the whole file: relabelled, it is no longer the training source's rows
    assert set(report["missing"][0]["per_label_recall"]) == {"DoS Hulk"}
    assert main(["evaluate", "--model-dir", str(model_dir), "--label", "PortScan", "--no-baseline"]) == 2
    assert "--label labels the flows of --data" in capsys.readouterr().err
