"""Locust entry point for load-testing the ``moe_ids`` Triton ensemble.

Run through ``moe-ids loadtest`` (which adds reports and SLO gates), or directly, e.g.::

    locust -f loadtest/locustfile.py HttpBinaryUser --headless --host http://127.0.0.1:8000 \\
        --scenario mixed --shape step --users 16 --spawn-rate 4 --run-time 60s

User classes: HttpBinaryUser, HttpJsonUser, GrpcUser (``--host grpc://127.0.0.1:8001``). The schedule always
comes from ScheduledShape (``--shape constant|step|spike|soak``), so every run ends after ``--run-time``.
"""

from __future__ import annotations

from locust import events

from moe_ids.perf.loadtest.scenarios import IMPUTATION_STRATEGIES, SCENARIOS
from moe_ids.perf.loadtest.shapes import ScheduledShape, add_shape_arguments
from moe_ids.perf.loadtest.users import GrpcUser, HttpBinaryUser, HttpJsonUser

__all__ = ["GrpcUser", "HttpBinaryUser", "HttpJsonUser", "ScheduledShape"]


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:  # noqa: ANN001 - Locust's configargparse parser
    group = parser.add_argument_group("moe-ids scenario")
    group.add_argument("--scenario", choices=sorted(SCENARIOS), default="realtime", help="request mix to send")
    group.add_argument("--imputation", choices=IMPUTATION_STRATEGIES, default=None,
                       help="send this imputation strategy with every request (default: the scenario's)")
    group.add_argument("--flow-seed", type=int, default=0, help="seed of the flows and NaN patterns sent")
    add_shape_arguments(parser)
