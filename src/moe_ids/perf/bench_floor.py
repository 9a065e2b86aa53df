"""The benchmark's floor: an ensemble of do-nothing Python models shaped exactly like ``moe_ids``.

``floor_ensemble`` chains ``floor_preprocess`` and ``floor_model``, whose configs are the real preprocess and
classifier configs (same tensors, widths, batching, queue policy and admission stamp) with the work taken out
(``moe_ids.triton.backends.noop``). Served next to the real models in the same server, single-flow load on
``floor_ensemble`` against ``floor_model`` alone measures what two Python-backend hops cost against one on this
machine: the ceiling of the real ``single_vs_bare`` ratio.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from moe_ids.core import contract
from moe_ids.triton.repository import (
    HEADER,
    VERSION,
    RepositoryOptions,
    classifier_config,
    ensemble_config,
    preprocess_config,
    shim_source,
)

FLOOR_ENSEMBLE = "floor_ensemble"
FLOOR_PREPROCESS = "floor_preprocess"
FLOOR_MODEL = "floor_model"
NOOP_MODULE = "moe_ids.triton.backends.noop"


def _strip(config, name: str) -> None:
    config.name = name
    config.parameters.clear()
    for tensor in config.output:
        tensor.label_filename = ""


def floor_configs(opts: RepositoryOptions) -> list:
    """Configs of the three floor models, derived from the real ones so they cannot drift apart."""
    cpu = dataclasses.replace(opts, target="cpu", layout="ensemble")
    pre, clf, ens = preprocess_config(cpu), classifier_config(cpu), ensemble_config(cpu)
    _strip(pre, FLOOR_PREPROCESS)
    _strip(clf, FLOOR_MODEL)
    _strip(ens, FLOOR_ENSEMBLE)
    del clf.model_warmup[:], pre.model_warmup[:]
    renames = {contract.PREPROCESS_MODEL: FLOOR_PREPROCESS, contract.CLASSIFIER_MODEL: FLOOR_MODEL}
    for step in ens.ensemble_scheduling.step:
        step.model_name = renames[step.model_name]
    return [pre, clf, ens]


def add_floor_models(repository: Path, opts: RepositoryOptions) -> list[str]:
    """Write the floor models into ``repository`` (next to the real ones); their names."""
    from google.protobuf import text_format

    names = []
    for config in floor_configs(opts):
        model_dir = Path(repository) / config.name
        (model_dir / VERSION).mkdir(parents=True, exist_ok=True)
        (model_dir / "config.pbtxt").write_text(HEADER + text_format.MessageToString(config))
        if config.backend == "python":
            (model_dir / VERSION / "model.py").write_text(shim_source(config.name, NOOP_MODULE))
        names.append(config.name)
    return names
