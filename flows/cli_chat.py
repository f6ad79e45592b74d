"""`fineforge chat`: talk to a chat checkpoint in the terminal, with the python and search tools.

Replies stream as they are sampled and end at `<|im_end|>`; a tool call and the output the runtime pasted
in are shown apart from the model's text. In the interactive session `/reset` forgets the conversation,
`/exit` or Ctrl-D quits, and Ctrl-C stops the reply (not the session). `--prompt` asks one question and
exits. A base (pretrained only) checkpoint is refused unless `--raw`: it continues documents, it has not
learnt to answer in turns.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from fineforge.flows.cli_generate import TextStream, load_checkpoint
from fineforge.flows.cli_output import fail
from fineforge.model.tool_loop import PYTHON, SEARCH, ToolLoop

if TYPE_CHECKING:
    from fineforge.model.chat_session import ChatSession
    from fineforge.model.engine import RowEvent
    from fineforge.model.tokenizer import Tokenizer

PROMPT = "you> "
TOOL_NAMES = (PYTHON, SEARCH)
NO_TOOLS = "none"
COMMANDS = "/reset clears the history, /exit or Ctrl-D quits, Ctrl-C stops a reply"
CALL_STYLE = {"fg": "cyan"}
OUTPUT_STYLE = {"fg": "yellow"}
NOTE_STYLE = {"dim": True}


def say(text: str, style: dict | None = None) -> None:
    """Write text as it is (styled on a terminal; typer drops the styles elsewhere) and flush."""
    typer.echo(typer.style(text, **style) if style and text else text, nl=False)


def make_tool(name: str, workdir: Path) -> Callable[[str], str]:
    """The real tool behind a name: the sandboxed Python runner, or the search index of the work dir."""
    if name == PYTHON:
        from fineforge.model.tools.sandbox import PythonSandbox

        return PythonSandbox()
    from fineforge.tasks.search.query import CorpusSearch

    return CorpusSearch(workdir)


def chat_tools(requested: str | None, workdir: Path) -> tuple[dict, list[str]]:
    """The tools by name, and a note for each default tool that is not available here.

    With `requested` (comma-separated names, or "none") every named tool must be available."""
    from fineforge.model.tools.sandbox import SandboxUnavailable
    from fineforge.tasks.search.index import SearchError

    names = TOOL_NAMES if requested is None else [n.strip() for n in requested.split(",") if n.strip()]
    if requested is not None and names == [NO_TOOLS]:
        return {}, []
    unknown = sorted(set(names) - set(TOOL_NAMES))
    if unknown:
        fail(f"--tools: unknown tool {', '.join(unknown)} (known: {', '.join(TOOL_NAMES)}, or {NO_TOOLS})")
    tools, notes = {}, []
    for name in names:
        try:
            tools[name] = make_tool(name, workdir)
        except (SandboxUnavailable, SearchError) as e:
            if requested is not None:
                fail(f"the {name} tool is not available: {e}")
            notes.append(f"{name} tool off: {e}")
    return tools, notes


class ReplyPrinter:
    """Writes one reply's events: the model's text as it comes, tool calls and outputs set apart."""

    def __init__(self, tokenizer: Tokenizer, tools: ToolLoop) -> None:
        self.tokenizer = tokenizer
        self.openers = {opener: name for opener, (name, _) in tools.openers.items()}
        self.closers = {closer for _, closer in tools.openers.values()}
        self.markers = {tools.output_start, tools.output_end}
        self.text = TextStream(tokenizer.decode)
        self.in_call = False
        self.line_start = True  # nothing written yet on the current line

    def _write(self, text: str, style: dict | None = None) -> None:
        if text:
            say(text, style)
            self.line_start = text.endswith("\n")

    def _new_line(self) -> None:
        if not self.line_start:
            self._write("\n")

    def show(self, event: RowEvent) -> None:
        if event.inserted:
            self._new_line()
            inner = [t for t in event.tokens if t not in self.markers]
            self._write(f"[output] {self.tokenizer.decode(inner)}\n", OUTPUT_STYLE)
            return
        for token in event.tokens:
            if not self.in_call and token in self.openers:
                self._switch(in_call=True)
                self._write(f"[{self.openers[token]}] ", CALL_STYLE)
            elif self.in_call and token in self.closers:
                self._switch(in_call=False)
            else:
                self._write(self.text.feed(token), CALL_STYLE if self.in_call else None)

    def _switch(self, in_call: bool) -> None:
        """End the current piece of text on its own line and start another: a call, or the model's text."""
        self._write(self.text.flush(), CALL_STYLE if self.in_call else None)
        self._new_line()
        self.text = TextStream(self.tokenizer.decode)
        self.in_call = in_call

    def finish(self, reason: str | None) -> None:
        """End the reply; say why when it did not end at <|im_end|> (None: it was stopped)."""
        self._write(self.text.flush(), CALL_STYLE if self.in_call else None)
        self._new_line()
        notes = {None: "[stopped]", "length": "[cut at the token budget]", "unclosed_tool_call":
                 "[a tool call never closed]"}
        if reason in notes:
            self._write(notes[reason] + "\n", NOTE_STYLE)


def run_reply(session: ChatSession, tokenizer: Tokenizer, text: str) -> None:
    """Stream one reply; Ctrl-C stops it, and what it had said stays in the history."""
    printer = ReplyPrinter(tokenizer, session.tools)
    events = session.reply(text)
    reason = None
    try:
        for event in events:
            printer.show(event)
            reason = event.finish_reason or reason
    except KeyboardInterrupt:
        events.close()
        reason = None
    printer.finish(reason)


def interactive(session: ChatSession, tokenizer: Tokenizer, banner: str) -> None:
    """Read messages until /exit or Ctrl-D; `/reset` starts the conversation again. Ctrl-C never quits."""
    import readline  # noqa: F401 - line editing and history for input()

    say(banner + "\n", NOTE_STYLE)
    while True:
        try:
            if not handle(session, tokenizer, input(PROMPT).strip()):
                return
        except EOFError:
            say("\n")
            return
        except KeyboardInterrupt:  # at the prompt, or between a reply and the next prompt
            say("\n(Ctrl-D or /exit quits)\n", NOTE_STYLE)


def handle(session: ChatSession, tokenizer: Tokenizer, line: str) -> bool:
    """Act on one line: a command or a message; False to quit."""
    if line in ("/exit", "/quit"):
        return False
    if line == "/reset":
        session.reset()
        say("(history cleared)\n", NOTE_STYLE)
    elif line.startswith("/"):
        say(f"unknown command {line}: {COMMANDS}\n", NOTE_STYLE)
    elif line:
        run_reply(session, tokenizer, line)
    return True


def chat(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A chat (SFT/RL/RLHF) checkpoint folder, or "
                                    "a run folder (its newest checkpoint is used)."),
    prompt: str = typer.Option(None, "--prompt", "-p", help="Ask this one question, print the reply and exit."),
    system: str = typer.Option(None, "--system", "-s", help="A system message that opens the conversation."),
    temperature: float = typer.Option(0.7, help="Softmax temperature; 0 is greedy decoding."),
    top_k: int = typer.Option(None, help="Sample only from the k most likely tokens."),
    top_p: float = typer.Option(0.95, help="Sample only from the smallest set of tokens of probability >= p."),
    max_new_tokens: int = typer.Option(512, help="Token budget of a reply (tool outputs included)."),
    seed: int = typer.Option(None, help="Seed of the sampler (the same seed gives the same conversation)."),
    tools: str = typer.Option(None, "--tools", help="Comma-separated tools: python, search (default: each one "
                              "available here), or none."),
    workdir: Path = typer.Option(Path("work"), "--workdir", "-w", help="Work dir whose search index the search "
                                 "tool reads."),
    raw: bool = typer.Option(False, "--raw", help="Chat with a base checkpoint anyway."),
    device: str = typer.Option("cpu", help="Torch device: cpu, cuda, cuda:1, ..."),
    tokenizer_dir: Path = typer.Option(None, help="Vocabulary files of a published encoding (default "
                                       "$FINEFORGE_TOKENIZER_DIR)."),
) -> None:
    """Chat with a checkpoint in the terminal; tools on by default."""
    from fineforge.model.chat import ChatFormatError, ChatTemplate, require_chat_tokens
    from fineforge.model.chat_session import CHAT_STAGES, ChatSession, is_chat_checkpoint
    from fineforge.model.engine import Engine, SamplingConfig

    try:
        sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                  seed=seed)
    except ValueError as e:
        fail(str(e))
    registry, notes = chat_tools(tools, workdir)
    model, meta, tokenizer = load_checkpoint(checkpoint, device, tokenizer_dir)
    if not is_chat_checkpoint(meta) and not raw:
        stage = f"stage {meta['stage']!r}" if meta.get("stage") else "no stage"
        fail(f"{checkpoint} is a base model (its metadata has {stage}, not one of {', '.join(CHAT_STAGES)}): it "
             "continues documents and was not trained to answer in turns. Chat with an SFT, RL or RLHF "
             "checkpoint, or pass --raw to chat with this one anyway.")
    try:
        require_chat_tokens(tokenizer, model.config.vocab_size)
    except ChatFormatError as e:
        fail(str(e))
    session = ChatSession(Engine(model, tokenizer.vocab_size), ChatTemplate(tokenizer), sampling,
                          ToolLoop(registry, tokenizer), system)
    for note in notes + (["--raw: a base model, it may not answer in turns"] if raw else []):
        say(f"({note})\n", NOTE_STYLE)
    if prompt is not None:
        run_reply(session, tokenizer, prompt)
        return
    used = ", ".join(sorted(registry)) or "none"
    interactive(session, tokenizer, f"fineforge chat with {checkpoint} (tools: {used}). {COMMANDS}.")
