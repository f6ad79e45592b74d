"""A tiny chat model that calls tools, trained in seconds, for the engine, chat and benchmark tests.

A `tiny` GPT (bytes tokenizer) learns a handful of conversations rendered with the real chat template and
loss mask, so that greedy decoding of their prompts reproduces the assistant's turn: a python call, a
search call, or a plain answer. The tool output in the training turns is masked out of the loss, as in SFT:
what the model writes after a call is its own, whatever the runtime pasted in.
"""

from __future__ import annotations

from pathlib import Path

from fineforge.model.chat import ChatTemplate
from fineforge.model.checkpoint import save_checkpoint
from fineforge.model.gpt import GPT
from fineforge.model.optim import adamw
from fineforge.model.tokenizer import (
    CODE_END,
    CODE_START,
    OUTPUT_END,
    OUTPUT_START,
    SEARCH_END,
    SEARCH_START,
    Tokenizer,
    load_tokenizer,
)
from testkit.chat_training import train_chat_model


def call(opener: str, closer: str, text: str, output: str) -> str:
    return f"{opener}{text}{closer}{OUTPUT_START}{output}{OUTPUT_END}"


# question -> the assistant's turn; the calls' outputs are what the real tools print
PYTHON_QUESTION, SEARCH_QUESTION, PLAIN_QUESTION, TWO_CALLS_QUESTION, CRASH_QUESTION = (
    "What is 17*3?", "Search for Escopete.", "Who are you?", "What is 6*7 and 2**10?", "Crash the sandbox.",
)
TURNS: dict[str, str] = {
    PYTHON_QUESTION: call(CODE_START, CODE_END, "print(17*3)", "51") + "It is 51.",
    SEARCH_QUESTION: call(SEARCH_START, SEARCH_END, "Escopete", "[1] Escopete - a village") + "See above.",
    PLAIN_QUESTION: "I am a tiny model.",
    TWO_CALLS_QUESTION: call(CODE_START, CODE_END, "print(6*7)", "42") + "and "
    + call(CODE_START, CODE_END, "print(2**10)", "1024") + "done.",
    CRASH_QUESTION: call(CODE_START, CODE_END, "import os; os.abort()", "error: killed by SIGABRT") + "Oops.",
}
MODEL_SHAPE = dict(n_layer=2, n_head=2, n_embd=64)  # smaller than `tiny`: memorising four turns is enough
TRAIN_STEPS = 2000  # at most: training stops once every turn is memorised (700 steps, 13 s on a 2-core machine)
LEARNING_RATE = 1e-2


def conversation(question: str, answer: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": question}]
    return messages + ([{"role": "assistant", "content": answer}] if answer is not None else [])


def train_tool_caller(steps: int = TRAIN_STEPS, seed: int = 0, block_size: int = 512) -> tuple[GPT, Tokenizer]:
    """The trained model (eval mode) and its tokenizer."""
    tokenizer = load_tokenizer("bytes")
    conversations = [conversation(q, a) for q, a in TURNS.items()]
    model = train_chat_model(ChatTemplate(tokenizer), conversations, steps, MODEL_SHAPE, LEARNING_RATE, seed=seed,
                             block_size=block_size, until_memorised=True)
    return model, tokenizer


def save_chat_checkpoint(model: GPT, tokenizer: Tokenizer, run_dir: Path) -> Path:
    """Write the model as the trainer writes checkpoints, marked as an SFT model (metadata "stage": "sft"); the
    tokenizer is recorded by its name, which loads it again ("bytes", a published encoding, a trained BPE's path)."""
    optimizer = adamw(model, weight_decay=0.0, lr=LEARNING_RATE, betas=(0.9, 0.95), device_type="cpu")
    meta = {
        "model": model.config.to_dict(),
        "stage": "sft",
        "tokenizer": {"spec": tokenizer.name, "name": tokenizer.name, "vocab_size": tokenizer.vocab_size},
    }
    return save_checkpoint(Path(run_dir) / "checkpoints", 1, model, optimizer, meta)
