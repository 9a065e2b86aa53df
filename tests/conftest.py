"""Shared fixtures. ``triton_server``: one real tritonserver per test session, on free ports.

It serves the default cpu repository generated from ``models/default`` (trained and exported first if
missing) into a temporary directory, so tests never touch the committed ``model_repository/`` or ports
another server uses. Tests reach it through ``.http_url``, ``.grpc_url``, ``.metrics_url`` ("127.0.0.1:PORT"),
``.pid`` and ``.repository``; it is stopped (SIGTERM, then SIGKILL) at the end of the session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from moe_ids.serving.bootstrap import ensure_model
    from moe_ids.serving.repository import build_repository, options_for_model
    from moe_ids.serving.server import TritonServer

    model_dir = ensure_model()
    root = tmp_path_factory.mktemp("triton")
    repository = build_repository(model_dir, root / "repository", options_for_model(model_dir))
    server = TritonServer(repository, log_path=root / "tritonserver.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
