"""Imputation and scaling: the shared code path of training and serving (synthetic arrays, unit level)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from moe_ids.core.preprocessing import STRATEGIES, PreprocessingError, PreprocessingStats, Preprocessor
from moe_ids.core.schema import N_FEATURES, TABULAR_INDICES, TEMPORAL_INDICES


@pytest.fixture(scope="module")
def pre() -> Preprocessor:
    rng = np.random.default_rng(0)
    x = rng.lognormal(3, 2, size=(400, N_FEATURES))
    x[:, 0] = 7.0  # a constant column must not divide by zero
    return Preprocessor(PreprocessingStats.fit(x))


def test_shapes_and_split(pre):
    x = np.ones((5, N_FEATURES), dtype=np.float32)
    tab, tmp, mask = pre.transform(x)
    assert tab.shape == (5, len(TABULAR_INDICES)) and tmp.shape == (5, len(TEMPORAL_INDICES))
    assert mask.shape == (5, N_FEATURES) and mask.sum() == 0
    assert tab.dtype == tmp.dtype == mask.dtype == np.float32


def test_strategies_fill_with_their_statistic(pre):
    x = np.full((1, N_FEATURES), np.nan, dtype=np.float32)
    stats = pre.stats
    for name, fill in (("zero", np.zeros(N_FEATURES)), ("mean", stats.mean), ("median", stats.median)):
        tab, tmp, mask = pre.transform(x, name)
        ref_tab, ref_tmp, _ = pre.transform(np.asarray(fill, dtype=np.float32)[None, :])
        np.testing.assert_allclose(tab, ref_tab, rtol=1e-6)
        np.testing.assert_allclose(tmp, ref_tmp, rtol=1e-6)
        assert mask.sum() == N_FEATURES


def test_per_row_codes_equal_separate_calls(pre):
    rng = np.random.default_rng(1)
    x = rng.lognormal(3, 2, size=(9, N_FEATURES)).astype(np.float32)
    x[rng.random(x.shape) < 0.4] = np.nan
    codes = np.arange(9) % 3
    together = pre.transform(x, codes)
    for i in range(9):
        alone = pre.transform(x[i:i + 1], STRATEGIES[codes[i]])
        for a, b in zip(together, alone):
            np.testing.assert_array_equal(a[i:i + 1], b)


def test_infinity_is_missing_and_magnitudes_are_clipped(pre):
    x = np.ones((3, N_FEATURES), dtype=np.float32)
    x[0, 3] = np.inf
    x[1, 3] = 3e38
    x[2, 3] = -3e38
    tab, tmp, mask = pre.transform(x)
    assert mask[0, 3] == 1 and mask[1, 3] == 0
    z = np.concatenate([tab, tmp], axis=1)
    assert np.isfinite(z).all() and np.abs(z).max() <= pre.stats.clip


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.ones((2, N_FEATURES - 1), np.float32), "expected 70 features"),
        (np.ones((N_FEATURES,), np.float32), "rank 1"),
        (np.ones((0, N_FEATURES), np.float32), "empty batch"),
        (np.array([["a"] * N_FEATURES]), "dtype"),
    ],
)
def test_bad_input_names_field_and_problem(pre, bad, message):
    with pytest.raises(PreprocessingError, match=message) as err:
        pre.transform(bad)
    assert "FEATURES" in str(err.value)


def test_unknown_strategy(pre):
    with pytest.raises(PreprocessingError, match="IMPUTATION.*'nearest'"):
        pre.transform(np.ones((1, N_FEATURES), np.float32), "nearest")


def test_stats_round_trip(pre, tmp_path):
    pre.stats.to_json(tmp_path / "p.json")
    assert PreprocessingStats.from_json(tmp_path / "p.json") == pre.stats


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 8), st.just(N_FEATURES)),
              elements=st.floats(width=32, allow_nan=True, allow_infinity=True)),
       st.sampled_from(STRATEGIES))
def test_any_float_input_gives_finite_bounded_output(pre, x, strategy):
    tab, tmp, mask = pre.transform(x, strategy)
    z = np.concatenate([tab, tmp], axis=1)
    assert np.isfinite(z).all() and np.abs(z).max() <= pre.stats.clip
    np.testing.assert_array_equal(mask, ~np.isfinite(x))
