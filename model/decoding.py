"""The decoding loop behind `Engine.stream_batch`: rows that sample, stop, call tools and shift, in one batch.

Each step feeds every row of the batch the tokens it has not fed yet (a sampled token, or a tool's output
block: T = the fewest any row has, so all rows feed T and no padding appears mid-row), then rows that have
fed everything sample their next token. A row whose tool call closes leaves the batch with its KV cache
and comes back with the output once the tool answered; a finished row leaves for good. Rows start by
being encoded together (left-padded; identical prompts once, e.g. the G samples of one RL prompt).

Each row samples from its own seeded generator, so its tokens depend only on its own prompt, seed and
tool outputs, never on which rows share its batch or when a tool answered.

When a row's window would pass the model's context it shifts: the newest `CONTEXT_KEEP` of the context
is kept and encoded again (rotary positions restart at 0). Without the KV cache every step encodes every
window; both paths see the same windows, so they sample the same tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from fineforge.model.gpt import GPT
from fineforge.model.ragged_batch import RaggedBatch, encode_windows
from fineforge.model.tool_loop import CallWatcher, RunningCall, ToolCall, ToolLoop, wait_for_any

CONTEXT_KEEP = 0.5  # fraction of the context kept when it is full and shifts
STOP, LENGTH, UNCLOSED_TOOL_CALL = "stop", "length", "unclosed_tool_call"  # why a row ended


@dataclass(frozen=True)
class RowEvent:
    """What happened to one row in one step: tokens it sampled, or a tool's output block the runtime
    inserted (`inserted`, with the `tool_call`); `finish_reason` once it has ended (a stop token is not
    among the tokens)."""

    row: int
    tokens: tuple[int, ...] = ()
    inserted: bool = False
    tool_call: ToolCall | None = None
    finish_reason: str | None = None


@dataclass
class Completion:
    """One row's result. `loss_mask` is 1 for tokens the model sampled, 0 for tool output the runtime inserted."""

    tokens: list[int]
    loss_mask: list[int]
    finish_reason: str
    tool_calls: list[ToolCall] = field(default_factory=list)

    @property
    def stopped(self) -> bool:
        """Ended on a stop token (not at the budget, not inside an unclosed tool call)."""
        return self.finish_reason == STOP


class RowState:
    """One row: its tokens, the model's window over them, its budget, its sampler and its tool call."""

    def __init__(
        self, index: int, prompt: list[int], budget: int, stop: frozenset[int], generator: torch.Generator,
        watcher: CallWatcher | None,
    ) -> None:
        self.index, self.seq, self.budget, self.stop = index, prompt, budget, stop
        self.generator, self.watcher = generator, watcher
        self.win = 0  # where the model's window starts in seq
        self.cached = 0  # tokens of the window the model has been fed (its KV cache holds them)
        self.tokens: list[int] = []
        self.loss_mask: list[int] = []
        self.tool_calls: list[ToolCall] = []
        self.logits: torch.Tensor | None = None  # set when the row has fed everything and may sample
        self.call: RunningCall | None = None
        self.parked: RaggedBatch | None = None  # its KV cache while its tool runs
        self.finish_reason: str | None = None

    @property
    def window(self) -> list[int]:
        return self.seq[self.win :]

    @property
    def pending(self) -> list[int]:
        """Tokens appended but not fed to the model yet."""
        return self.seq[self.win + self.cached :]

    def completion(self) -> Completion:
        return Completion(self.tokens, self.loss_mask, self.finish_reason or LENGTH, self.tool_calls)

    def shift_if_full(self, block: int) -> bool:
        """Move the window to the newest `CONTEXT_KEEP` of the context when it no longer fits; True if moved."""
        if len(self.seq) - self.win <= block:
            return False
        self.win, self.cached = len(self.seq) - max(1, int(block * CONTEXT_KEEP)), 0
        return True

    def end(self, reason: str, tokens: tuple[int, ...] = ()) -> RowEvent:
        self.finish_reason = reason
        return RowEvent(self.index, tokens, finish_reason=reason)

    def _append(self, tokens: list[int], sampled: bool) -> None:
        self.seq += tokens
        self.tokens += tokens
        self.loss_mask += [int(sampled)] * len(tokens)
        self.budget -= len(tokens)

    def _inside_call(self, token: int) -> bool:
        """Whether a call is open and `token` does not close it."""
        return self.watcher is not None and self.watcher.open is not None and token != self.watcher.closer

    def accept(self, token: int) -> RowEvent:
        """Take a sampled token: end at a stop token or the budget, or start a tool call it closes."""
        if token in self.stop:
            return self.end(UNCLOSED_TOOL_CALL if self._inside_call(token) else STOP)
        unclosed = self._inside_call(token)
        self._append([token], sampled=True)
        if self.budget <= 0:
            return self.end(UNCLOSED_TOOL_CALL if unclosed else LENGTH, (token,))
        if self.watcher is not None:
            self.call = self.watcher.feed(token)
            if self.watcher.too_long:
                return self.end(UNCLOSED_TOOL_CALL, (token,))
        return RowEvent(self.index, (token,))

    def accept_output(self, tools: ToolLoop) -> RowEvent:
        """Append the output block of the row's finished call (cut at the budget, which then ends the row)."""
        record, ids = tools.finish(self.call)
        self.call = None
        self.tool_calls.append(record)
        ids = ids[: self.budget]
        self._append(ids, sampled=False)
        if self.budget <= 0:
            self.finish_reason = LENGTH
        return RowEvent(self.index, tuple(ids), inserted=True, tool_call=record, finish_reason=self.finish_reason)


def draw(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
         generators: Sequence[torch.Generator]) -> list[int]:
    """One token per row of `logits` (R, V), row r drawn with `generators[r]`; temperature 0 is greedy.

    Inverse-CDF sampling: one uniform number per row from its own generator, looked up in the rows'
    cumulative probabilities all at once (per-row `torch.multinomial` calls cost a fifth of a 16-row step
    with a 50k vocabulary on the CPU). A token of probability 0 is never drawn."""
    if temperature == 0:
        return logits.argmax(dim=-1).tolist()
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(dim=-1)
    cdf = probs.double().cumsum(dim=-1)
    uniform = torch.cat([torch.rand(1, generator=g, dtype=torch.float64, device=g.device) for g in generators])
    picks = torch.searchsorted(cdf, (uniform * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    last_possible = probs.size(-1) - 1 - (probs > 0).flip(-1).int().argmax(dim=-1)
    return torch.minimum(picks, last_possible).tolist()


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


@dataclass(frozen=True)
class DecodeSettings:
    """What the loop needs of the sampling config."""

    temperature: float
    top_k: int | None
    top_p: float | None
    use_kv_cache: bool


class BatchDecoder:
    """Runs rows to their end; `run()` yields, step by step, the events of the rows that changed."""

    def __init__(self, model: GPT, vocab_size: int, rows: list[RowState], settings: DecodeSettings,
                 tools: ToolLoop | None) -> None:
        self.model, self.vocab_size, self.rows, self.settings, self.tools = model, vocab_size, rows, settings, tools
        self.block = model.config.block_size
        self.batch: list[RowState] = []  # rows in the model's batch, in the KV cache's row order
        self.kv: RaggedBatch | None = None
        self.fresh: list[RowState] = []  # rows to encode from their window (new, or shifted)
        self.waiting: list[RowState] = []  # rows whose tool call runs

    def run(self) -> Iterator[list[RowEvent]]:
        ended = [row.end(LENGTH) for row in self.rows if row.budget <= 0]
        if ended:
            yield ended
        self.fresh = [row for row in self.rows if row.finish_reason is None]
        while self.batch or self.fresh or self.waiting:
            if self.batch or self.fresh:
                self._advance()
            elif self.waiting:
                wait_for_any([row.call for row in self.waiting])
            events = self._sample() + self._collect_tool_outputs()
            if events:
                yield events

    def _advance(self) -> None:
        """Feed every row in the batch its pending tokens and encode the fresh rows; rows that have fed
        everything get the logits they sample from."""
        shifted = [row for row in self.batch if row.shift_if_full(self.block)]
        if shifted:
            self._keep([row for row in self.batch if row not in shifted])
            self.fresh += shifted
        if not self.settings.use_kv_cache:  # every window is encoded again
            self.fresh, self.batch = self.batch + self.fresh, []
            for row in self.fresh:
                row.cached = 0
        if self.batch:
            new = min(len(row.pending) for row in self.batch)
            device = self.kv.lengths.device
            tokens = torch.tensor([row.pending[:new] for row in self.batch], dtype=torch.long, device=device)
            logits = self.kv.extend(tokens)
            for row, row_logits in zip(self.batch, logits, strict=True):
                row.cached += new
                row.logits = None if row.pending else row_logits
        if self.fresh:
            windows = [row.window for row in self.fresh]
            kv, logits = encode_windows(self.model, windows, use_cache=self.settings.use_kv_cache)
            for row, row_logits in zip(self.fresh, logits, strict=True):
                row.cached, row.logits = len(row.window), row_logits
            self._join(self.fresh, kv)
            self.fresh = []

    def _join(self, rows: list[RowState], kv: RaggedBatch | None) -> None:
        """Append rows, and their cache, to the batch."""
        self.batch += rows
        if kv is not None:
            self.kv = kv if self.kv is None else RaggedBatch.concat([self.kv, kv])

    def _keep(self, rows: list[RowState]) -> None:
        """Keep only these rows of the batch (and of its cache)."""
        if self.kv is not None:
            index = [self.batch.index(row) for row in rows]
            self.kv = self.kv.select(index) if index else None
        self.batch = rows

    def _sample(self) -> list[RowEvent]:
        ready = [row for row in self.batch if row.logits is not None]
        if not ready:
            return []
        s = self.settings
        logits = torch.stack([row.logits for row in ready])[:, : self.vocab_size]
        tokens = draw(logits, s.temperature, s.top_k, s.top_p, [row.generator for row in ready])
        events = []
        for row, token in zip(ready, tokens, strict=True):
            row.logits = None
            events.append(row.accept(token))
        calling = [row for row in ready if row.call is not None]
        for row in calling:  # out of the batch with its cache until the tool answers
            row.parked = self.kv.select([self.batch.index(row)]) if self.kv is not None else None
        self.waiting += calling
        if any(row.finish_reason is not None or row.call is not None for row in ready):
            self._keep([row for row in self.batch if row.finish_reason is None and row.call is None])
        return events

    def _collect_tool_outputs(self) -> list[RowEvent]:
        done = [row for row in self.waiting if row.call.ready()]
        events = [row.accept_output(self.tools) for row in done]
        self.waiting = [row for row in self.waiting if row not in done]
        back = [row for row in done if row.finish_reason is None]
        parts = [row.parked for row in back if row.parked is not None]
        for row in back:
            row.parked = None
        self._join(back, RaggedBatch.concat(parts) if parts else None)
        return events
