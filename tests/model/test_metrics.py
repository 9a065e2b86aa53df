"""The evaluation arithmetic agrees with scikit-learn's reference implementations."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from moe_ids.model.metrics import (
    balanced_accuracy,
    binary_report,
    expected_calibration_error,
    family_macro_f1,
    recall_per_label,
)


@pytest.mark.parametrize("seed", range(5))
def test_binary_report_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    p = np.where(rng.random(500) < 0.8, y, 1 - y)
    r = binary_report(y, p)
    assert r["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert r["attack_f1"] == pytest.approx(f1_score(y, p))
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p))


def test_family_macro_excludes_low_support_but_lists_it():
    names = ["A", "B", "C"]
    y = np.array([0] * 30 + [1] * 25 + [2] * 5 + [-1] * 10)
    p = y.copy()
    p[:3] = 1  # three A flows called B
    p[-10:] = 0  # rows without a family are ignored whatever was predicted
    r = family_macro_f1(y, p, names, min_support=20)
    keep = y >= 0
    expected = f1_score(y[keep], p[keep], labels=[0, 1], average="macro")
    assert r["macro_f1"] == pytest.approx(expected)
    assert r["excluded_low_support"] == ["C"]
    assert r["support"] == {"A": 30, "B": 25, "C": 5}


def test_balanced_accuracy_and_recall_per_label():
    y = np.array([0, 0, 0, 1])
    p = np.array([0, 0, 1, 1])
    assert balanced_accuracy(y, p) == pytest.approx((2 / 3 + 1) / 2)
    r = recall_per_label(["BENIGN", "BENIGN", "BENIGN", "DDoS"], y, p)
    assert r["BENIGN"] == {"flows": 3, "recall": pytest.approx(2 / 3)}
    assert r["DDoS"]["recall"] == 1.0


def test_ece_of_perfectly_calibrated_bins_is_zero_and_of_overconfidence_is_gap():
    conf = np.array([0.75] * 4)
    assert expected_calibration_error(conf, np.array([1, 1, 1, 0]))[0] == pytest.approx(0.0)
    ece, table = expected_calibration_error(np.array([0.99] * 10), np.array([1] * 5 + [0] * 5))
    assert ece == pytest.approx(0.49)
    assert table[0]["flows"] == 10
