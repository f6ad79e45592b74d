"""`fineforge rank`: rank sampled completions in the terminal, the same session as the `collect_rankings` flow
(each judgement stored as it is typed, Ctrl-C loses nothing submitted, a re-run resumes)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fineforge.flows.cli_config import merged_values, read_config_file
from fineforge.flows.cli_output import console, fail, validation_message

if TYPE_CHECKING:
    from fineforge.tasks.preferences.session import Answer, Question

QUIT, SKIP_KEY = "q", "s"


def rank(
    config_file: Path = typer.Option(None, "--config", "-c", help="JSON config of the session (the "
                                     "collect_rankings flow's fields); the options below override it."),
    checkpoint: Path = typer.Option(None, help="A checkpoint folder, or a run folder (its newest checkpoint)."),
    prompts: Path = typer.Option(None, help="JSONL prompts: {\"messages\": [...]} or {\"prompt\": text}."),
    dataset: Path = typer.Option(None, help="The rankings dataset (JSONL) each judgement is appended to."),
    num_completions: int = typer.Option(None, "--num-completions", "-k", help="Completions per prompt (K)."),
    mode: str = typer.Option(None, help="order (rank every completion) or best_worst."),
    judge: str = typer.Option(None, help="Your name, stored with each judgement (default: your login)."),
    max_prompts: int = typer.Option(None, help="Offer at most this many unranked prompts."),
    max_new_tokens: int = typer.Option(None, help="Tokens per completion at most."),
    temperature: float = typer.Option(None, help="Softmax temperature of the sampler."),
    seed: int = typer.Option(None, help="Seed of the sampler (with each prompt's id)."),
    device: str = typer.Option(None, help="Torch device: cpu, cuda, ..."),
) -> None:
    """Sample K completions per unranked prompt, show them, and read your order (or best and worst)."""
    from pydantic import ValidationError

    from fineforge.model.chat import ChatFormatError
    from fineforge.model.tokenizer import TokenizerError
    from fineforge.tasks.preferences.config import RankingConfig
    from fineforge.tasks.preferences.sampling import CompletionSampler
    from fineforge.tasks.preferences.session import EmptyPromptsFile, run_session

    values = merged_values(read_config_file(config_file), {
        "checkpoint": checkpoint, "prompts": prompts, "dataset": dataset, "num_completions": num_completions,
        "mode": mode, "judge": judge, "max_prompts": max_prompts, "device": device,
        "sampling.max_new_tokens": max_new_tokens, "sampling.temperature": temperature, "sampling.seed": seed,
    })
    values["judge"] = values.get("judge") or getpass.getuser()  # the terminal has no form to type a name into
    try:
        config = RankingConfig.model_validate(values)
        sampler = CompletionSampler(config)
    except ValidationError as e:
        fail(validation_message(e))
    except (TokenizerError, ChatFormatError) as e:
        fail(str(e))
    try:
        summary = run_session(config, ask_in_terminal, sampler.sample)
    except EmptyPromptsFile as e:
        fail(str(e), code=1)
    except KeyboardInterrupt:
        console.print(f"\ninterrupted: every judgement submitted is stored in {config.dataset}; run again to resume")
        raise typer.Exit(130) from None
    table = Table(title=f"ranking session -> {config.dataset}")
    table.add_column("")
    table.add_column("", justify="right")
    for name, value in summary.counts().items():
        table.add_row(name, str(value))
    console.print(table)


def ask_in_terminal(question: Question) -> Answer:
    """Show a prompt and its completions (again only the reason after a rejected answer) and read an answer."""
    from fineforge.tasks.preferences.config import BEST_WORST
    from fineforge.tasks.preferences.session import RANK, SKIP, STOP, Answer

    sampled = question.sampled
    if question.error:
        console.print(Text(f"not stored: {question.error}", style="bold red"))
    else:
        console.rule(f"prompt {question.position} of {question.total} ({sampled.prompt_id})")
        for message in sampled.prompt:
            console.print(Text.assemble((f"{message['role']}: ", "bold"), message["content"]))
        for number, completion in enumerate(sampled.completions, 1):
            console.print(Panel(Text(completion.text), title=str(number), title_align="left"))
    wanted = "best and worst (e.g. 2 4)" if question.mode == BEST_WORST else "order, best first (e.g. 2,1,3)"
    try:
        typed = console.input(f"{wanted}; {SKIP_KEY} skips, {QUIT} quits > ").strip()
    except EOFError:
        typed = QUIT
    action = {QUIT: STOP, SKIP_KEY: SKIP}.get(typed.lower(), RANK)
    return Answer(action, question.judge, typed)
