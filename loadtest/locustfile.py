"""Entry point for ``locust -f loadtest/locustfile.py``: the users and options of ``moe_ids.perf.loadtest``."""

from moe_ids.perf.loadtest.locustfile import *  # noqa: F403  (Locust collects the User classes by name)
