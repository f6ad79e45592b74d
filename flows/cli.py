"""The `fineforge` command: one sub-command group per stage; heavy imports happen inside commands."""

from __future__ import annotations

import signal

import typer

from fineforge.flows.cli_chat import chat
from fineforge.flows.cli_conversations import conversations_app
from fineforge.flows.cli_data import data_app
from fineforge.flows.cli_deploy import deploy
from fineforge.flows.cli_generate import generate
from fineforge.flows.cli_interrogate import interrogate
from fineforge.flows.cli_pipeline import pipeline_app
from fineforge.flows.cli_preferences import preferences_app
from fineforge.flows.cli_quality import quality_app
from fineforge.flows.cli_rank import rank
from fineforge.flows.cli_reward import reward_app
from fineforge.flows.cli_search import search_app
from fineforge.flows.cli_server import server_app
from fineforge.flows.cli_tokens import tokens_app
from fineforge.flows.cli_train import train_app

app = typer.Typer(
    name="fineforge",
    help="From CommonCrawl to a chat model: data build on Spark, tokenization, pretraining, SFT, RL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(pipeline_app, name="pipeline", help="WARC files to a pretrained model in one run, with a report card.")
app.add_typer(data_app, name="data", help="Build the pre-training corpus from WARC files (Spark).")
app.add_typer(tokens_app, name="tokens", help="Tokenizers and token shards.")
app.add_typer(train_app, name="train", help="Train models with torchrun.")
app.add_typer(conversations_app, name="conversations", help="Conversation data for SFT: render, tokenize, mask.")
app.add_typer(quality_app, name="quality", help="A fastText quality classifier: train it, score the build with it.")
app.add_typer(search_app, name="search", help="Full-text search over the built corpus: build the index, query it.")
app.command("generate", help="Sample continuations from a checkpoint.")(generate)
app.command("chat", help="Chat with a checkpoint in the terminal, with the python and search tools.")(chat)
app.add_typer(preferences_app, name="preferences", help="Preference data for reward models.")
app.command("rank", help="Rank sampled completions in the terminal.")(rank)
app.command("interrogate", help="Refusal data: ask a chat checkpoint questions of known answers.")(interrogate)
app.add_typer(server_app, name="server", help="The Prefect server, a worker and the MLflow server on 127.0.0.1.")
app.command("generate", help="Sample continuations from a checkpoint.")(generate)
app.command("deploy", help="Register every flow as a Prefect deployment (prefect.yaml), runnable from the UI.")(deploy)
app.add_typer(reward_app, name="reward", help="Reward models: preference sets from rankings, scores of replies.")


def exit_on_sigterm(signum: int, frame) -> None:
    """SIGTERM ends the command as Ctrl-C does: its `finally` blocks stop what it started (torchrun, Prefect's
    temporary API); the exit status is 128 + the signal's number, as the shell reports a killed command."""
    raise SystemExit(128 + signum)


def main() -> None:
    from fineforge.flows.runtime import stop_temporary_server

    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        app()
    finally:
        stop_temporary_server()


if __name__ == "__main__":
    main()
