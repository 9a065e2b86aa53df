"""Locust entry point of the overload test (run by ``moe_ids.perf.loadtest.overload``, not by hand).

``OverloadUser`` sends pre-encoded binary HTTP requests of ``--batch`` real flows. With ``--target-rps`` each
user sends on its own Poisson schedule at its share of that rate (``PoissonArrivals``), so the offered load is
set by the test, not by how fast the server answers — with enough users the load stays open-loop, which is
what overload means — and it is steady: users paced at a constant rate from a common start send in
synchronised waves (every user at once, then silence), which measures how a server rides out bursts, not how
it holds a steady 3x. Every answer is filed under one of three request names: ``accepted`` (a valid result),
``rejected`` (an explicit refusal by Triton's queue policy: queue full or queueing deadline passed; counted as
a success, it is the designed behaviour) and ``failed`` (anything else: wrong answers, other errors, no answer
within ``REQUEST_TIMEOUT_S``).
"""

from __future__ import annotations

import numpy as np
from locust import constant, events, task
from locust.contrib.fasthttp import FastHttpUser

from moe_ids.core.contract import PRIORITY_REALTIME
from moe_ids.perf.loadtest import payloads
from moe_ids.perf.loadtest.arrivals import PoissonArrivals
from moe_ids.perf.loadtest.flows import load_feature_matrix
from moe_ids.perf.loadtest.overload import ACCEPTED, FAILED, REJECTED, classify
from moe_ids.perf.loadtest.scenarios import RequestKind

REQUEST_TIMEOUT_S = 10.0

_POOL: list[tuple[payloads.Request, payloads.HttpBody]] = []


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:  # noqa: ANN001 - Locust's configargparse parser
    group = parser.add_argument_group("moe-ids overload")
    group.add_argument("--target-rps", type=float, default=0.0,
                       help="total requests/s offered by all users (0: closed loop, as fast as answered)")
    group.add_argument("--batch", type=int, default=1024, help="flows per request")
    group.add_argument("--priority", type=int, default=PRIORITY_REALTIME, help="Triton priority of the requests")
    group.add_argument("--flow-seed", type=int, default=0, help="seed of the flows sent")


def _pool(options: object) -> list[tuple[payloads.Request, payloads.HttpBody]]:
    if not _POOL:
        kind = RequestKind("overload", int(options.batch), priority=int(options.priority))
        rng = np.random.default_rng(int(options.flow_seed))
        for req in payloads.build_pool(kind, load_feature_matrix(), rng, payloads.Wire(), 8):
            _POOL.append((req, payloads.encode_http_binary(req)))
    return _POOL


class OverloadUser(FastHttpUser):
    network_timeout = REQUEST_TIMEOUT_S
    connection_timeout = REQUEST_TIMEOUT_S
    wait_time = constant(0)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        users = max(1, int(getattr(options, "num_users", 1) or 1))
        if options.target_rps > 0:
            self.wait_time = PoissonArrivals(options.target_rps / users)
            self.wait()  # each user's first request at its own random moment
        self.pool = _pool(options)
        self.index = np.random.default_rng().integers(len(self.pool))

    @task
    def infer(self) -> None:
        self.index = (self.index + 1) % len(self.pool)
        req, body = self.pool[self.index]
        with self.client.post(payloads.HTTP_INFER_PATH, data=body.body, headers=body.headers, name=FAILED,
                              catch_response=True) as resp:
            if resp.status_code == 200:
                problem = payloads.check_http_response(resp.content or b"", resp.headers.get(payloads.HEADER_LENGTH),
                                                       req.batch)
                if problem is None:
                    resp.request_meta["name"] = ACCEPTED
                    resp.success()
                else:
                    resp.failure(problem)
                return
            text = payloads.http_error_text(resp.content or b"") if resp.status_code else str(resp.error)
            if classify(resp.status_code, text) == REJECTED:
                resp.request_meta["name"] = REJECTED
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code}: {text}")
