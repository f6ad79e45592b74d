"""The tool loop: a tool call in sampled text runs as a plain `str -> str` callable while the batch goes on.

Inside the assistant's turn a call is `<SEARCH_START>query<SEARCH_END>` (the `search` tool) or
`<CODE_START>code<CODE_END>` (the `python` tool). When a row samples the closing token, the engine takes
the row out of the batch and the call runs in a thread of its own, so the other rows keep sampling. The
result is tokenized, cut to `max_output_tokens` (with a marker saying so), wrapped in
`<OUTPUT_START>...<OUTPUT_END>` and fed to the row, whose KV cache was kept; then the row samples again.

Whatever a tool does becomes text the model sees, never an exception in the engine: a tool missing from
the registry, one that raises (a crashed sandbox included), one that returns no text, and one that gives
no answer within `timeout_s` (its thread is left behind; it cannot stop the engine from exiting). A call
that never closes ends its row (finish reason `unclosed_tool_call`) once it is longer than
`max_call_tokens`, or at the row's token budget or stop token.

    loop = ToolLoop({"python": calculator}, tokenizer, on_call=MlflowToolSpans())
    completions = engine.generate_batch(requests, sampling, tools=loop)
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from fineforge.model.chat import TOOL_CALLS
from fineforge.model.tokenizer import CODE_START, OUTPUT_END, OUTPUT_START, SEARCH_START, Tokenizer

log = logging.getLogger(__name__)

SEARCH, PYTHON = "search", "python"
TOOL_OF_CALL: dict[str, str] = {SEARCH_START: SEARCH, CODE_START: PYTHON}  # call opener -> tool name
TRUNCATION_MARKER = "\n[output cut to {limit} tokens]"

Tool = Callable[[str], str]


@dataclass(frozen=True)
class ToolCall:
    """One call as it ran: the tool's name, the model's input, the tool's text (or the error text), seconds."""

    name: str
    input: str
    output: str
    seconds: float
    error: bool = False
    truncated: bool = False  # the output was longer than max_output_tokens and the model saw it cut


@dataclass(frozen=True)
class ToolLoopConfig:
    """Token limits of a call's input and output, and how long a tool may take."""

    max_output_tokens: int = 256
    max_call_tokens: int = 256
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("max_output_tokens", "max_call_tokens", "timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ToolLoopConfig.{name} must be > 0, got {getattr(self, name)!r}")
        marker = len(TRUNCATION_MARKER.format(limit=self.max_output_tokens))
        if self.max_output_tokens <= marker:  # a byte tokenizer spends a token per character of the marker
            raise ValueError(f"ToolLoopConfig.max_output_tokens must exceed the {marker} characters of the "
                             f"truncation marker, got {self.max_output_tokens}")


class RunningCall:
    """A tool call running in a daemon thread; `result()` once `ready()` (a late tool gives a timeout error)."""

    def __init__(self, name: str, text: str, tool: Tool | None, available: Sequence[str], timeout_s: float) -> None:
        self.name, self.text = name, text
        self.started = time.monotonic()
        self.deadline = self.started + timeout_s
        self.timeout_s = timeout_s
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        if tool is None:
            known = ", ".join(sorted(available)) or "none"
            self.future.set_result((f"error: there is no {name} tool here (available tools: {known})", True))
        else:
            threading.Thread(target=self._run, args=(tool,), name=f"tool-{name}", daemon=True).start()

    def _run(self, tool: Tool) -> None:
        try:
            output = tool(self.text)
            if not isinstance(output, str):
                raise TypeError(f"the tool returned {type(output).__name__}, not text")
            self.future.set_result((output, False))
        except BaseException as exc:  # whatever a tool does (SystemExit too) is an error text, never a crash
            log.warning("tool %s failed on %r: %s: %s", self.name, self.text[:200], type(exc).__name__, exc)
            self.future.set_result((f"error: the {self.name} tool failed: {type(exc).__name__}: {exc}", True))

    def ready(self) -> bool:
        return self.future.done() or time.monotonic() >= self.deadline

    def result(self) -> tuple[str, bool, float]:
        """(output text, is an error, seconds taken)."""
        if self.future.done():
            output, error = self.future.result()
            return output, error, time.monotonic() - self.started
        log.warning("tool %s gave no answer within %g s on %r", self.name, self.timeout_s, self.text[:200])
        return f"error: the {self.name} tool gave no answer within {self.timeout_s:g} s", True, self.timeout_s


def wait_for_any(calls: Sequence[RunningCall]) -> None:
    """Block until one of the calls is ready (done or past its deadline)."""
    timeout = max(0.0, min(c.deadline for c in calls) - time.monotonic())
    concurrent.futures.wait([c.future for c in calls], timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED)


class CallWatcher:
    """Follows one row's sampled tokens: which call is open, its tokens, and when it closes."""

    def __init__(self, loop: ToolLoop) -> None:
        self.loop = loop
        self.open: str | None = None  # the name of the tool whose call is open
        self.closer: int | None = None
        self.ids: list[int] = []

    @property
    def too_long(self) -> bool:
        return len(self.ids) > self.loop.config.max_call_tokens

    def feed(self, token: int) -> RunningCall | None:
        """Take one sampled token; the started call when it closes one."""
        if self.open is None:
            if token in self.loop.openers:
                self.open, self.closer = self.loop.openers[token]
                self.ids = []
            return None
        if token != self.closer:
            self.ids.append(token)
            return None
        name, self.open = self.open, None
        return self.loop.start(name, self.loop.tokenizer.decode(self.ids))


class ToolLoop:
    """The tools a model may call (a registry of `str -> str` callables by name) and how calls are run."""

    def __init__(
        self,
        tools: Mapping[str, Tool],
        tokenizer: Tokenizer,
        config: ToolLoopConfig | None = None,
        on_call: Callable[[ToolCall], None] | None = None,
    ) -> None:
        unknown = set(tools) - set(TOOL_OF_CALL.values())
        if unknown:
            known = sorted(TOOL_OF_CALL.values())
            raise ValueError(f"no call markup for tools {sorted(unknown)}: the model calls only {known}")
        self.tools = dict(tools)
        self.tokenizer = tokenizer
        self.config = config or ToolLoopConfig()
        self.on_call = on_call
        special = tokenizer.encode_special
        self.openers = {special(o): (TOOL_OF_CALL[o], special(c)) for o, c in TOOL_CALLS.items()}
        self.output_start, self.output_end = special(OUTPUT_START), special(OUTPUT_END)

    def watch(self) -> CallWatcher:
        """A watcher for one row."""
        return CallWatcher(self)

    def start(self, name: str, text: str) -> RunningCall:
        return RunningCall(name, text, self.tools.get(name), list(self.tools), self.config.timeout_s)

    def finish(self, call: RunningCall) -> tuple[ToolCall, list[int]]:
        """The record of a ready call and the tokens the model gets: `<OUTPUT_START>` output `<OUTPUT_END>`."""
        output, error, seconds = call.result()
        ids = self.tokenizer.encode(output)
        limit = self.config.max_output_tokens
        truncated = len(ids) > limit
        if truncated:
            marker = self.tokenizer.encode(TRUNCATION_MARKER.format(limit=limit))
            ids = ids[: limit - len(marker)] + marker
        record = ToolCall(call.name, call.text, output, seconds, error, truncated)
        if self.on_call is not None:
            try:
                self.on_call(record)
            except Exception:  # recording a call must never end a generation
                log.exception("recording tool call %s failed", call.name)
        return record, [self.output_start, *ids, self.output_end]
