"""Sub-commands of the ``moe-ids`` CLI, one module each (see ``moe_ids.cli``)."""
