"""The per-document part of the tokenize stage, without Spark: split by id hash, bad text, EOT, counts."""

from __future__ import annotations

import pytest

from fineforge.model.tokenizer import load_tokenizer
from fineforge.tasks.tokens.documents import document_text, tokenize_documents, validation_split


def test_validation_split_is_stable_and_proportional():
    ids = [f"<urn:uuid:{i}>" for i in range(20_000)]
    val = [i for i in ids if validation_split(i, 0.1) == "val"]
    assert 0.09 < len(val) / len(ids) < 0.11
    assert val == [i for i in ids if validation_split(i, 0.1) == "val"]
    assert all(validation_split(i, 0.0) == "train" for i in ids[:100])
    assert all(validation_split(i, 1.0) == "val" for i in ids[:100])


def test_document_text_names_bad_input():
    assert document_text("héllo".encode()) == ("héllo", None)
    assert document_text("café".encode("latin-1")) == (None, "invalid_utf8")
    assert document_text("broken \udc80 surrogate") == (None, "invalid_utf8")
    assert document_text(None) == (None, "empty")
    assert document_text(b"  \n") == (None, "empty")


@pytest.mark.parametrize("spec", ["bytes", "gpt2"])
def test_tokenize_documents_appends_eot_and_counts(spec, shared_data):
    tok = load_tokenizer(spec, shared_data / "tokenizers")
    lines = (shared_data / "corpora" / "tinyshakespeare.txt").read_text().splitlines()[:400]
    texts = ["\n".join(lines[i : i + 20]).encode() for i in range(0, 400, 20)]
    ids = [f"doc-{i}" for i in range(len(texts))]
    arrays, counts = tokenize_documents(tok, [*ids, "e", "u"], [*texts, b" ", b"\xff"], 0.3, "uint16", 200)
    assert counts["documents_in"] == len(texts) + 2
    assert counts["dropped_empty"] == 1 and counts["dropped_invalid_utf8"] == 1
    for split in ("train", "val"):
        expected = [t for i, t in zip(ids, texts, strict=True) if validation_split(i, 0.3) == split]
        assert [tok.decode(a[:-1]).encode() for a in arrays[split]] == expected
        assert all(a[-1] == tok.eot_id and a.dtype == "uint16" for a in arrays[split])
        assert counts[f"tokens_{split}"] == sum(a.size for a in arrays[split])
    assert counts["documents_longer_than_shard"] == sum(a.size > 200 for s in arrays.values() for a in s) > 0
