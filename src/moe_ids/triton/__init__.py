"""Everything Triton runs or is run with: the repository generator (``repository``), the Python-backend models
(``backends``, which depend on ``moe_ids.core`` alone) and the local process management (``ops``)."""
