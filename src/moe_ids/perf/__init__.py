"""Measuring the product: ``moe-ids bench`` (served vs in-process, the do-nothing floor, the Flask baseline),
the Locust load tests with their gates (``loadtest``) and the soak analysis."""
