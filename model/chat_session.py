"""A conversation with a chat model: the history as token ids, one streamed reply at a time, tools included.

Each user turn is rendered with the chat template after the history, the model replies in an open
assistant turn until `<|im_end|>` (or its budget), and the reply's tokens exactly as they were sampled
(tool calls and their inserted outputs included) join the history, closed with `<|im_end|>`. A reply that
is stopped early (the caller closes the stream, e.g. on Ctrl-C) joins the history as far as it got.

Which checkpoints are chat models: those whose metadata says `"stage"` is one of CHAT_STAGES (the SFT,
RL and RLHF trainers write it); a pretrained base model has no such marker.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from fineforge.model.chat import ASSISTANT, SYSTEM, USER, ChatTemplate, Message
from fineforge.model.engine import Engine, Request, RowEvent, SamplingConfig, row_seed
from fineforge.model.tokenizer import IM_END
from fineforge.model.tool_loop import ToolLoop

CHAT_STAGES: tuple[str, ...] = ("sft", "rl", "rlhf")  # meta["stage"] of checkpoints trained to chat


def is_chat_checkpoint(meta: dict) -> bool:
    """Whether a checkpoint's metadata marks a model trained on the chat format."""
    return meta.get("stage") in CHAT_STAGES


class ChatSession:
    """History and replies of one conversation. `config.stop_tokens` is replaced by `<|im_end|>`."""

    def __init__(
        self, engine: Engine, template: ChatTemplate, config: SamplingConfig, tools: ToolLoop | None = None,
        system: str | None = None,
    ) -> None:
        self.engine, self.template, self.tools, self.system = engine, template, tools, system
        self.end_id = template.special[IM_END]
        self.config = replace(config, stop_tokens=(self.end_id,))
        self.history: list[int] = []
        self.turns = 0
        self.reset()

    def reset(self) -> None:
        """Forget the conversation (the system message stays)."""
        self.history = self.template.render_message(Message(SYSTEM, self.system))[0] if self.system else []
        self.turns = 0

    def reply(self, text: str) -> Iterator[RowEvent]:
        """Stream the model's reply to a user message; the events of its one row."""
        prompt = self.history + self.template.render_message(Message(USER, text))[0] + self.template.header(ASSISTANT)
        seed = None if self.config.seed is None else row_seed(self.config.seed, self.turns)
        self.turns += 1
        tokens: list[int] = []
        try:
            for events in self.engine.stream_batch([Request(prompt, seed=seed)], self.config, self.tools):
                for event in events:
                    tokens += event.tokens
                    yield event
        finally:  # also when the caller stops the reply: it joins the history as far as it got
            self.history = prompt + tokens + [self.end_id]
