"""`fineforge chat` as a person uses it: the installed command in a real pseudo-terminal, a checkpoint of a tiny
model trained in the session to call tools, the real Python sandbox and a real search index of a CommonCrawl
page; plus the one-shot mode, the base-checkpoint refusal, and the session's history."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.model.chat import ChatTemplate, Conversation
from fineforge.model.chat_session import ChatSession
from fineforge.model.engine import Engine, SamplingConfig
from fineforge.model.tokenizer import IM_END
from fineforge.model.tool_loop import ToolLoop
from fineforge.model.tools.calculator import calculator
from testkit.checkpoints import tiny_bytes_checkpoint
from testkit.pty_session import PtySession
from testkit.tool_caller import (
    CRASH_QUESTION,
    PLAIN_QUESTION,
    PYTHON_QUESTION,
    SEARCH_QUESTION,
    TURNS,
    conversation,
    save_chat_checkpoint,
)

FINEFORGE = str(Path(sys.executable).with_name("fineforge"))
ESCOPETE = "https://an.wikipedia.org/wiki/Escopete"
GREEDY = ["--temperature", "0", "--max-new-tokens", "150"]

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def checkpoints(tool_caller, tmp_path_factory) -> dict[str, Path]:
    """The trained tool caller as an SFT checkpoint, and a random base model's checkpoint."""
    model, tokenizer = tool_caller
    root = tmp_path_factory.mktemp("chat")
    return {"sft": save_chat_checkpoint(model, tokenizer, root / "sft"), "base": tiny_bytes_checkpoint(root / "base")}


def terminal(*args: str) -> PtySession:
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120", "OMP_NUM_THREADS": "1"}
    return PtySession([FINEFORGE, "chat", *args], env=env)


def test_chat_in_a_terminal_uses_both_tools_live(checkpoints, search_workdir):
    with terminal("-c", str(checkpoints["sft"]), "--workdir", str(search_workdir), *GREEDY) as term:

        def ask(question: str) -> str:
            """The reply to a question asked in a fresh conversation (the tiny model knows single exchanges)."""
            term.send("/reset")
            term.expect("(history cleared)\nyou> ")
            term.send(question)
            term.expect(question)  # the terminal's echo
            return term.expect("you> ")

        term.expect("(tools: python, search)")
        # the sandbox runs the model's code
        assert "[python] print(17*3)\n[output] 51\nIt is 51.\n" in ask(PYTHON_QUESTION)
        # the real index of the real page answers the model's query
        reply = ask(SEARCH_QUESTION)
        assert "[search] Escopete\n[output] [1] Escopete" in reply and f"({ESCOPETE})" in reply
        # code that kills its interpreter takes down the sandbox, not the chat
        assert "[python] import os; os.abort()\n[output] error: killed by SIGABRT\nOops." in ask(CRASH_QUESTION)
        assert "I am a tiny model." in ask(PLAIN_QUESTION)
        term.send("/exit")
        assert term.wait() == 0


def test_ctrl_c_stops_the_reply_not_the_session(checkpoints):
    # a random base model under --raw: it babbles until its budget, long enough to be interrupted
    with terminal("-c", str(checkpoints["base"]), "--raw", "--tools", "none", "--max-new-tokens", "100000",
                  "--seed", "0", "--system", "You tell stories.", "--top-k", "50", "--top-p", "0.9") as term:
        term.expect("(--raw: a base model, it may not answer in turns)")
        term.expect("you> ")
        term.send("Tell me a long story.")
        term.expect("story.\n")  # the echo of what was typed
        term.read_more(40)  # the reply is streaming
        term.interrupt()
        term.expect("[stopped]")
        term.expect("you> ")
        term.send("/reset")  # the session goes on
        term.expect("(history cleared)\nyou> ")
        term.interrupt_until("(Ctrl-D or /exit quits)")  # at the prompt, Ctrl-C does not quit either
        term.send("/exit")
        assert term.wait() == 0


def test_one_shot_prompt_prints_the_reply_without_styles(checkpoints, tmp_path):
    # default tools: those available here (no search index in this work dir)
    result = CliRunner().invoke(app, ["chat", "-c", str(checkpoints["sft"]), "--prompt", PYTHON_QUESTION,
                                      "--workdir", str(tmp_path), *GREEDY])
    assert result.exit_code == 0, result.output
    assert f"(search tool off: no search index in {tmp_path}" in " ".join(result.stdout.split())
    assert "\x1b[" not in result.stdout and "[python] print(17*3)\n[output] 51\nIt is 51.\n" in result.stdout


def test_a_base_checkpoint_is_refused_unless_raw(checkpoints):
    result = CliRunner().invoke(app, ["chat", "-c", str(checkpoints["base"]), "--prompt", "hi"])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "is a base model (its metadata has no stage, not one of sft, rl, rlhf)" in message
    assert "pass --raw to chat with this one anyway" in message
    raw = CliRunner().invoke(app, ["chat", "-c", str(checkpoints["base"]), "--prompt", "hi", "--raw", "--tools",
                                   "none", "--max-new-tokens", "5"])
    assert raw.exit_code == 0, raw.output


@pytest.mark.parametrize(("args", "message"), [
    (["--tools", "python,browser"], "--tools: unknown tool browser (known: python, search, or none)"),
    (["--tools", "search", "--workdir", "/nonexistent"], "the search tool is not available: no search index in "
                                                         "/nonexistent: build it with `fineforge search build"),
    (["--top-p", "0"], "top_p must be in (0, 1]"),
    (["--checkpoint", "/nonexistent"], "/nonexistent: no checkpoint found"),
])
def test_bad_options_fail_before_the_model_loads(checkpoints, args, message):
    result = CliRunner().invoke(app, ["chat", "-c", str(checkpoints["sft"]), "--prompt", "hi", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())


def test_session_history_holds_the_replies_as_sampled(tool_caller):
    model, tokenizer = tool_caller
    template = ChatTemplate(tokenizer)
    end = tokenizer.encode_special(IM_END)
    engine, tools = Engine(model, tokenizer.vocab_size), ToolLoop({"python": calculator}, tokenizer)
    session = ChatSession(engine, template, SamplingConfig(max_new_tokens=90, temperature=0), tools)
    events = list(session.reply(PYTHON_QUESTION))
    reply = [t for e in events for t in e.tokens]
    assert tokenizer.decode(reply) == TURNS[PYTHON_QUESTION] and events[-1].finish_reason == "stop"
    prompt = template.render_prompt(conversation(PYTHON_QUESTION))
    assert session.history == prompt + reply + [end]  # the tool's output included, as the model saw it
    # the next message follows the whole history; a reply stopped early joins it as far as it got
    stream = session.reply(PLAIN_QUESTION)
    first = next(stream)
    stream.close()
    follow_up = template.render_prompt(conversation(PLAIN_QUESTION))
    assert session.history == prompt + reply + [end] + follow_up + list(first.tokens) + [end]
    session.reset()
    assert session.history == [] and session.turns == 0
    # a system message opens the conversation and stays after /reset
    system = ChatSession(engine, template, SamplingConfig(), tools, system="Be brief.")
    system_turn = template.render(Conversation.from_messages([{"role": "system", "content": "Be brief."}],
                                                             require_assistant=False))[0]
    assert system.history == system_turn
    list(system.reply("hi"))
    system.reset()
    assert system.history == system_turn
