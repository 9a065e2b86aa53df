"""Shared fixtures. ``triton_server``: one real tritonserver per test session, on free ports.

It serves the cpu repository in the ensemble layout (whose composing models many serving tests inspect)
generated from ``models/default`` (trained and exported first if missing) into a temporary directory, so
tests never touch the committed ``model_repository/`` or ports another server uses; ``serving`` without a
layout serves the cpu default (one-hop). Tests reach it through ``.http_url``, ``.grpc_url``,
``.metrics_url`` ("127.0.0.1:PORT"), ``.pid`` and ``.repository``; it is stopped (SIGTERM, then SIGKILL) at
the end of the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest


@contextmanager
def serving(root: Path, extra_args: list[str] | None = None, **options) -> Iterator:
    """A real tritonserver on a repository generated under ``root`` from models/default with ``options``
    (``RepositoryOptions`` fields), stopped on exit; its log is ``root/tritonserver.log``."""
    from moe_ids.triton.ops.bootstrap import ensure_model
    from moe_ids.triton.ops.server import TritonServer
    from moe_ids.triton.repository import build_repository, options_for_model

    model_dir = ensure_model()
    repository = build_repository(model_dir, root / "repository", options_for_model(model_dir, **options))
    with TritonServer(repository, log_path=root / "tritonserver.log", extra_args=extra_args) as server:
        yield server


@pytest.fixture(scope="session")
def triton_serving() -> Callable[..., AbstractContextManager]:
    """``serving`` for the test modules that need a server with settings of their own."""
    return serving


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with serving(tmp_path_factory.mktemp("triton"), layout="ensemble") as server:
        yield server


@pytest.fixture
def repeated_header_csv(tmp_path: Path) -> Callable[..., Path]:
    """A real flow CSV written again with its header line repeated after row ``at``, as CSE-CIC-IDS2018's day
    files have it where CSVs were concatenated."""
    import gzip

    def make(src: str | Path, at: int = 100) -> Path:
        with gzip.open(src, "rt", encoding="utf-8", errors="replace") as fh:
            lines = fh.readlines()
        dst = tmp_path / f"repeated-header-{Path(src).name.removesuffix('.gz')}"
        dst.write_text("".join(lines[:at + 1] + [lines[0]] + lines[at + 1:]))
        return dst

    return make


@pytest.fixture
def attempted_csv(tmp_path: Path) -> Path:
    """Real corrected-release rows, 40 benign and 65 DoS Hulk flows, the last 25 relabelled the way the corrected
    release labels the attack tool's flows that delivered nothing (``DoS Hulk - Attempted``)."""
    import pandas as pd

    from moe_ids.data.loading import bundled_data_dir

    flows = pd.read_csv(bundled_data_dir() / "cicids2017-improved" / "flows.csv.gz")
    benign = flows[flows["Label"] == "BENIGN"].head(40)
    hulk = flows[flows["Label"] == "DoS Hulk"].head(65).copy()
    hulk.iloc[40:, hulk.columns.get_loc("Label")] = "DoS Hulk - Attempted"
    path = tmp_path / "with_attempted.csv"
    pd.concat([benign, hulk]).to_csv(path, index=False)
    return path
