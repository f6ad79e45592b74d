"""Inference: sample continuations of a prompt from a GPT, with or without a KV cache, streaming tokens.

Several samples of one prompt run as one batch: the prompt is encoded once (batch 1) and its cache
copied to every sample. A sample ends at a stop token (not emitted) or after `max_new_tokens`.
When the context is full, it shifts: the oldest tokens are dropped, the newest `CONTEXT_KEEP` of the
context are encoded again (rotary positions restart at 0), and generation goes on from there. Both paths
see the same window at every step, so they produce the same tokens; the cached path pays for one
re-encoding per shift instead of one per token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from fineforge.model.gpt import GPT, KVCache

log = logging.getLogger(__name__)

CONTEXT_KEEP = 0.5  # fraction of the context kept when it is full and shifts


@dataclass
class SamplingConfig:
    """How to sample. `temperature=0` is greedy decoding; `top_k` / `top_p` of None disable the filter."""

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


@dataclass
class Sample:
    """One generated continuation; `stopped` tells whether it ended on a stop token."""

    tokens: list[int]
    stopped: bool


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k tokens and outside the smallest set of probability >= top_p."""
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the tokens ranked above it already reach top_p (the first one always stays)
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator) -> torch.Tensor:
    """Next token ids (B,) from last-position logits (B, V)."""
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits.float() / config.temperature, config.top_k, config.top_p)
    return torch.multinomial(logits.softmax(dim=-1), num_samples=1, generator=generator).squeeze(-1)


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

    def _logits(self, seq: torch.Tensor, start: int, cache: KVCache | None, new: int) -> tuple[torch.Tensor, int]:
        """Last-position logits of seq (B, L) seen from position `start`, whose last `new` tokens the cache has
        not seen yet; returns them with the window's start, moved forward when the context is full."""
        block = self.model.config.block_size
        if seq.shape[1] - start > block:
            start = seq.shape[1] - max(1, int(block * CONTEXT_KEEP))
            if cache is not None:
                cache.reset()
                new = seq.shape[1] - start
        with torch.inference_mode():
            if cache is None:
                logits, _ = self.model(seq[:, start:], last_only=True)
            else:
                logits, _ = self.model(seq[:, -new:], kv_cache=cache, last_only=True)
        return logits[:, -1, : self.vocab_size], start

    def stream(self, prompt: Sequence[int], config: SamplingConfig) -> Iterator[list[int | None]]:
        """Yield, at every step, the new token of each sample (None for a sample that has ended)."""
        prompt = self._check_prompt(prompt)
        n = config.num_samples
        self.model.eval()
        generator = torch.Generator(device=self.device)
        if config.seed is None:
            generator.seed()
        else:
            generator.manual_seed(config.seed)
        seq = torch.tensor([prompt], dtype=torch.long, device=self.device)
        cache = None
        if config.use_kv_cache:
            with torch.inference_mode():
                cache = self.model.new_kv_cache(batch_size=1)
        # the prompt is encoded once (batch 1), then its logits and cache are copied to every sample
        logits, start = self._logits(seq, 0, cache, new=seq.shape[1])
        if cache is not None:
            with torch.inference_mode():
                cache.expand(n)
        logits = logits.expand(n, -1)
        seq = seq.expand(n, -1)
        stop = torch.tensor(config.stop_tokens, dtype=torch.long, device=self.device)
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        for step in range(config.max_new_tokens):
            if step:
                logits, start = self._logits(seq, start, cache, new=1)
            token = sample_next(logits, config, generator)
            ended = done | torch.isin(token, stop)
            yield [None if e else t for e, t in zip(ended.tolist(), token.tolist(), strict=True)]
            done = ended
            if bool(done.all()):
                return
            seq = torch.cat([seq, token[:, None]], dim=1)

    def generate(self, prompt: Sequence[int], config: SamplingConfig) -> list[Sample]:
        """Run `stream` to the end; one Sample per requested sample."""
        samples = [Sample(tokens=[], stopped=False) for _ in range(config.num_samples)]
        for step in self.stream(prompt, config):
            for sample, token in zip(samples, step, strict=True):
                if token is not None:
                    sample.tokens.append(token)
                elif not sample.stopped:
                    sample.stopped = True
        return samples
