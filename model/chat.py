"""The chat format: conversations in the common `messages` form, rendered to token ids and a loss mask.

A conversation is a list of messages {"role", "content"} with roles system, user, assistant and tool.
Each message becomes one turn, and the turns follow each other directly:

    <|im_start|>role<|im_sep|>content<|im_end|>

The loss mask has one 0/1 value per token: 1 where the token is a training target. The assistant's
content and its `<|im_end|>` count (or the model never learns to stop); its turn header, and every
system, user and tool token, do not.

Tool calls live inside the assistant's text: `<SEARCH_START>query<SEARCH_END>` or
`<CODE_START>code<CODE_END>`, and the tool's output follows the call directly as
`<OUTPUT_START>output<OUTPUT_END>`. In assistant text these six markers become their special tokens;
the output block, markers included, is masked out of the loss (the runtime writes it, not the model).
A `tool` message (a tool result kept as a turn of its own, as some data sets do) is masked entirely.
Everything else is encoded as plain text: a user who types "<|im_end|>" does not produce the token.

    ids, mask = render(Conversation.from_messages(raw_messages), tokenizer)
    prompt = render_prompt(messages, tokenizer)   # ends with an open <|im_start|>assistant<|im_sep|>
    template = ChatTemplate(tokenizer)            # the same, looking special ids up once, for many conversations
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fineforge.model.tokenizer import (
    CODE_END,
    CODE_START,
    IM_END,
    IM_SEP,
    IM_START,
    OUTPUT_END,
    OUTPUT_START,
    SEARCH_END,
    SEARCH_START,
    Tokenizer,
)

SYSTEM, USER, ASSISTANT, TOOL = "system", "user", "assistant", "tool"
ROLES: tuple[str, ...] = (SYSTEM, USER, ASSISTANT, TOOL)
CHAT_TOKENS: tuple[str, ...] = (IM_START, IM_END, IM_SEP)
TOOL_TOKENS: tuple[str, ...] = (SEARCH_START, SEARCH_END, CODE_START, CODE_END, OUTPUT_START, OUTPUT_END)
TOOL_CALLS: dict[str, str] = {SEARCH_START: SEARCH_END, CODE_START: CODE_END}  # call opener -> closer

# Reasons a conversation is rejected; the conversation stage counts drops under these names.
BAD_MESSAGES = "bad_messages"
UNKNOWN_ROLE = "unknown_role"
NO_ASSISTANT_TURN = "no_assistant_turn"
EMPTY_ASSISTANT_TURN = "empty_assistant_turn"
BAD_TOOL_MARKUP = "bad_tool_markup"
MISSING_CHAT_TOKENS = "missing_chat_tokens"  # a tokenizer's or model's problem, not a conversation's

_TOOL_PATTERN = re.compile("(" + "|".join(re.escape(t) for t in TOOL_TOKENS) + ")")


class ChatFormatError(ValueError):
    """A conversation that cannot be rendered; `reason` names the kind of problem (one of the constants above)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Message:
    """One turn: a role and its text."""

    role: str
    content: str


@dataclass(frozen=True)
class Conversation:
    """Validated messages, ready to render."""

    messages: tuple[Message, ...]

    @classmethod
    def from_messages(cls, raw: Any, require_assistant: bool = True) -> Conversation:
        """Validate `messages`-form data: a list of {"role", "content"} with known roles and string contents.

        With `require_assistant` (training data) there must be an assistant turn with some text.
        Raises ChatFormatError whose `reason` says what is wrong.
        """
        if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
            raise ChatFormatError(BAD_MESSAGES, f"messages must be a non-empty list, got {type(raw).__name__}")
        messages = tuple(_message(i, m) for i, m in enumerate(raw))
        if require_assistant:
            assistant = [m for m in messages if m.role == ASSISTANT]
            if not assistant:
                raise ChatFormatError(NO_ASSISTANT_TURN, "the conversation has no assistant turn")
            if not any(m.content.strip() for m in assistant):
                raise ChatFormatError(EMPTY_ASSISTANT_TURN, "every assistant turn is empty")
        for i, m in enumerate(messages):
            if m.role == ASSISTANT:
                tool_segments(m.content, where=f"message {i}")
        return cls(messages)

    def to_messages(self) -> list[dict[str, str]]:
        """The plain `messages` form."""
        return [{"role": m.role, "content": m.content} for m in self.messages]


def _message(index: int, raw: Any) -> Message:
    if not isinstance(raw, Mapping):
        raise ChatFormatError(BAD_MESSAGES, f"message {index} is not an object")
    role, content = raw.get("role"), raw.get("content")
    if role not in ROLES:
        raise ChatFormatError(UNKNOWN_ROLE, f"message {index} has role {role!r}; known roles: {', '.join(ROLES)}")
    if not isinstance(content, str):
        raise ChatFormatError(BAD_MESSAGES, f"message {index} ({role}) has no string content")
    return Message(role, content)


def tool_segments(text: str, where: str = "assistant text") -> list[tuple[str, bool]]:
    """Split assistant text into (piece, is_tool_output) pieces; each tool marker is a piece of its own.

    Calls must be closed before anything else starts, and an output block must follow a call directly.
    """
    segments: list[tuple[str, bool]] = []
    open_marker: str | None = None
    previous = ""
    for piece in (p for p in _TOOL_PATTERN.split(text) if p):
        if piece in TOOL_TOKENS:
            open_marker = _next_open_marker(open_marker, piece, previous, where)
        in_output = open_marker == OUTPUT_START or piece == OUTPUT_END
        segments.append((piece, in_output))
        previous = piece
    if open_marker is not None:
        raise ChatFormatError(BAD_TOOL_MARKUP, f"{where}: {open_marker} is never closed")
    return segments


def _next_open_marker(open_marker: str | None, marker: str, previous: str, where: str) -> str | None:
    """The block open after `marker`; a marker out of place is an error."""
    if open_marker is None and marker in TOOL_CALLS:
        return marker
    if open_marker is None and marker == OUTPUT_START:
        if previous not in TOOL_CALLS.values():
            raise ChatFormatError(BAD_TOOL_MARKUP, f"{where}: {OUTPUT_START} does not follow a tool call directly")
        return marker
    if open_marker is not None and marker == _closer(open_marker):
        return None
    raise ChatFormatError(BAD_TOOL_MARKUP, f"{where}: unexpected {marker} (open block: {open_marker})")


def _closer(opener: str | None) -> str | None:
    return OUTPUT_END if opener == OUTPUT_START else TOOL_CALLS.get(opener or "")


def require_chat_tokens(tokenizer: Tokenizer, model_vocab_size: int | None = None) -> None:
    """Fail with the fix when a tokenizer (or a model's embedding) lacks the chat and tool tokens."""
    missing = [t for t in (*CHAT_TOKENS, *TOOL_TOKENS) if t not in tokenizer.special_tokens]
    if missing:
        raise ChatFormatError(
            MISSING_CHAT_TOKENS,
            f"tokenizer {tokenizer.name} lacks the chat tokens {missing}: use a fineforge tokenizer (bytes, gpt2, "
            "cl100k_base, o200k_base, or one trained with `fineforge tokens train`, which all carry them) "
            "and pretrain with it",
        )
    if model_vocab_size is not None:
        beyond = {t: tokenizer.special_tokens[t] for t in (*CHAT_TOKENS, *TOOL_TOKENS)}
        beyond = {t: i for t, i in beyond.items() if i >= model_vocab_size}
        if beyond:
            raise ChatFormatError(
                MISSING_CHAT_TOKENS,
                f"the model embeds {model_vocab_size} ids but tokenizer {tokenizer.name} puts chat tokens at "
                f"{beyond}: pretrain with the vocabulary padded to cover the whole tokenizer (vocab_size >= "
                f"{tokenizer.vocab_size})",
            )


class ChatTemplate:
    """The chat format for one tokenizer: its special ids and turn headers are looked up once."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        require_chat_tokens(tokenizer)
        self.tokenizer = tokenizer
        self.special = {token: tokenizer.encode_special(token) for token in (*CHAT_TOKENS, *TOOL_TOKENS)}
        self._headers: dict[str, list[int]] = {}

    def header(self, role: str) -> list[int]:
        """`<|im_start|>role<|im_sep|>`."""
        if role not in self._headers:
            self._headers[role] = [self.special[IM_START], *self.tokenizer.encode(role), self.special[IM_SEP]]
        return self._headers[role]

    def _assistant_content(self, text: str) -> tuple[list[int], list[int]]:
        ids: list[int] = []
        mask: list[int] = []
        for piece, is_output in tool_segments(text):
            piece_ids = [self.special[piece]] if piece in self.special else self.tokenizer.encode(piece)
            ids += piece_ids
            mask += [0 if is_output else 1] * len(piece_ids)
        return ids, mask

    def render_message(self, message: Message) -> tuple[list[int], list[int]]:
        """One turn's ids and loss mask (1: a training target)."""
        header, end = self.header(message.role), self.special[IM_END]
        if message.role == ASSISTANT:
            ids, mask = self._assistant_content(message.content)
            return [*header, *ids, end], [0] * len(header) + mask + [1]
        ids = [*header, *self.tokenizer.encode(message.content), end]
        return ids, [0] * len(ids)

    def render(self, conversation: Conversation) -> tuple[list[int], list[int]]:
        """The whole conversation's ids and loss mask, turns back to back."""
        ids: list[int] = []
        mask: list[int] = []
        for message in conversation.messages:
            turn_ids, turn_mask = self.render_message(message)
            ids += turn_ids
            mask += turn_mask
        return ids, mask

    def render_prompt(self, messages: Conversation | Sequence[Mapping[str, str]]) -> list[int]:
        """The prompt for generation: the messages, then an open `<|im_start|>assistant<|im_sep|>`."""
        if not isinstance(messages, Conversation):
            messages = Conversation.from_messages(messages, require_assistant=False)
        return self.render(messages)[0] + self.header(ASSISTANT)


def render(conversation: Conversation, tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """A conversation's ids and loss mask (for many conversations, keep one ChatTemplate)."""
    return ChatTemplate(tokenizer).render(conversation)


def render_prompt(messages: Conversation | Sequence[Mapping[str, str]], tokenizer: Tokenizer) -> list[int]:
    """The prompt for generation: the messages, then an open `<|im_start|>assistant<|im_sep|>`."""
    return ChatTemplate(tokenizer).render_prompt(messages)
