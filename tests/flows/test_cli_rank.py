"""`fineforge rank` in a real pseudo-terminal: a person types orders, a bad one is refused with the reason,
Ctrl-C loses nothing submitted, and a re-run resumes at the first unranked prompt with the same completions."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.tasks.preferences.prompts import read_prompts
from fineforge.tasks.preferences.rankings import RankingsDataset
from fineforge.tasks.preferences.sampling import SampleStore
from testkit.checkpoints import tiny_bytes_checkpoint

PROMPTS = [{"id": "p-1", "prompt": "Name a prime number."}, {"id": "p-2", "prompt": "Say hello."},
           {"id": "p-3", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}]
ASKED = "order, best first"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
SECONDS = 120


class Terminal:
    """`fineforge ARGS` on a pseudo-terminal: what it prints, what a person types, its exit status."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100", "TERM": "xterm"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: its controlling terminal is the pty, so Ctrl-C is a real SIGINT
            os.execve(sys.executable, [sys.executable, "-m", "fineforge.flows.cli", *args], env)
        self.output = ""

    def read_until(self, text: str, seconds: float = SECONDS) -> str:
        """Everything printed from now until `text` appears (ANSI codes removed)."""
        start, deadline = len(self.output), time.monotonic() + seconds
        while text not in self.output[start:]:
            if time.monotonic() > deadline or not self._read(deadline):
                pytest.fail(f"{text!r} never appeared; the terminal showed:\n{self.output[-3000:]}")
        return self.output[start:]

    def _read(self, deadline: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
        try:
            chunk = os.read(self.fd, 65536) if ready else b""
        except OSError:  # the child has exited and the pty is closed
            return False
        self.output += ANSI.sub("", chunk.decode("utf-8", errors="replace"))
        return bool(chunk) or not ready

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def exit_status(self) -> int:
        while self._read(time.monotonic() + 1):
            pass
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


@pytest.fixture
def session(tmp_path):
    run_dir = tiny_bytes_checkpoint(tmp_path / "run")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    dataset = tmp_path / "rankings.jsonl"
    args = ("rank", "--checkpoint", str(run_dir), "--prompts", str(prompts), "--dataset", str(dataset), "-k", "3",
            "--judge", "tess", "--max-new-tokens", "12", "--seed", "4")
    return args, dataset, read_prompts(prompts).prompts


def completions_shown(text: str) -> list[str]:
    """The numbers in the titles of the completion panels."""
    return re.findall(r"╭─ (\d+) ─", text)


def test_rank_in_a_terminal_interrupt_and_resume(session):
    args, dataset, prompts = session
    samples = dataset.with_name("rankings.samples.jsonl")
    first = Terminal(*args)
    shown = first.read_until(ASKED)
    assert "prompt 1 of 3 (p-1)" in shown and "user: Name a prime number." in shown
    assert completions_shown(shown) == ["1", "2", "3"]
    first.type("1,1,2\n")
    assert "not stored: completion 1 is given more than one place" in first.read_until(ASKED)
    first.type("2 3 1\n")
    assert "prompt 2 of 3 (p-2)" in first.read_until(ASKED)
    stored = list(RankingsDataset(dataset))  # on disk while the session is still asking
    assert [(j.prompt_id, j.judge) for j in stored] == [("p-1", "tess")]
    p1_completions = SampleStore(samples).get(prompts[0]).completions
    assert stored[0].order == tuple(p1_completions[n].id for n in (1, 2, 0))
    p2_sampled = SampleStore(samples).get(prompts[1])

    first.type("\x03")  # Ctrl-C
    first.read_until("interrupted")
    assert first.exit_status() == 130
    assert [j.prompt_id for j in RankingsDataset(dataset)] == ["p-1"]

    again = Terminal(*args)
    shown = again.read_until(ASKED)
    assert "prompt 1 of 2 (p-2)" in shown  # resumes at the first unranked prompt, with the stored completions
    assert completions_shown(shown) == ["1", "2", "3"] and SampleStore(samples).get(prompts[1]) == p2_sampled
    again.type("s\n")
    assert "prompt 2 of 2 (p-3)" in again.read_until(ASKED)
    again.type("3,2,1\n")
    summary = again.read_until("judgements_in_dataset")
    assert again.exit_status() == 0
    assert re.search(r"skipped\s+│\s+1", summary) and re.search(r"ranked\s+│\s+1", summary)
    assert sorted(j.prompt_id for j in RankingsDataset(dataset)) == ["p-1", "p-3"]


def test_a_wrong_config_is_one_line_naming_the_field(session, tmp_path):
    args, dataset, _ = session
    result = CliRunner().invoke(app, [*args[:4], str(tmp_path / "missing.jsonl"), *args[5:]])
    assert result.exit_code == 2
    assert "invalid config: prompts: Value error, prompts file not found" in result.output
    result = CliRunner().invoke(app, [*args, "--mode", "best_of_three"])
    assert result.exit_code == 2 and "mode: Input should be 'order' or 'best_worst'" in result.output
    assert not dataset.exists()



def test_the_terminal_session_never_imports_prefect():
    """Prefect's import in an interactive terminal sends first-use telemetry; ranking in one needs no Prefect."""
    code = ("import sys; from fineforge.flows.cli import app; from fineforge.flows.cli_rank import ask_in_terminal; "
            "from fineforge.tasks.preferences import session; print(sorted(m for m in sys.modules if 'prefect' in m))")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"
