"""``moe-ids evaluate`` and ``moe-ids importance`` end to end on the default model and real held-out flows."""

import json

import pytest

from moe_ids.cli import main
from moe_ids.data import bundled_data_dir


@pytest.fixture(scope="module")
def model_dir():
    from moe_ids.serving.bootstrap import ensure_model

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
