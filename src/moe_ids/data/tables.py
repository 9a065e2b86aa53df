"""Flow tables as files hold them: CSV (optionally gzip) or Apache Parquet, read whole or in chunks.

Why Parquet: the cleaned CIC-IDS2017 / CSE-CIC-IDS2018 releases most users download from Kaggle are Parquet
files with the same column names as the CSVs; they go through the same extractor profiles. Reading them needs
``pyarrow`` (the ``parquet`` extra); a Parquet file without it is refused with that said, rather than read as a
CSV of one garbage column.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pandas as pd

from moe_ids.core.schema import INFINITY_SPELLINGS

PARQUET_MAGIC = b"PAR1"


def is_parquet(path: str | Path) -> bool:
    """A Parquet file starts (and ends) with ``PAR1``; a gzip or text CSV never does."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == PARQUET_MAGIC
    except OSError:
        return False


def _parquet_file(path: str | Path):  # -> pyarrow.parquet.ParquetFile
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"{path} is a Parquet file; reading it needs pyarrow: "
                         "pip install 'triton-moe-ids[parquet]'") from None
    return pq.ParquetFile(path)


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def read_header(path: str | Path) -> list[str]:
    """The column names, stripped of the original CSVs' leading spaces."""
    if is_parquet(path):
        return [str(c).strip() for c in _parquet_file(path).schema_arrow.names]
    return [str(c).strip() for c in pd.read_csv(path, nrows=0).columns]


def _csv_options() -> dict:
    return {"low_memory": False, "na_values": list(INFINITY_SPELLINGS), "encoding_errors": "replace"}


def read_table(path: str | Path, nrows: int | None = None) -> pd.DataFrame:
    """The whole table (or its first ``nrows`` rows)."""
    if is_parquet(path):
        import pyarrow as pa

        pf = _parquet_file(path)
        if nrows is None:
            return _clean(pf.read().to_pandas())
        first = list(islice(pf.iter_batches(batch_size=nrows), 1))
        return _clean(pa.Table.from_batches(first, schema=pf.schema_arrow).to_pandas())
    return _clean(pd.read_csv(path, nrows=nrows, **_csv_options()))


def read_chunks(path: str | Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The table in chunks of at most ``chunk_rows`` rows, in file order, so its size does not matter."""
    if is_parquet(path):
        for batch in _parquet_file(path).iter_batches(batch_size=chunk_rows):
            yield _clean(batch.to_pandas())
        return
    for chunk in pd.read_csv(path, chunksize=chunk_rows, **_csv_options()):
        yield _clean(chunk)
