"""Inference: sample from a GPT with a KV cache - different prompts in one batch, streamed, with tools.

    engine = Engine(model, vocab_size=tokenizer.vocab_size)
    # RL: B prompts x G samples, each row with its own budget, stop tokens and seed if wanted
    requests = [Request(prompt) for prompt in prompts for _ in range(G)]
    completions = engine.generate_batch(requests, SamplingConfig(temperature=1.0, seed=0), tools=loop)
    for events in engine.stream_batch(requests, config):   # per step: RowEvent(row, tokens, ...)
        ...
    # one prompt, n samples (the first API, kept): lists of the step's token per sample
    for step in engine.stream(prompt, SamplingConfig(num_samples=3)): ...

Rows of different lengths share one batch through left padding with per-row rotary positions and an
attention mask (`model/ragged_batch.py`); the loop that feeds, samples, stops, runs tools and shifts
the context is `model/decoding.py`; the tool loop is `model/tool_loop.py`. A row ends at one of its stop
tokens (not emitted), at its token budget (sampled and inserted tokens count), or inside a tool call that
never closes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from fineforge.model.decoding import (
    CONTEXT_KEEP,
    LENGTH,
    STOP,
    UNCLOSED_TOOL_CALL,
    BatchDecoder,
    Completion,
    DecodeSettings,
    RowEvent,
    RowState,
    filter_logits,
)
from fineforge.model.gpt import GPT
from fineforge.model.tool_loop import ToolLoop

__all__ = [
    "CONTEXT_KEEP", "LENGTH", "STOP", "UNCLOSED_TOOL_CALL", "Completion", "Engine", "Request", "RowEvent", "Sample",
    "SamplingConfig", "filter_logits", "row_seed",
]

log = logging.getLogger(__name__)

_MASK64 = 2**64 - 1


@dataclass
class SamplingConfig:
    """How to sample. `temperature=0` is greedy decoding; `top_k` / `top_p` of None disable the filter.

    `max_new_tokens` and `stop_tokens` are every row's unless a Request sets its own; `num_samples` is
    for the one-prompt API (`stream` / `generate`); `seed` seeds row r with `row_seed(seed, r)`."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    num_samples: int = 1
    seed: int | None = None
    stop_tokens: tuple[int, ...] = field(default_factory=tuple)
    use_kv_cache: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        self.stop_tokens = tuple(int(t) for t in self.stop_tokens)


@dataclass(frozen=True)
class Request:
    """One row of a batch: a prompt, and its own token budget, stop tokens and seed (None: the config's)."""

    prompt: Sequence[int]
    max_new_tokens: int | None = None
    stop_tokens: Sequence[int] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens is not None and self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")


@dataclass
class Sample:
    """One generated continuation; `stopped` tells whether it ended on a stop token."""

    tokens: list[int]
    stopped: bool


def row_seed(seed: int, row: int) -> int:
    """The seed of row `row` of a batch seeded with `seed` (splitmix64 of both: distinct rows, distinct streams)."""
    z = (seed * 0x9E3779B97F4A7C15 + (row + 1) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1  # torch seeds are signed 64-bit


class Engine:
    """Samples from a model; `vocab_size` (the tokenizer's) keeps padded embedding rows from being sampled."""

    def __init__(self, model: GPT, vocab_size: int | None = None) -> None:
        self.model = model
        self.vocab_size = vocab_size or model.config.vocab_size
        if self.vocab_size > model.config.vocab_size:
            raise ValueError(f"tokenizer vocabulary {self.vocab_size} exceeds the model's {model.config.vocab_size}")

    @property
    def device(self) -> torch.device:
        return self.model.wte.weight.device

    def _check_prompt(self, prompt: Sequence[int]) -> list[int]:
        prompt = [int(t) for t in prompt]
        if not prompt:
            raise ValueError("empty prompt: at least one token is needed to condition on")
        bad = [t for t in prompt if not 0 <= t < self.vocab_size]
        if bad:
            raise ValueError(f"prompt token ids outside the vocabulary of {self.vocab_size}: {bad[:5]}")
        block = self.model.config.block_size
        if len(prompt) > block:
            log.warning("prompt of %d tokens cut to the model's context of %d (its last tokens)", len(prompt), block)
            prompt = prompt[-block:]
        return prompt

    def _row(self, index: int, request: Request, config: SamplingConfig, tools: ToolLoop | None) -> RowState:
        generator = torch.Generator(device=self.device)
        if request.seed is not None:
            generator.manual_seed(request.seed)
        elif config.seed is not None:
            generator.manual_seed(row_seed(config.seed, index))
        else:
            generator.seed()
        budget = config.max_new_tokens if request.max_new_tokens is None else request.max_new_tokens
        stop = config.stop_tokens if request.stop_tokens is None else request.stop_tokens
        watcher = tools.watch() if tools is not None else None
        return RowState(index, self._check_prompt(request.prompt), budget, frozenset(int(t) for t in stop),
                        generator, watcher)

    def _decoder(self, requests: Sequence[Request], config: SamplingConfig, tools: ToolLoop | None) -> BatchDecoder:
        if not requests:
            raise ValueError("no requests to generate for")
        rows = [self._row(i, request, config, tools) for i, request in enumerate(requests)]
        self.model.eval()
        settings = DecodeSettings(config.temperature, config.top_k, config.top_p, config.use_kv_cache)
        return BatchDecoder(self.model, self.vocab_size, rows, settings, tools)

    def stream_batch(
        self, requests: Sequence[Request], config: SamplingConfig, tools: ToolLoop | None = None
    ) -> Iterator[list[RowEvent]]:
        """Yield, step by step, the events of the rows that changed (row r is `requests[r]`). Requests are
        checked before anything runs."""
        return self._decoder(requests, config, tools).run()

    def generate_batch(
        self, requests: Sequence[Request], config: SamplingConfig, tools: ToolLoop | None = None
    ) -> list[Completion]:
        """Run every request to its end; one Completion per request, in order."""
        decoder = self._decoder(requests, config, tools)
        for _ in decoder.run():
            pass
        return [row.completion() for row in decoder.rows]

    def stream(self, prompt: Sequence[int], config: SamplingConfig) -> Iterator[list[int | None]]:
        """One prompt, `num_samples` samples: yield at every step the new token of each sample (None for a
        sample that has ended)."""
        events = self.stream_batch([Request(prompt)] * config.num_samples, config)
        for step_events in events:
            step: list[int | None] = [None] * config.num_samples
            for event in step_events:
                if event.tokens:
                    step[event.row] = event.tokens[0]
            yield step

    def generate(self, prompt: Sequence[int], config: SamplingConfig) -> list[Sample]:
        """One prompt, `num_samples` samples, run to the end."""
        completions = self.generate_batch([Request(prompt)] * config.num_samples, config)
        return [Sample(c.tokens, c.stopped) for c in completions]
