"""`fineforge tokens train/build/inspect` end to end: real Spark, a real Prefect flow run, real text."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.model.shards import HEADER_BYTES, load_manifest
from testkit.token_corpus import BAD_DOCUMENTS, write_corpus

runner = CliRunner()


@pytest.fixture(scope="module")
def built(shared_data, spark, tmp_path_factory):
    """A corpus in the data build's layout, a tokenizer trained on it, and shards built with it (CLI)."""
    workdir = tmp_path_factory.mktemp("tokens-cli")
    write_corpus(shared_data, workdir)
    tokenizer = workdir / "bpe.json"
    trained = runner.invoke(app, ["tokens", "train", "--workdir", str(workdir), "--output", str(tokenizer),
                                  "--vocab-size", "700", "--sample-docs", "200", "--spark-master", "local[2]"])
    assert trained.exit_code == 0, trained.output
    built = runner.invoke(app, ["tokens", "build", "--workdir", str(workdir), "--name", "bpe", "--tokenizer",
                                str(tokenizer), "--val-fraction", "0.1", "--shard-tokens", "30000",
                                "--spark-master", "local[2]"])
    assert built.exit_code == 0, built.output
    return workdir, tokenizer, built.output


def test_train_and_build_through_the_cli(built):
    workdir, tokenizer, output = built
    assert json.loads(tokenizer.read_text())["model"]["type"] == "BPE"
    shards = workdir / "tokens" / "bpe"
    manifest = load_manifest(shards, verify=True)
    stats = json.loads((shards / "stats.json").read_text())
    assert manifest["tokenizer"] == str(tokenizer) and manifest["vocab_size"] == 700
    assert stats["dropped"] == BAD_DOCUMENTS and "dropped: invalid_utf8" in output
    assert sum(manifest["tokens"].values()) == sum(s["tokens"] for s in manifest["shards"]) == stats["tokens"]
    assert {s["split"] for s in manifest["shards"]} == {"train", "val"}


def test_rerun_is_skipped_by_a_real_flow_run(built):
    from fineforge.flows.tokens import tokenize
    from fineforge.tasks.tokens.config import TokenizeConfig

    workdir, tokenizer, _ = built
    config = TokenizeConfig(input=[str(workdir / "CC-MAIN-2020-34" / "scrubbed")], workdir=str(workdir), name="bpe",
                            tokenizer=str(tokenizer), val_fraction=0.1, shard_tokens=30000,
                            spark={"master": "local[2]"})
    state = tokenize(config, return_state=True)
    assert state.is_completed()
    output = state.result()
    assert output.skipped is True and output.path == workdir / "tokens" / "bpe"


def test_inspect_shows_statistics_sample_and_verifies(built):
    workdir, _, _ = built
    shards = workdir / "tokens" / "bpe"
    manifest = load_manifest(shards)
    result = runner.invoke(app, ["tokens", "inspect", str(shards), "--sample-tokens", "40"])
    assert result.exit_code == 0, result.output
    assert "train_000000.bin" in result.output and "verified" in result.output
    assert f"{manifest['tokens']['train']:,}" in result.output
    assert "sample: train_000000.bin tokens 0..40" in result.output


def test_inspect_fails_on_a_corrupt_shard(built, tmp_path):
    workdir, _, _ = built
    copy = tmp_path / "bpe"
    shutil.copytree(workdir / "tokens" / "bpe", copy)
    shard = copy / "train_000000.bin"
    blob = bytearray(shard.read_bytes())
    blob[HEADER_BYTES + 10] ^= 0xFF
    shard.write_bytes(bytes(blob))
    result = runner.invoke(app, ["tokens", "inspect", str(copy)])
    assert result.exit_code == 1
    assert "checksum verification FAILED" in result.output and "sha256 does not match" in result.output

    shard.write_bytes(bytes(blob[: HEADER_BYTES + 7]))
    result = runner.invoke(app, ["tokens", "inspect", str(shard)])
    assert result.exit_code == 1 and "truncated or corrupt" in result.output


def test_inspect_decodes_published_tokenizer_boundaries(built, shared_data, tmp_path):
    """A hand-made shard of gpt2 tokens: the sample shows each token and the end-of-document token."""
    from fineforge.model.shards import shard_entry, write_manifest, write_shard
    from fineforge.model.tokenizer import load_tokenizer

    tok = load_tokenizer("gpt2", shared_data / "tokenizers")
    text = (shared_data / "corpora" / "tinyshakespeare.txt").read_text()[:200]
    ids = np.array(tok.encode(text) + [tok.eot_id])
    sha = write_shard(tmp_path / "train_000000.bin", ids, "uint16")
    write_manifest(tmp_path, tok, "uint16", [shard_entry("train_000000.bin", "train", len(ids), sha)],
                   documents={"train": 1})
    result = runner.invoke(app, ["tokens", "inspect", str(tmp_path), "--vocab-dir", str(shared_data / "tokenizers"),
                                 "--sample-tokens", str(len(ids))])
    assert result.exit_code == 0, result.output
    assert "First Citizen" in result.output and "<|endoftext|>" in result.output and "\\n" in result.output


def test_build_refuses_a_vocabulary_that_does_not_fit_before_work(built, shared_data):
    workdir, _, _ = built
    result = runner.invoke(app, ["tokens", "build", "--workdir", str(workdir), "--name", "cl100k", "--tokenizer",
                                 "cl100k_base", "--vocab-dir", str(shared_data / "tokenizers"), "--dtype", "uint16"])
    assert result.exit_code == 2
    assert "does not fit uint16" in result.output
    assert not (workdir / "tokens" / "cl100k").exists()


def test_build_without_input_names_the_problem(tmp_path):
    result = runner.invoke(app, ["tokens", "build", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "no input" in result.output
    result = runner.invoke(app, ["tokens", "inspect", str(tmp_path)])
    assert result.exit_code == 1 and "no manifest.json" in result.output
