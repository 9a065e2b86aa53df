"""A trained model's split, re-derived in one place and checked against what training recorded."""

from __future__ import annotations

import json

import pytest

from moe_ids.core import artifacts
from moe_ids.data.corpus import SplitMismatchError, indices_digest, model_split


def test_model_split_is_the_split_training_recorded() -> None:
    model_dir = artifacts.default_model_dir()
    meta = artifacts.read_json(model_dir / artifacts.METADATA)["training_data"]
    corpus, split = model_split(model_dir)
    assert corpus.data_hash == meta["sha256"]
    assert indices_digest(split["test"]) == meta["test_indices_digest"]
    assert not set(split["test"]) & set(split["train"]) and not set(split["val"]) & set(split["train"])


@pytest.mark.parametrize(("key", "value", "message"), [("sha256", "0" * 64, "other data"),
                                                      ("test_indices_digest", "f" * 16, "differs")])
def test_a_model_of_other_data_is_refused(tmp_path, key: str, value: str, message: str) -> None:
    source = artifacts.default_model_dir() / artifacts.METADATA
    meta = json.loads(source.read_text())
    meta["training_data"][key] = value
    (tmp_path / artifacts.METADATA).write_text(json.dumps(meta))
    with pytest.raises(SplitMismatchError, match=message):
        model_split(tmp_path)


def test_training_corpus_leaves_attempted_attacks_out_and_counts_them(attempted_csv) -> None:
    from moe_ids.data.corpus import load_corpus

    corpus = load_corpus([attempted_csv])
    assert len(corpus.binary) == 80
    assert set(corpus.labels.tolist()) == {"BENIGN", "DoS Hulk"}
    assert corpus.attempted_left_out == {"with_attempted.csv": 25}
