"""The request gathering of the Python-backend models (pure numpy, no server)."""

from __future__ import annotations

import numpy as np
import pytest

from moe_ids.preprocessing import STRATEGIES, PreprocessingError
from moe_ids.serving.backends.batching import concat, row_offsets, split
from moe_ids.serving.backends.classifier import Overdue, check_admission, check_input
from moe_ids.serving.backends.preprocess import batch_codes, request_codes

MEDIAN = STRATEGIES.index("median")


def test_concat_and_split_round_trip() -> None:
    parts = [np.arange(n * 3, dtype=np.float32).reshape(n, 3) + 100 * n for n in (1, 4, 2)]
    offsets = row_offsets([len(p) for p in parts])
    assert offsets.tolist() == [0, 1, 5, 7]
    for got, want in zip(split(concat(parts), offsets), parts, strict=True):
        np.testing.assert_array_equal(got, want)
    assert concat(parts[:1]) is parts[0]


def test_request_codes_default_parameter_and_tensor() -> None:
    assert request_codes(None, None, 3, MEDIAN) == MEDIAN
    assert request_codes(None, "zero", 3, MEDIAN) == STRATEGIES.index("zero")
    assert request_codes(np.array([[b"mean"]], dtype=object), None, 3, MEDIAN) == STRATEGIES.index("mean")
    per_row = request_codes(np.array([[b"zero"], [b"mean"], [b"zero"]], dtype=object), None, 3, MEDIAN)
    assert per_row.tolist() == [0, 1, 0]


def test_empty_or_default_means_the_models_default() -> None:
    zero = STRATEGIES.index("zero")  # a model whose preprocessing.json says default_strategy "zero"
    assert request_codes(np.array([[b""]], dtype=object), None, 1, zero) == zero
    assert request_codes(np.array([[b"default"], [b"mean"]], dtype=object), None, 2, zero).tolist() == [zero, 1]
    assert request_codes(None, "default", 1, zero) == zero


@pytest.mark.parametrize("values, match", [
    (np.array([[b"bogus"]], dtype=object), "unknown imputation strategy"),
    (np.array([[b"zero"], [b"mean"]], dtype=object), "expected 1 or 3"),
    (np.array([b"zero", b"mean", b"zero"], dtype=object), r"expected shape \[batch, 1\]"),
])
def test_request_codes_errors_name_the_field(values: np.ndarray, match: str) -> None:
    with pytest.raises(PreprocessingError, match="IMPUTATION") as info:
        request_codes(values, None, 3, MEDIAN)
    assert info.match(match)


def test_batch_codes_scalar_when_uniform_else_per_row() -> None:
    assert batch_codes([1, 1], [2, 5]) == 1
    assert batch_codes([0, np.array([1, 2])], [3, 2]).tolist() == [0, 0, 0, 1, 2]


def test_classifier_input_checks() -> None:
    ok = np.zeros((2, 70), dtype=np.float32)
    assert check_input("MISSING_MASK", ok) is ok
    with pytest.raises(ValueError, match="MISSING_MASK: expected FP32"):
        check_input("MISSING_MASK", ok.astype(np.float64))
    with pytest.raises(ValueError, match=r"MISSING_MASK: expected shape \[batch, 70\]"):
        check_input("MISSING_MASK", ok[:, :5])


def test_admission_budget_check() -> None:
    stamp = np.array([[1_000], [400]], dtype=np.int64)  # the oldest flow of the request decides
    check_admission(stamp, now_ns=1_400, budget_ns=1_000)
    with pytest.raises(Overdue, match=r"request timeout expired: waited 0 ms .* \(budget 0 ms\)"):
        check_admission(stamp, now_ns=1_401, budget_ns=1_000)
    with pytest.raises(Overdue, match="waited 2500 ms for the classifier after admission"):
        check_admission(np.zeros((1, 1), dtype=np.int64), now_ns=2_500_000_000, budget_ns=1_000_000_000)
    for bad in (np.zeros((2, 1), dtype=np.float32), np.zeros((2,), dtype=np.int64), np.zeros((0, 1), np.int64)):
        with pytest.raises(ValueError, match="ADMITTED_NS: expected INT64"):
            check_admission(bad, now_ns=0, budget_ns=1)
