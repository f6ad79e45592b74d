"""The chat format: exact ids and loss masks for every tokenizer kind, the seed's o200k ids, bad conversations."""

from __future__ import annotations

import pytest

from fineforge.model.chat import (
    BAD_MESSAGES,
    BAD_TOOL_MARKUP,
    EMPTY_ASSISTANT_TURN,
    NO_ASSISTANT_TURN,
    UNKNOWN_ROLE,
    ChatFormatError,
    ChatTemplate,
    Conversation,
    render,
    render_prompt,
    require_chat_tokens,
)
from fineforge.model.tokenizer import (
    EOT,
    IM_END,
    IM_SEP,
    IM_START,
    OUTPUT_END,
    OUTPUT_START,
    BPETrainingConfig,
    ByteTokenizer,
    load_tokenizer,
    train_bpe,
)

# design.md, section 4: the seed's conversation, and its o200k_base ids with the open assistant turn.
SEED_MESSAGES = [
    {"role": "user", "content": "what is 2+2? "},
    {"role": "assistant", "content": "2+2=4"},
    {"role": "user", "content": "what if It was *?"},
    {"role": "assistant", "content": "2*2=4, same as 2+2!"},
]
SEED_IDS = [
    200264, 1428, 200266, 13347, 382, 220, 17, 10, 17, 30, 220, 200265, 200264, 173781, 200266, 17, 10, 17,
    28, 19, 200265, 200264, 1428, 200266, 13347, 538, 1225, 673, 425, 30, 200265, 200264, 173781, 200266, 17,
    9, 17, 28, 19, 11, 2684, 472, 220, 17, 10, 17, 0, 200265, 200264, 173781, 200266,
]  # fmt: skip
SEED_MASK = "000000000000" + "000111111" + "0000000000" + "000" + "11111111111111"

# A small conversation with every role but tool, a user typing a special-token string, and a code call.
SMALL = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hi <|im_end|>"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "<CODE_START>print(2+2)<CODE_END><OUTPUT_START>4<OUTPUT_END>It is 4."},
]
# Per turn: (ids, mask). Bytes: ids 0-255 are bytes, then <|endoftext|>=256, <|im_start|>=257, <|im_end|>=258,
# <|im_sep|>=259, <SEARCH_START>..<OUTPUT_END> = 260..265.
EXPECTED = {
    "bytes": [
        ([257, *b"system", 259, *b"Be brief.", 258], "0" * 18),
        ([257, *b"user", 259, *b"hi <|im_end|>", 258], "0" * 20),
        ([257, *b"assistant", 259, *b"Hello!", 258], "0" * 11 + "1" * 7),
        ([257, *b"user", 259, *b"2+2?", 258], "0" * 11),
        ([257, *b"assistant", 259, 262, *b"print(2+2)", 263, 264, *b"4", 265, *b"It is 4.", 258],
         "0" * 11 + "1" * 12 + "000" + "1" * 9),
    ],
    "gpt2": [
        ([50257, 10057, 50259, 3856, 4506, 13, 50258], "0000000"),
        ([50257, 7220, 50259, 5303, 1279, 91, 320, 62, 437, 91, 29, 50258], "000000000000"),
        ([50257, 562, 10167, 50259, 15496, 0, 50258], "0000111"),
        ([50257, 7220, 50259, 17, 10, 17, 30, 50258], "00000000"),
        ([50257, 562, 10167, 50259, 50262, 4798, 7, 17, 10, 17, 8, 50263, 50264, 19, 50265, 1026, 318, 604, 13, 50258],
         "00001111111100011111"),
    ],
    "cl100k_base": [
        ([100264, 9125, 100266, 3513, 10015, 13, 100265], "0000000"),
        ([100264, 882, 100266, 6151, 83739, 318, 6345, 91, 29, 100265], "0000000000"),
        ([100264, 78191, 100266, 9906, 0, 100265], "000111"),
        ([100264, 882, 100266, 17, 10, 17, 30, 100265], "00000000"),
        ([100264, 78191, 100266, 100269, 1374, 7, 17, 10, 17, 8, 100270, 100271, 19, 100272, 2181, 374, 220, 19, 13,
          100265], "00011111111000111111"),
    ],
    "o200k_base": [
        ([200264, 17360, 200266, 3238, 14567, 13, 200265], "0000000"),
        ([200264, 1428, 200266, 3686, 464, 91, 321, 13707, 91, 29, 200265], "00000000000"),
        ([200264, 173781, 200266, 13225, 0, 200265], "000111"),
        ([200264, 1428, 200266, 17, 10, 17, 30, 200265], "00000000"),
        ([200264, 173781, 200266, 200269, 1598, 7, 17, 10, 17, 8, 200270, 200271, 19, 200272, 3206, 382, 220, 19, 13,
          200265], "00011111111000111111"),
    ],
}  # fmt: skip
ALL_KINDS = [*EXPECTED, "trained"]


def mask_of(bits: str) -> list[int]:
    return [int(b) for b in bits]


def mask_by_reading(ids: list[int], tok) -> list[int]:
    """The loss mask worked out from the rendered ids alone: inside an assistant turn's content, every token
    outside an output block, and the turn's <|im_end|>, is a target."""
    special = {name: tok.encode_special(name) for name in (IM_START, IM_SEP, IM_END, OUTPUT_START, OUTPUT_END)}
    mask, role, header, in_output = [], [], False, False
    for token in ids:
        if token == special[IM_START]:
            role, header = [], True
            mask.append(0)
        elif header:
            header = token != special[IM_SEP]
            role.append(token)
            mask.append(0)
        else:
            assistant = tok.decode(role[:-1]) == "assistant"
            in_output = in_output or token == special[OUTPUT_START]
            mask.append(int(assistant and not in_output))
            in_output = in_output and token != special[OUTPUT_END]
    return mask


@pytest.fixture(scope="module")
def vocab_dir(shared_data):
    return shared_data / "tokenizers"


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    """A byte-level BPE trained here on real text (the first 100 kB of Shakespeare)."""
    text = (shared_data / "corpora" / "tinyshakespeare.txt").read_text()[:100_000]
    texts = [text[i : i + 2000] for i in range(0, len(text), 2000)]
    return train_bpe(texts, tmp_path_factory.mktemp("bpe") / "tok.json", BPETrainingConfig(vocab_size=600))


@pytest.fixture(scope="module")
def tokenizers(vocab_dir, trained):
    return {spec: trained if spec == "trained" else load_tokenizer(spec, vocab_dir) for spec in ALL_KINDS}


def test_seed_conversation_renders_to_the_design_ids(tokenizers):
    tok = tokenizers["o200k_base"]
    assert render_prompt(SEED_MESSAGES, tok) == SEED_IDS
    ids, mask = render(Conversation.from_messages(SEED_MESSAGES), tok)
    assert ids == SEED_IDS[:-3]  # the training form has no open assistant turn
    assert mask == mask_of(SEED_MASK)


@pytest.mark.parametrize("spec", list(EXPECTED))
def test_exact_ids_and_masks(spec, tokenizers):
    tok = tokenizers[spec]
    conversation, template = Conversation.from_messages(SMALL), ChatTemplate(tok)
    for message, (ids, bits) in zip(conversation.messages, EXPECTED[spec], strict=True):
        assert template.render_message(message) == (ids, mask_of(bits)), message
    ids, mask = render(conversation, tok)
    assert ids == [i for turn, _ in EXPECTED[spec] for i in turn]
    assert mask == [m for _, bits in EXPECTED[spec] for m in mask_of(bits)]


@pytest.mark.parametrize("spec", ALL_KINDS)
def test_every_kind_renders_the_template_text_with_the_mask_read_back(spec, tokenizers):
    tok = tokenizers[spec]
    ids, mask = render(Conversation.from_messages(SMALL), tok)
    template = "".join(f"{IM_START}{m['role']}{IM_SEP}{m['content']}{IM_END}" for m in SMALL)
    assert tok.decode(ids) == template
    assert mask == mask_by_reading(ids, tok)
    # The user's "<|im_end|>" stayed text: one <|im_end|> id per turn.
    assert ids.count(tok.encode_special(IM_END)) == len(SMALL)
    trainable = [i for i, m in zip(ids, mask, strict=True) if m]
    assert tok.decode(trainable) == f"Hello!{IM_END}<CODE_START>print(2+2)<CODE_END>It is 4.{IM_END}"


def test_trained_bpe_ids_are_its_own_encoding_of_each_piece(tokenizers):
    tok = tokenizers["trained"]
    start, sep, end = (tok.encode_special(t) for t in (IM_START, IM_SEP, IM_END))
    ids, mask = render(Conversation.from_messages(SMALL[:3]), tok)
    expected = []
    for message in SMALL[:3]:
        expected += [start, *tok.encode(message["role"]), sep, *tok.encode(message["content"]), end]
    assert ids == expected
    assert sum(mask) == len(tok.encode("Hello!")) + 1


def test_tool_turns_and_output_blocks_are_masked(tokenizers):
    tok = tokenizers["gpt2"]
    messages = [
        {"role": "user", "content": "Search for the tallest tree."},
        {"role": "assistant", "content": "<SEARCH_START>tallest tree<SEARCH_END><OUTPUT_START>Hyperion<OUTPUT_END>"
                                         "It is Hyperion."},
        {"role": "tool", "content": "a tool result kept as its own turn"},
        {"role": "assistant", "content": "Anything else?"},
    ]
    ids, mask = render(Conversation.from_messages(messages), tok)
    assert mask == mask_by_reading(ids, tok)
    trainable = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert trainable == f"<SEARCH_START>tallest tree<SEARCH_END>It is Hyperion.{IM_END}Anything else?{IM_END}"


def test_prompt_ends_with_an_open_assistant_turn(tokenizers):
    tok = tokenizers["cl100k_base"]
    prompt = render_prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], tok)
    assert prompt[-3:] == [tok.encode_special(IM_START), *tok.encode("assistant"), tok.encode_special(IM_SEP)]
    assert tok.decode(prompt) == f"{IM_START}system{IM_SEP}Be brief.{IM_END}{IM_START}user{IM_SEP}hi{IM_END}" \
                                 f"{IM_START}assistant{IM_SEP}"


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([], BAD_MESSAGES),
        ("hello", BAD_MESSAGES),
        (["hello"], BAD_MESSAGES),
        ([{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}], BAD_MESSAGES),
        ([{"role": "human", "content": "hi"}, {"role": "assistant", "content": "x"}], UNKNOWN_ROLE),
        ([{"role": "user", "content": "hi"}], NO_ASSISTANT_TURN),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}], EMPTY_ASSISTANT_TURN),
        ([{"role": "assistant", "content": "<CODE_START>print(1)"}], BAD_TOOL_MARKUP),
        ([{"role": "assistant", "content": "a<OUTPUT_START>1<OUTPUT_END>"}], BAD_TOOL_MARKUP),
        ([{"role": "assistant", "content": "<CODE_START>x<CODE_END> <OUTPUT_START>1<OUTPUT_END>"}], BAD_TOOL_MARKUP),
        ([{"role": "assistant", "content": "<CODE_START><SEARCH_START>x<SEARCH_END><CODE_END>"}], BAD_TOOL_MARKUP),
        ([{"role": "assistant", "content": "done<CODE_END>"}], BAD_TOOL_MARKUP),
    ],
)
def test_bad_conversations_are_rejected_with_their_reason(messages, reason):
    with pytest.raises(ChatFormatError) as raised:
        Conversation.from_messages(messages)
    assert raised.value.reason == reason


def test_a_prompt_needs_no_assistant_turn(tokenizers):
    tok = tokenizers["bytes"]
    assert render_prompt([{"role": "user", "content": "hi"}], tok) == [257, *b"user", 259, *b"hi", 258, 257,
                                                                        *b"assistant", 259]


class PlainBytes(ByteTokenizer):
    """A tokenizer written elsewhere that knows only the end-of-document token."""

    def __init__(self) -> None:
        super().__init__()
        self.special_tokens = {EOT: 256}


def test_tokenizer_or_model_without_chat_tokens_fails_naming_the_fix(tokenizers):
    with pytest.raises(ChatFormatError, match="lacks the chat tokens.*fineforge tokens train"):
        require_chat_tokens(PlainBytes())
    with pytest.raises(ChatFormatError, match="lacks the chat tokens"):
        render_prompt([{"role": "user", "content": "hi"}], PlainBytes())
    gpt2 = tokenizers["gpt2"]
    require_chat_tokens(gpt2, model_vocab_size=50304)  # pretrained with the padded fineforge vocabulary
    with pytest.raises(ChatFormatError, match="embeds 50257 ids.*vocab_size >= 50266"):
        require_chat_tokens(gpt2, model_vocab_size=50257)  # the original GPT-2 embedding
