"""What the deployed model expects and returns, read from its Triton model configuration.

The client never assumes the feature order or label sets: it reads them from the ensemble's config
``parameters`` (written by the model-repository generator from the model artifact) and checks them against
the tensor shapes, so a client cannot silently send columns in the wrong order to a re-trained model.
Where a server publishes no such parameter the names of ``moe_ids.core.contract`` are used, after checking the
widths agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from moe_ids.core import contract
from moe_ids.core.schema import EXPERT_LABELS, FEATURE_NAMES, canonical_name

from .errors import SchemaMismatchError

# Config parameter keys the client understands, first match wins (case-insensitive).
_FEATURE_KEYS = ("feature_names", "features")
_BINARY_KEYS = (f"labels_{contract.PROBABILITIES}".lower(), "binary_labels", "labels")
_FAMILY_KEYS = (f"labels_{contract.FAMILY_PROBABILITIES}".lower(), "family_labels", "families")
_EXPERT_KEYS = (f"labels_{contract.GATING}".lower(), "expert_labels", "experts")
_VERSION_KEYS = ("model_version", "version", "artifact_version")


@dataclass(frozen=True)
class ModelInfo:
    """The deployed model as the client needs it: input order, outputs, label sets, batch limit."""

    name: str
    feature_names: tuple[str, ...]  # canonical names, in the column order of the FEATURES tensor
    binary_labels: tuple[str, ...]
    families: tuple[str, ...]
    experts: tuple[str, ...]
    outputs: tuple[str, ...]
    max_batch_size: int
    accepts_imputation: bool
    version: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], model_name: str = contract.ENSEMBLE_MODEL) -> ModelInfo:
        """Parse a model config as returned by ``get_model_config`` of either protocol (JSON form)."""
        cfg = config.get("config", config)  # gRPC wraps it in {"config": ...}
        params = _parameters(cfg)
        inputs = {str(t["name"]): t for t in cfg.get("input", [])}
        outputs = {str(t["name"]): t for t in cfg.get("output", [])}
        where = f"model {model_name!r}"

        feat = inputs.get(contract.INPUT_FEATURES)
        if feat is None:
            raise SchemaMismatchError(f"{where} has no {contract.INPUT_FEATURES} input (inputs: {sorted(inputs)})")
        width = _last_dim(feat)
        names = _names(params, _FEATURE_KEYS)
        if names is None:
            names = FEATURE_NAMES
        canonical = []
        for name in names:
            resolved = canonical_name(name)
            if resolved is None:
                raise SchemaMismatchError(f"{where} expects feature {name!r}, which this client does not know")
            canonical.append(resolved)
        if width not in (-1, len(canonical)):
            raise SchemaMismatchError(
                f"{where}: {contract.INPUT_FEATURES} has {width} columns but the feature list has {len(canonical)}"
            )

        missing = [o for o in (contract.PROBABILITIES, contract.GATING) if o not in outputs]
        if missing:
            raise SchemaMismatchError(f"{where} lacks outputs {missing} (outputs: {sorted(outputs)})")
        binary = _labels(params, _BINARY_KEYS, contract.OUTPUT_LABELS[contract.PROBABILITIES])
        experts = _labels(params, _EXPERT_KEYS, EXPERT_LABELS)
        families = _labels(params, _FAMILY_KEYS, contract.OUTPUT_LABELS[contract.FAMILY_PROBABILITIES])
        for output, labels in ((contract.PROBABILITIES, binary), (contract.GATING, experts),
                               (contract.FAMILY_PROBABILITIES, families)):
            if output in outputs and _last_dim(outputs[output]) not in (-1, len(labels)):
                raise SchemaMismatchError(
                    f"{where}: output {output} has {_last_dim(outputs[output])} columns but {len(labels)} labels"
                )
        if binary != contract.BINARY_LABELS and set(binary) != set(contract.BINARY_LABELS):
            raise SchemaMismatchError(f"{where} predicts {binary}, expected {contract.BINARY_LABELS}")
        if contract.FAMILY_PROBABILITIES not in outputs:
            families = ()
        version = next((params[k] for k in _VERSION_KEYS if k in params), None)
        return cls(
            name=model_name,
            feature_names=tuple(canonical),
            binary_labels=tuple(binary),
            families=tuple(families),
            experts=tuple(experts),
            outputs=tuple(o for o in contract.ONNX_OUTPUTS if o in outputs),
            max_batch_size=int(cfg.get("max_batch_size", 0) or 0),
            accepts_imputation=contract.INPUT_IMPUTATION in inputs,
            version=version,
            parameters=params,
        )


def _parameters(cfg: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (cfg.get("parameters") or {}).items():
        text = value.get("string_value", "") if isinstance(value, Mapping) else value
        out[str(key).lower()] = str(text)
    return out


def _last_dim(tensor: Mapping[str, Any]) -> int:
    dims = [int(d) for d in tensor.get("dims", [])]
    return dims[-1] if dims else -1


def _names(params: Mapping[str, str], keys: Sequence[str]) -> list[str] | None:
    """A label/feature list from a parameter: JSON (a list, or an object with a list) or comma/newline text."""
    for key in keys:
        if key not in params or not params[key].strip():
            continue
        text = params[key].strip()
        if text[0] in "[{":
            data = json.loads(text)
            if isinstance(data, Mapping):
                data = data.get("features") or data.get("names") or data.get("labels") or []
            return [d["name"] if isinstance(d, Mapping) else str(d) for d in data]
        sep = "\n" if "\n" in text else ","
        return [part.strip() for part in text.split(sep) if part.strip()]
    return None


def _labels(params: Mapping[str, str], keys: Sequence[str], default: Sequence[str]) -> tuple[str, ...]:
    names = _names(params, keys)
    return tuple(names) if names is not None else tuple(default)
