"""`fineforge interrogate`: knowledge-based refusal data from a chat checkpoint (the `interrogate` flow)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from fineforge.flows.cli_output import console, fail, validation_message


def interrogate(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="An SFT checkpoint folder, or a run folder."),
    questions: Path = typer.Option(..., "--questions", "-q", help='JSONL: {"question", "answer", "id"?, '
                                   '"response"?} per line.'),
    output: Path = typer.Option(..., "--output", "-o", help="sft.jsonl, results.jsonl and summary.json go here."),
    num_samples: int = typer.Option(4, "--num-samples", "-k", help="Replies sampled per question."),
    temperature: float = typer.Option(1.0, help="Sampling temperature."),
    max_new_tokens: int = typer.Option(64, help="Longer replies are unfinished and count as wrong."),
    judge: str = typer.Option("normalised_match", help="normalised_match, exact_match, or verifier:<name>."),
    refuse_at_most: float = typer.Option(0.0, help="Refuse a question whose share of correct replies is at most "
                                         "this (0: all k wrong)."),
    max_refusal_share: float = typer.Option(1.0, help="At most this share of sft.jsonl are refusals (a seeded "
                                            "sample of the unknown questions; 1: all of them)."),
    batch_questions: int = typer.Option(16, help="Questions sampled together in one batch."),
    refusal: str = typer.Option("I'm sorry, I don't believe I know.", help="The refusal's text."),
    seed: int = typer.Option(0, help="Seed of the replies (reproducible per question id)."),
    device: str = typer.Option("cpu", help="Torch device: cpu, cuda, ..."),
    tokenizer_dir: Path = typer.Option(None, help="Vocabulary files of a published encoding."),
    mlflow_uri: str = typer.Option(None, help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or SQLite in "
                                   "the output folder)."),
) -> None:
    """Ask a chat checkpoint questions of known answers k times each; write SFT data that keeps the answers it
    knows and refuses the questions it gets consistently wrong."""
    from pydantic import ValidationError

    from fineforge.tasks.interrogation import InterrogationConfig

    try:
        config = InterrogationConfig(
            checkpoint=str(checkpoint), questions=str(questions), output_dir=str(output), num_samples=num_samples,
            temperature=temperature, max_new_tokens=max_new_tokens, judge=judge, refuse_at_most=refuse_at_most,
            max_refusal_share=max_refusal_share, batch_questions=batch_questions, refusal=refusal, seed=seed,
            device=device, tokenizer_dir=str(tokenizer_dir) if tokenizer_dir else None,
        )  # fmt: skip
    except ValidationError as e:
        fail(validation_message(e))

    from fineforge.flows.runtime import prepare_runtime

    prepare_runtime(output)
    from fineforge.flows.interrogate import interrogate as interrogate_flow

    result = interrogate_flow(config, mlflow_uri)
    table = Table(title="interrogation")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
