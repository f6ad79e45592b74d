"""The tokenize stage on Spark over a real-text corpus: shard contents, splits, bad input, skip, training."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from fineforge.model.shards import load_manifest, read_shard, write_shard
from fineforge.model.tokenizer import load_tokenizer
from fineforge.tasks.common.documents import parquet_files
from fineforge.tasks.tokens.bpe import train_bpe_tokenizer
from fineforge.tasks.tokens.config import TokenizeConfig, TokenizerTrainingConfig, token_dtype
from fineforge.tasks.tokens.documents import document_text, validation_split
from fineforge.tasks.tokens.job import rechunk, tokenize_corpus
from testkit.token_corpus import BAD_DOCUMENTS, write_corpus

SHARD_TOKENS = 10_000
VAL_FRACTION = 0.2


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tokenize")
    folder, docs = write_corpus(shared_data, workdir)
    return workdir, folder, docs


def split_documents(directory, manifest, split):
    """The documents of a split, as token arrays, read back from its shards in order."""
    tokens = np.concatenate([read_shard(directory / s["file"]) for s in manifest["shards"] if s["split"] == split])
    ends = np.flatnonzero(tokens == manifest["eot_id"])
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [tokens[a:b] for a, b in zip(starts, ends, strict=True)], tokens


def test_rechunk_cuts_exact_sizes():
    parts = [np.arange(0, 7), np.arange(7, 8), np.arange(8, 30)]
    chunks = list(rechunk(parts, 10))
    assert [c.size for c in chunks] == [10, 10, 10]
    assert np.array_equal(np.concatenate(chunks), np.arange(30))
    assert [c.size for c in rechunk([np.arange(25)], 10)] == [10, 10, 5]


def test_vocabulary_that_does_not_fit_dtype_is_a_config_error(corpus, shared_data):
    workdir, folder, _ = corpus
    assert token_dtype(50_266) == "uint16" and token_dtype(200_273) == "uint32"
    with pytest.raises(ValidationError, match="tokenizer: a vocabulary of 100277 tokens does not fit uint16"):
        TokenizeConfig(input=[str(folder)], workdir=str(workdir), name="too-big", tokenizer="cl100k_base",
                       vocab_dir=str(shared_data / "tokenizers"), dtype="uint16")


@pytest.mark.parametrize(("values", "message"), [
    ({"input": ["nope"]}, "input not found: nope"),
    ({"tokenizer": "gpt3"}, "tokenizer: unknown tokenizer 'gpt3'"),
    ({"tokenizer": "gpt2", "vocab_dir": None}, "tokenizer: gpt2 needs a folder of vocabulary files"),
    ({"tokenizer": "missing.json"}, "tokenizer: tokenizer file missing.json does not exist"),
    ({"val_fraction": 1.5}, "val_fraction"),
    ({"name": "a/b"}, "name"),
])
def test_config_checks_need_no_work(corpus, monkeypatch, values, message):
    monkeypatch.delenv("FINEFORGE_TOKENIZER_DIR", raising=False)
    _, folder, _ = corpus
    with pytest.raises(ValidationError, match=re.escape(message)):
        TokenizeConfig(**{"input": [str(folder)], "tokenizer": "bytes", **values})


def test_default_input_is_the_data_builds_corpus(corpus, tmp_path):
    workdir, folder, _ = corpus
    assert TokenizeConfig(workdir=str(workdir), tokenizer="bytes").input == [str(folder)]
    with pytest.raises(ValidationError, match="no input: pass input, or build the corpus"):
        TokenizeConfig(workdir=str(tmp_path), tokenizer="bytes")


def test_tokenize_stage_writes_exact_documents_in_shards(corpus, shared_data, spark):
    workdir, folder, docs = corpus
    vocab_dir = str(shared_data / "tokenizers")
    config = TokenizeConfig(input=[str(folder)], workdir=str(workdir), name="gpt2", tokenizer="gpt2",
                            vocab_dir=vocab_dir, val_fraction=VAL_FRACTION, shard_tokens=SHARD_TOKENS)
    output = tokenize_corpus(spark, config)
    stats = output.statistics
    out = workdir / "tokens" / "gpt2"
    manifest = load_manifest(out, verify=True)
    tok = load_tokenizer("gpt2", vocab_dir)

    long_doc = (shared_data / "corpora" / "tinyshakespeare.txt").read_text()[:60_000]
    good = {doc_id: text for doc_id, _, text in docs} | {"<urn:uuid:long>": long_doc}
    assert stats["documents_in"] == len(good) + sum(BAD_DOCUMENTS.values())
    assert stats["dropped"] == BAD_DOCUMENTS
    assert stats["documents_out"] == len(good)
    assert stats["documents_longer_than_shard"] == 1
    assert (manifest["tokenizer"], manifest["vocab_size"], manifest["dtype"]) == ("gpt2", tok.vocab_size, "uint16")
    assert json.loads((out / "stats.json").read_text())["fingerprint"] == output.fingerprint
    assert output.path == out and not output.skipped
    assert not list(out.glob("_parts")) and not list(workdir.glob("tokens/.*"))

    for split in ("train", "val"):
        shards = [s for s in manifest["shards"] if s["split"] == split]
        assert [s["file"] for s in shards] == [f"{split}_{i:06d}.bin" for i in range(len(shards))]
        assert all(s["tokens"] == SHARD_TOKENS for s in shards[:-1]) and 0 < shards[-1]["tokens"] <= SHARD_TOKENS
        documents, tokens = split_documents(out, manifest, split)
        assert tokens.size == manifest["tokens"][split] == sum(s["tokens"] for s in shards)
        expected = sorted(t for i, t in good.items() if validation_split(i, VAL_FRACTION) == split)
        assert sorted(tok.decode(d) for d in documents) == expected
        assert len(documents) == manifest["documents"][split]
    assert len([s for s in manifest["shards"] if s["split"] == "train"]) > 3  # the long document spans shards

    again = tokenize_corpus(spark, config)
    assert again.skipped and again.fingerprint == output.fingerprint and again.statistics == stats


def reference_shards(files, tok, shard_tokens):
    """A straightforward encoding: every good document of the files in order, its tokens and EOT, per split,
    concatenated and cut every `shard_tokens`."""
    tokens = {"train": [], "val": []}
    for file in files:
        table = pq.read_table(file, columns=["id", "text"])
        for doc_id, raw in zip(table.column("id").to_pylist(), table.column("text").cast(pa.binary()).to_pylist(),
                               strict=True):
            text, _ = document_text(raw)
            if text is not None:
                tokens[validation_split(doc_id, VAL_FRACTION)] += [*tok.encode(text), tok.eot_id]
    return {split: np.split(np.array(t), range(shard_tokens, len(t), shard_tokens)) for split, t in tokens.items()}


@pytest.mark.parametrize("slices", [1, 7])
def test_shards_equal_a_reference_encoding_byte_for_byte(corpus, shared_data, spark, tmp_path, slices):
    workdir, folder, _ = corpus
    config = TokenizeConfig(input=[str(folder)], workdir=str(workdir), name=f"ref-{slices}", tokenizer="gpt2",
                            vocab_dir=str(shared_data / "tokenizers"), val_fraction=VAL_FRACTION,
                            shard_tokens=SHARD_TOKENS, min_partitions=slices)
    out = tokenize_corpus(spark, config).path
    expected = reference_shards(parquet_files([folder]), config.load_tokenizer(), SHARD_TOKENS)
    shards = load_manifest(out)["shards"]
    assert [s["file"] for s in shards] == [f"{split}_{i:06d}.bin" for split in ("train", "val")
                                           for i in range(len(expected[split]))]
    for shard in shards:
        reference = tmp_path / shard["file"]
        write_shard(reference, expected[shard["split"]][int(shard["file"][-10:-4])], "uint16")
        assert (out / shard["file"]).read_bytes() == reference.read_bytes(), shard["file"]


def test_trained_tokenizer_end_to_end(corpus, spark, tmp_path):
    workdir, folder, docs = corpus
    path = tmp_path / "bpe.json"
    training = TokenizerTrainingConfig(input=[str(folder)], output=str(path), vocab_size=600, sample_docs=150,
                                       val_fraction=VAL_FRACTION)
    tok = train_bpe_tokenizer(spark, training)
    assert tok.vocab_size == 600 and path.is_file()
    config = TokenizeConfig(input=[str(folder)], workdir=str(workdir), name="bpe", tokenizer=str(path),
                            val_fraction=VAL_FRACTION)
    stats = tokenize_corpus(spark, config).statistics
    out = workdir / "tokens" / "bpe"
    manifest = load_manifest(out)
    assert manifest["tokenizer_file"] == "tokenizer.json" and len(manifest["shards"]) == 2
    assert stats["bytes_per_token"] > 1.5
    reloaded = load_tokenizer(str(out / "tokenizer.json"))
    documents, _ = split_documents(out, manifest, "val")
    held_out = sorted(t for i, _, t in docs if validation_split(i, VAL_FRACTION) == "val")
    assert sorted(reloaded.decode(d) for d in documents) == held_out
