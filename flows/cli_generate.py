"""`fineforge generate`: sample continuations of a prompt from a checkpoint, streamed to stdout."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import typer

from fineforge.flows.cli_output import fail

REPLACEMENT_CHAR = "\ufffd"  # what decoding shows for an incomplete UTF-8 sequence


class TextStream:
    """Text pieces of tokens as they arrive: a piece is held back while it ends inside a multi-byte character.

    Once a piece is out, the tokens behind it are dropped (byte-level tokenizers decode a sequence as the
    concatenation of its parts), so a long reply costs no more per token than a short one."""

    def __init__(self, decode: Callable[[list[int]], str], context: Sequence[int] = ()) -> None:
        self.decode = decode
        self.ids = list(context)
        self.shown = len(decode(self.ids)) if self.ids else 0

    def feed(self, token: int) -> str:
        """The new text once `token` is in ("" while a character is incomplete)."""
        self.ids.append(token)
        text = self.decode(self.ids)
        if text.endswith(REPLACEMENT_CHAR):
            return ""
        piece = text[self.shown :]
        self.ids, self.shown = [], 0
        return piece

    def flush(self) -> str:
        """Whatever is held back (an incomplete character shows as the replacement character)."""
        text = self.decode(self.ids)
        piece, self.shown = text[self.shown :], len(text)
        return piece


def stream_text(decode, prompt: Sequence[int], tokens: Iterable[int]) -> Iterator[str]:
    """Text pieces as tokens arrive: a piece is held back while it ends inside a multi-byte character."""
    stream = TextStream(decode, prompt)
    for token in tokens:
        piece = stream.feed(token)
        if piece:
            yield piece
    rest = stream.flush()
    if rest:
        yield rest


def load_checkpoint(checkpoint: Path, device: str, tokenizer_dir: Path | None) -> tuple[Any, dict, Any]:
    """The model (eval mode), metadata and tokenizer of a checkpoint; a clear error line when one is missing."""
    from fineforge.model.checkpoint import CheckpointError, load_model
    from fineforge.model.tokenizer import TokenizerError, load_tokenizer

    try:
        model, meta = load_model(checkpoint, device=device)
    except (CheckpointError, OSError) as e:
        fail(str(e))
    spec = (meta.get("tokenizer") or {}).get("spec")
    if not spec:
        fail(f"{checkpoint}: the checkpoint's metadata names no tokenizer")
    try:
        tokenizer = load_tokenizer(spec, tokenizer_dir)
    except TokenizerError as e:
        fail(str(e))
    return model, meta, tokenizer


def generate(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A checkpoint folder, or a run folder "
                                    "(its newest checkpoint is used)."),
    prompt: str = typer.Option("", "--prompt", "-p", help="Text to continue; empty starts a new document."),
    max_new_tokens: int = typer.Option(256, help="Tokens to generate per sample."),
    temperature: float = typer.Option(0.8, help="Softmax temperature; 0 is greedy decoding."),
    top_k: int = typer.Option(None, help="Sample only from the k most likely tokens."),
    top_p: float = typer.Option(None, help="Sample only from the smallest set of tokens of probability >= p."),
    num_samples: int = typer.Option(1, help="Continuations of the prompt, generated as one batch."),
    seed: int = typer.Option(None, help="Seed of the sampler (the same seed gives the same text)."),
    kv_cache: bool = typer.Option(True, "--kv-cache/--no-kv-cache", help="Reuse the keys and values of earlier "
                                  "positions (faster, same tokens)."),
    stop_at_eot: bool = typer.Option(True, "--stop-at-eot/--no-stop-at-eot", help="End a sample at the "
                                     "end-of-document token."),
    device: str = typer.Option("cpu", help="Torch device: cpu, cuda, cuda:1, ..."),
    tokenizer_dir: Path = typer.Option(None, help="Vocabulary files of a published encoding (default "
                                       "$FINEFORGE_TOKENIZER_DIR)."),
) -> None:
    """Sample continuations from a checkpoint; the first sample streams as it is generated."""
    from fineforge.model.engine import Engine, SamplingConfig

    try:
        sampling = SamplingConfig(
            max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
            num_samples=num_samples, seed=seed, use_kv_cache=kv_cache,
        )
    except ValueError as e:
        fail(str(e))
    model, _, tokenizer = load_checkpoint(checkpoint, device, tokenizer_dir)
    if stop_at_eot:
        sampling.stop_tokens = (tokenizer.eot_id,)
    prompt_ids = tokenizer.encode(prompt) or [tokenizer.eot_id]
    engine = Engine(model, vocab_size=tokenizer.vocab_size)

    tokens: list[list[int]] = [[] for _ in range(num_samples)]

    def first_sample() -> Iterator[int]:
        for step in engine.stream(prompt_ids, sampling):
            for row, token in zip(tokens, step, strict=True):
                if token is not None:
                    row.append(token)
            if step[0] is not None:
                yield step[0]

    for i in range(num_samples):
        if num_samples > 1:
            sys.stdout.write(f"--- sample {i + 1} ---\n")
        sys.stdout.write(prompt)
        # the first sample streams while the batch runs; the others are complete once it has finished
        pieces = stream_text(tokenizer.decode, prompt_ids, first_sample() if i == 0 else tokens[i])
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    sys.stdout.flush()
