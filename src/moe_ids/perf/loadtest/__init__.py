"""Load tests of the served model: Locust users, scenarios, load shapes, the runner and its SLO gates.

``locustfile.py`` is the Locust entry point (users in ``users.py``, request encodings in ``payloads.py``,
traffic mixes in ``scenarios.py``, schedules in ``schedule.py``/``shapes.py``, real flows in ``flows.py``).
``runner.py`` drives Locust as a subprocess for ``moe-ids loadtest`` and turns its CSVs into gates
(``gates.py``, ``gates.json``), a plot (``plots.py``) and a summary. Only ``locustfile.py``, ``users.py`` and
``shapes.py`` import Locust, so the runner never gevent-patches the process that calls it.
"""
