"""Flow tables in Parquet read as the same CSV does: the same features, labels and extractor, whole or in
chunks; a Parquet file without pyarrow is refused with that said."""

import sys

import numpy as np
import pandas as pd
import pytest

from moe_ids.data.loading import bundled_data_dir, load_flows
from moe_ids.data.tables import is_parquet, read_chunks, read_header, read_table

pytest.importorskip("pyarrow")  # the parquet extra; make setup installs it

ORIGINAL = bundled_data_dir() / "cicids2017-original" / "machinelearningcve_stratified12k.csv.gz"
CORRECTED = bundled_data_dir() / "cicids2017-improved" / "flows.csv.gz"


def as_parquet(csv, path, rows=3000):
    """The first rows of a bundled CSV as the Kaggle releases ship them: Parquet, same names (spaces kept)."""
    frame = pd.read_csv(csv, nrows=rows, low_memory=False)
    frame.to_parquet(path, index=False)
    return frame


@pytest.mark.parametrize("csv", [ORIGINAL, CORRECTED], ids=["original", "corrected"])
def test_parquet_reads_as_the_same_csv(csv, tmp_path):
    path = tmp_path / "flows.parquet"
    frame = as_parquet(csv, path)
    assert is_parquet(path) and not is_parquet(csv)
    assert read_header(path) == [str(c).strip() for c in frame.columns]
    from_csv, from_parquet = load_flows(csv, nrows=3000), load_flows(path)
    assert from_parquet.extractor == from_csv.extractor
    np.testing.assert_array_equal(from_parquet.features.to_numpy(), from_csv.features.to_numpy())
    np.testing.assert_array_equal(from_parquet.binary, from_csv.binary)
    assert from_parquet.labels.tolist() == from_csv.labels.tolist()
    assert from_parquet.binary.any() and not from_parquet.binary.all()  # attacks and normal flows both


def test_parquet_chunks_cover_the_table_in_order(tmp_path):
    path = tmp_path / "flows.parquet"
    as_parquet(CORRECTED, path, rows=2500)
    chunks = list(read_chunks(path, 1000))
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), read_table(path))
    assert len(read_table(path, nrows=10)) == 10


def test_a_parquet_file_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "flows.parquet"
    as_parquet(CORRECTED, path, rows=10)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if the extra were not installed
    with pytest.raises(ValueError, match=r"flows\.parquet is a Parquet file; reading it needs pyarrow: "
                                         r"pip install 'triton-moe-ids\[parquet\]'"):
        load_flows(path)
