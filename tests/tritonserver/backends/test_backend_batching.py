"""The request gathering of the Python-backend models (pure numpy, no server)."""

from __future__ import annotations

import numpy as np
import pytest

from moe_ids.core.preprocessing import STRATEGIES, PreprocessingError
from moe_ids.triton.backends.batching import answer, concat, gather, invalid_argument, row_offsets, split, unavailable
from moe_ids.triton.backends.classifier import Overdue, check_admission, check_input
from moe_ids.triton.backends.preprocess import batch_codes, request_codes

MEDIAN = STRATEGIES.index("median")


def test_concat_and_split_round_trip() -> None:
    parts = [np.arange(n * 3, dtype=np.float32).reshape(n, 3) + 100 * n for n in (1, 4, 2)]
    offsets = row_offsets([len(p) for p in parts])
    assert offsets.tolist() == [0, 1, 5, 7]
    for got, want in zip(split(concat(parts), offsets), parts, strict=True):
        np.testing.assert_array_equal(got, want)
    assert concat(parts[:1]) is parts[0]


class FakeBackendUtils:
    """The three pb_utils constructors ``gather``/``answer`` use, as plain records (the real ones need a stub)."""

    class TritonError:
        INVALID_ARG, UNAVAILABLE = "INVALID_ARG", "UNAVAILABLE"

        def __init__(self, message: str, code: str | None = None) -> None:
            self.message, self.code = message, code

    class Tensor:
        def __init__(self, name: str, array: np.ndarray) -> None:
            self.name, self.array = name, array

    class InferenceResponse:
        def __init__(self, output_tensors=None, error=None) -> None:
            self.tensors = {t.name: t.array for t in output_tensors or []}
            self.error = error


def test_gather_reads_each_request_on_its_own_and_answer_splits_rows_back() -> None:
    pb = FakeBackendUtils
    requests = [np.ones((2, 3)), "not numbers", np.zeros((1, 3)), "late"]

    def read(request):
        if isinstance(request, str):
            raise Overdue("waited too long") if request == "late" else ValueError("FEATURES: not numbers")
        return request

    responses, good, rows = gather(pb, requests, read, {ValueError: invalid_argument, Overdue: unavailable})
    assert good == [0, 2] and [r.shape[0] for r in rows] == [2, 1]
    assert responses[1].error.code == "INVALID_ARG" and "FEATURES" in responses[1].error.message
    assert responses[3].error.code == "UNAVAILABLE"
    batch = concat(rows)
    answer(pb, responses, good, {"OUT": batch.sum(axis=1, keepdims=True)}, [len(r) for r in rows])
    np.testing.assert_array_equal(responses[0].tensors["OUT"], [[3.0], [3.0]])
    np.testing.assert_array_equal(responses[2].tensors["OUT"], [[0.0]])
    with pytest.raises(ValueError, match="OUT: 2 rows for a batch of 3 flows"):
        answer(pb, [None] * 4, good, {"OUT": batch[:2]}, [2, 1])


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
