"""`fineforge conversations ...` commands: build SFT conversation shards from JSONL sources and generators."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from fineforge.flows.cli_config import command_config
from fineforge.flows.cli_output import console, fail

conversations_app = typer.Typer(no_args_is_help=True)

SUMMARY_KEYS = ("conversations_in", "conversations_out", "conversations_train", "conversations_val", "tokens_train",
                "trainable_tokens_train", "tokens_val", "trainable_tokens_val", "mean_conversation_tokens",
                "max_conversation_tokens", "context_length", "shards")
SOURCE_ROWS = {"kind": "kind", "in": "conversations_in", "out": "conversations_out",
               "train (with repeats)": "conversations_train", "val": "conversations_val",
               "trainable tokens (train)": "trainable_tokens_train", "weight": "weight", "epochs": "epochs",
               "loss share": "loss_share"}


@conversations_app.command("build")
def build(
    config_file: Path = typer.Option(..., "--config", "-c", help="JSON config: sources, tokenizer, context, ..."),
    workdir: Path = typer.Option(None, "--workdir", "-w", help="Output root (overrides the config's)."),
    vocab_dir: Path = typer.Option(None, help="Folder of published vocabulary files ($FINEFORGE_TOKENIZER_DIR)."),
) -> None:
    """Render, tokenize and mask conversations into <workdir>/conversations/<name>/ (see docs/conversations.md)."""
    from fineforge.model.chat import ChatFormatError
    from fineforge.model.tokenizer import TokenizerError
    from fineforge.tasks.conversations.config import ConversationsConfig
    from fineforge.tasks.conversations.job import CONVERSATIONS_STAGE, build_conversations, stage_tokenizer

    config = command_config(ConversationsConfig, config_file, {"workdir": workdir, "vocab_dir": vocab_dir})
    try:
        tokenizer = stage_tokenizer(config)
    except (TokenizerError, ChatFormatError) as e:
        fail(str(e))

    output = build_conversations(config, tokenizer)
    if output.skipped:
        console.print("skipped: already complete for these sources and settings")
    console.print(stats_table(output.statistics, f"{CONVERSATIONS_STAGE}/{config.name}"))
    console.print(sources_table(output.statistics["sources"]))
    console.print(f"shards in {output.path}")


def stats_table(stats: dict, title: str) -> Table:
    """Totals, then drops and changes by reason."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in SUMMARY_KEYS:
        table.add_row(key, f"{stats[key]:,}" if isinstance(stats[key], int) else str(stats[key]))
    for kind in ("dropped", "changed"):
        for reason, count in sorted(stats[kind].items()):
            table.add_row(f"{kind}: {reason}", f"{count:,}")
    return table


def sources_table(sources: list[dict]) -> Table:
    """One column per source: what went in and out, its mixture settings, its share of the training loss, drops."""
    table = Table(title="sources (trainable: training tokens with loss mask 1)")
    table.add_column("")
    for source in sources:
        table.add_column(source["name"], justify="right")
    for header, key in SOURCE_ROWS.items():
        table.add_row(header, *(f"{s[key]:,}" if isinstance(s[key], int) else str(s[key]) for s in sources))
    reasons = sorted({reason for s in sources for reason in s["dropped"]})
    for reason in reasons:
        table.add_row(f"dropped: {reason}", *(f"{s['dropped'].get(reason, 0):,}" for s in sources))
    return table
