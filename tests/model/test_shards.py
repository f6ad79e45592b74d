"""Token shards and their manifest, which model/shards.py alone writes and reads, on real text."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fineforge.model.shards import (
    MANIFEST,
    ShardError,
    load_manifest,
    read_shard,
    shards_tokenizer,
    tokenizer_spec,
    write_shard_set,
)
from fineforge.model.tokenizer import BPETrainingConfig, load_tokenizer, train_bpe


@pytest.fixture(scope="module")
def text(shared_data) -> str:
    return (shared_data / "corpora" / "tinyshakespeare.txt").read_text()[:30_000]


def test_shard_set_round_trips_with_its_tokenizer_identity(text, tmp_path):
    tok = load_tokenizer("bytes")
    ids = np.asarray(tok.encode(text))
    manifest = write_shard_set(tmp_path, [("val", ids[:3000]), ("train", ids[3000:20000]), ("train", ids[20000:])],
                               tok)
    assert manifest == load_manifest(tmp_path, verify=True)
    assert [s["file"] for s in manifest["shards"]] == ["val_000000.bin", "train_000000.bin", "train_000001.bin"]
    assert manifest["tokens"] == {"val": 3000, "train": len(ids) - 3000} and manifest["dtype"] == "uint16"
    assert (manifest["tokenizer"], manifest["eot_id"]) == ("bytes", tok.eot_id)
    assert tok.decode(read_shard(tmp_path / "train_000001.bin").tolist()) == text[20000:]
    assert tokenizer_spec(tmp_path, manifest) == "bytes"


def test_trained_tokenizer_travels_with_its_shards(text, tmp_path):
    trained = train_bpe([text], tmp_path / "elsewhere" / "bpe.json", BPETrainingConfig(vocab_size=400))
    ids = np.asarray(trained.encode(text))
    manifest = write_shard_set(tmp_path / "shards", [("train", ids), ("val", ids[:500])], trained)
    (tmp_path / "elsewhere" / "bpe.json").unlink()  # the shards do not depend on the original file
    assert manifest["tokenizer_file"] == "tokenizer.json"
    assert tokenizer_spec(tmp_path / "shards", manifest) == str(tmp_path / "shards" / "tokenizer.json")
    again = shards_tokenizer(tmp_path / "shards", manifest)
    assert again.vocab_size == trained.vocab_size and again.encode(text) == ids.tolist()


def test_large_vocabularies_get_uint32_shards(shared_data, tmp_path):
    tok = load_tokenizer("o200k_base", shared_data / "tokenizers")
    ids = np.asarray(tok.encode("Ubiquitous tokens") + [tok.eot_id])
    manifest = write_shard_set(tmp_path, [("train", ids)], tok)
    assert manifest["dtype"] == "uint32" and read_shard(tmp_path / "train_000000.bin").tolist() == ids.tolist()
    assert ids.max() > 2**16


def _rewrite(directory, change) -> None:
    path = directory / MANIFEST
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("vocab_size"), "field 'vocab_size' must be int"),
        (lambda m: m.update(dtype="float16"), "unknown dtype 'float16'"),
        (lambda m: m["shards"][0].update(file="../../etc/passwd"), "is not a file name in the shard folder"),
        (lambda m: m["shards"][0].pop("sha256"), "shard 0 needs file, split, tokens, sha256"),
        (lambda m: m.update(tokenizer_file="/etc/passwd"), "tokenizer_file must be 'tokenizer.json'"),
        (lambda m: m["shards"][0].update(tokens=5), "5 tokens|manifest says 5"),
    ],
)
def test_a_manifest_that_cannot_be_trusted_is_refused(text, tmp_path, change, message):
    tok = load_tokenizer("bytes")
    write_shard_set(tmp_path, [("train", np.asarray(tok.encode(text)))], tok)
    _rewrite(tmp_path, change)
    with pytest.raises(ShardError, match=message):
        load_manifest(tmp_path)


def test_unreadable_manifests_are_refused(tmp_path):
    with pytest.raises(ShardError, match="no manifest.json"):
        load_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(ShardError, match="not JSON"):
        load_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text("[]")
    with pytest.raises(ShardError, match="not a JSON object"):
        load_manifest(tmp_path)
