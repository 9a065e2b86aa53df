"""``moe-ids stream`` options given before a sub-action reach it: ``stream --nats URL publish FILE`` publishes
to URL, not to the default port."""

from __future__ import annotations

import pytest

from moe_ids.cli import build_parser
from moe_ids.streaming import topology

URL = "nats://127.0.0.1:14222"


@pytest.mark.parametrize("argv", [
    ["stream", "--nats", URL, "publish", "flows.csv"],
    ["stream", "publish", "flows.csv", "--nats", URL],
    ["stream", "--nats", "nats://127.0.0.1:1", "publish", "flows.csv", "--nats", URL],
])
def test_publish_uses_the_nats_url_wherever_it_is_given(argv):
    assert build_parser().parse_args(argv).nats == URL


def test_publish_without_a_url_uses_the_default():
    args = build_parser().parse_args(["stream", "publish", "flows.csv"])
    assert args.nats == topology.DEFAULT_NATS_URL
    assert args.idle_exit is None


def test_idle_exit_before_the_sub_action_reaches_it():
    args = build_parser().parse_args(["stream", "--idle-exit", "4", "publish", "eve.json", "--follow"])
    assert args.idle_exit == 4.0
    assert build_parser().parse_args(["stream", "publish", "eve.json", "--idle-exit", "2"]).idle_exit == 2.0


def test_the_worker_keeps_its_own_options():
    args = build_parser().parse_args(["stream", "--nats", URL, "--idle-exit", "3"])
    assert (args.nats, args.idle_exit, args.stream_command) == (URL, 3.0, None)
