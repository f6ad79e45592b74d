"""`fineforge rank` in a real pseudo-terminal: a person types orders, a bad one is refused with the reason,
Ctrl-C loses nothing submitted, and a re-run resumes at the first unranked prompt with the same completions."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.tasks.preferences.prompts import read_prompts
from fineforge.tasks.preferences.rankings import RankingsDataset
from fineforge.tasks.preferences.sampling import SampleStore
from testkit.checkpoints import tiny_bytes_checkpoint
from testkit.pty_session import PtySession

PROMPTS = [{"id": "p-1", "prompt": "Name a prime number."}, {"id": "p-2", "prompt": "Say hello."},
           {"id": "p-3", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}]
ASKED = "order, best first"
TERMINAL_ENV = {"NO_COLOR": "1", "COLUMNS": "100", "TERM": "xterm"}


def terminal(*args: str) -> PtySession:
    """`fineforge ARGS` on a pseudo-terminal, as a person runs it."""
    return PtySession([sys.executable, "-m", "fineforge.flows.cli", *args], env={**os.environ, **TERMINAL_ENV})


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
    with terminal(*args) as first:
        shown = first.expect(ASKED)
        assert "prompt 1 of 3 (p-1)" in shown and "user: Name a prime number." in shown
        assert completions_shown(shown) == ["1", "2", "3"]
        first.send("1,1,2")
        assert "not stored: completion 1 is given more than one place" in first.expect(ASKED)
        first.send("2 3 1")
        assert "prompt 2 of 3 (p-2)" in first.expect(ASKED)
        stored = list(RankingsDataset(dataset))  # on disk while the session is still asking
        assert [(j.prompt_id, j.judge) for j in stored] == [("p-1", "tess")]
        p1_completions = SampleStore(samples).get(prompts[0]).completions
        assert stored[0].order == tuple(p1_completions[n].id for n in (1, 2, 0))
        p2_sampled = SampleStore(samples).get(prompts[1])

        first.interrupt()
        first.expect("interrupted")
        assert first.wait() == 130
    assert [j.prompt_id for j in RankingsDataset(dataset)] == ["p-1"]

    with terminal(*args) as again:
        shown = again.expect(ASKED)
        assert "prompt 1 of 2 (p-2)" in shown  # resumes at the first unranked prompt, with the stored completions
        assert completions_shown(shown) == ["1", "2", "3"] and SampleStore(samples).get(prompts[1]) == p2_sampled
        again.send("s")
        assert "prompt 2 of 2 (p-3)" in again.expect(ASKED)
        again.send("3,2,1")
        summary = again.expect("judgements_in_dataset")
        assert again.wait() == 0
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
