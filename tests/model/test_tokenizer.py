"""The tokenizer kinds on real text: the seed's examples exactly, round trips, special tokens, bad specs."""

from __future__ import annotations

import json

import pytest

from fineforge.model.tokenizer import (
    EOT,
    IM_END,
    IM_SEP,
    IM_START,
    SPECIAL_TOKENS,
    BPETrainingConfig,
    TokenizerError,
    load_tokenizer,
    train_bpe,
)

PUBLISHED = ["gpt2", "cl100k_base", "o200k_base"]

# design.md, section 4: the conversation and its o200k_base ids.
CHAT_TURNS = [
    ("user", "what is 2+2? "),
    ("assistant", "2+2=4"),
    ("user", "what if It was *?"),
    ("assistant", "2*2=4, same as 2+2!"),
]
CHAT_IDS = [
    200264, 1428, 200266, 13347, 382, 220, 17, 10, 17, 30, 220, 200265, 200264, 173781, 200266, 17, 10, 17,
    28, 19, 200265, 200264, 1428, 200266, 13347, 538, 1225, 673, 425, 30, 200265, 200264, 173781, 200266, 17,
    9, 17, 28, 19, 11, 2684, 472, 220, 17, 10, 17, 0, 200265, 200264, 173781, 200266,
]  # fmt: skip


@pytest.fixture(scope="module")
def vocab_dir(shared_data):
    return shared_data / "tokenizers"


@pytest.fixture(scope="module")
def real_texts(shared_data) -> list[str]:
    shakespeare = (shared_data / "corpora" / "tinyshakespeare.txt").read_text()
    evaldata = json.loads((shared_data / "html" / "trafilatura-evaldata.json").read_text())
    snippets = [" ".join(v.get("with", [])) for v in list(evaldata.values())[:200]]
    return [shakespeare[:4000], *[s for s in snippets if s]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_texts, shared_data):
    shakespeare = (shared_data / "corpora" / "tinyshakespeare.txt").read_text()
    texts = [shakespeare[i : i + 2000] for i in range(0, 200_000, 2000)] + real_texts
    return train_bpe(texts, tmp_path_factory.mktemp("bpe") / "tok.json", BPETrainingConfig(vocab_size=1024))


def test_cl100k_ubiquitous(vocab_dir):
    tok = load_tokenizer("cl100k_base", vocab_dir)
    assert tok.encode("Ubiquitous") == [50668, 5118, 50855]
    assert [tok.decode([i]) for i in tok.encode("Ubiquitous")] == ["Ub", "iqu", "itous"]


def test_o200k_chat_rendering_matches_design(vocab_dir):
    tok = load_tokenizer("o200k_base", vocab_dir)
    assert (tok.encode_special(IM_START), tok.encode_special(IM_END), tok.encode_special(IM_SEP)) == (
        200264,
        200265,
        200266,
    )
    ids = []
    for role, content in CHAT_TURNS:
        ids += [tok.encode_special(IM_START), *tok.encode(role), tok.encode_special(IM_SEP), *tok.encode(content)]
        ids.append(tok.encode_special(IM_END))
    ids += [tok.encode_special(IM_START), *tok.encode("assistant"), tok.encode_special(IM_SEP)]
    assert ids == CHAT_IDS
    text = "".join(f"{IM_START}{r}{IM_SEP}{c}{IM_END}" for r, c in CHAT_TURNS) + f"{IM_START}assistant{IM_SEP}"
    assert tok.encode_with_special(text) == CHAT_IDS
    assert tok.decode(CHAT_IDS) == text


@pytest.mark.parametrize("spec", ["bytes", *PUBLISHED, "trained"])
def test_every_kind_round_trips_and_carries_special_tokens(spec, vocab_dir, real_texts, trained):
    tok = trained if spec == "trained" else load_tokenizer(spec, vocab_dir)
    assert set(tok.special_tokens) == set(SPECIAL_TOKENS)
    ids = sorted(tok.special_tokens.values())
    assert len(set(ids)) == len(SPECIAL_TOKENS) and ids[-1] < tok.vocab_size
    assert tok.eot_id == tok.special_tokens[EOT]
    batch = tok.encode_batch(real_texts)
    assert batch == [tok.encode(t) for t in real_texts]
    for text, encoded in zip(real_texts, batch, strict=True):
        assert tok.decode(encoded) == text
        assert max(encoded) < tok.vocab_size
    # Special-token strings in user text stay text, in the shards' array path too.
    user = f"ignore this {IM_END}{EOT} please"
    arrays = tok.encode_batch_arrays([*real_texts, user])
    assert [a.tolist() for a in arrays] == [*batch, tok.encode(user)]
    encoded = tok.encode(user)
    assert not set(encoded) & set(tok.special_tokens.values())
    assert tok.decode(encoded) == user
    for name, token_id in tok.special_tokens.items():
        assert tok.decode([token_id]) == name


def test_bytes_kind_is_exact_on_any_text():
    tok = load_tokenizer("bytes")
    text = "naïve café — 東京 🙂 \x00\n\t"
    assert tok.encode(text) == list(text.encode("utf-8"))
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == 256 + len(SPECIAL_TOKENS)
    assert tok.eot_id == 256


def test_trained_bpe_compresses_and_reloads(trained, real_texts):
    assert trained.vocab_size == 1024
    text = real_texts[0]
    assert len(trained.encode(text)) < len(text.encode("utf-8")) / 2
    again = load_tokenizer(trained.name)
    assert again.encode(text) == trained.encode(text)
    assert again.special_tokens == trained.special_tokens


def test_env_var_names_default_vocab_dir(vocab_dir, monkeypatch):
    monkeypatch.setenv("FINEFORGE_TOKENIZER_DIR", str(vocab_dir))
    assert load_tokenizer("gpt2").encode("Hello world") == [15496, 995]


def test_bad_specs_get_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("FINEFORGE_TOKENIZER_DIR", raising=False)
    with pytest.raises(TokenizerError, match="unknown tokenizer"):
        load_tokenizer("gpt5")
    with pytest.raises(TokenizerError, match="vocab_dir"):
        load_tokenizer("o200k_base")
    with pytest.raises(TokenizerError, match="missing"):
        load_tokenizer("cl100k_base", tmp_path)
    (tmp_path / "cl100k_base.tiktoken").write_bytes(b"dGVzdA== 0\n")
    with pytest.raises(TokenizerError, match="is not the published"):
        load_tokenizer("cl100k_base", tmp_path)
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(TokenizerError, match="not a HuggingFace tokenizer"):
        load_tokenizer(str(bad))
    with pytest.raises(TokenizerError, match="not a special token"):
        load_tokenizer("bytes").encode_special("<|nope|>")
    with pytest.raises(TokenizerError, match="below"):
        train_bpe(["abc"], tmp_path / "t.json", BPETrainingConfig(vocab_size=100))
