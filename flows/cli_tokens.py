"""`fineforge tokens ...` commands: train a tokenizer, build token shards, inspect them."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from fineforge.flows.cli_config import command_config
from fineforge.flows.cli_output import console, fail

tokens_app = typer.Typer(no_args_is_help=True)

SAMPLE_STYLES = ("black on bright_cyan", "black on bright_yellow")
SPECIAL_STYLE = "bold white on red"
TRAINABLE_STYLES = ("black on bright_green", "black on green")  # conversation tokens with loss mask 1
TRAINABLE_SPECIAL_STYLE = "bold white on dark_green"

INPUT_HELP = "Parquet folder of documents (repeatable); default: every <workdir>/<dump>/scrubbed/."
CONFIG_HELP = "JSON config file; options override it."
SPARK_HELP = "Spark master: local[*] (default), spark://..., k8s://..."


@tokens_app.command("train")
def train(
    output: Path = typer.Option(None, "--output", "-o", help="Where to save the tokenizer JSON file."),
    input: list[str] = typer.Option(None, "--input", "-i", help=INPUT_HELP),
    workdir: str = typer.Option(None, "--workdir", "-w", help="Where the data build wrote its output (./work; a "
                                "folder or s3://bucket/prefix)."),
    config_file: Path = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    vocab_size: int = typer.Option(None, help="Vocabulary size, special tokens included (8192)."),
    sample_docs: int = typer.Option(None, help="Train on a random sample of N documents."),
    fraction: float = typer.Option(None, help="Train on a random fraction of the documents."),
    val_fraction: float = typer.Option(None, help="Leave out the validation split (by id hash) of this fraction "
                                       "(0.01)."),
    seed: int = typer.Option(None, help="Seed of the random sample (0)."),
    spark_master: str = typer.Option(None, help=SPARK_HELP),
) -> None:
    """Train a byte-level BPE tokenizer on a Spark sample of the corpus."""
    from fineforge.flows.runtime import require_spark_master
    from fineforge.model.tokenizer import TokenizerError
    from fineforge.tasks.common.spark import spark_session
    from fineforge.tasks.tokens.bpe import train_bpe_tokenizer
    from fineforge.tasks.tokens.config import TokenizerTrainingConfig

    config = command_config(TokenizerTrainingConfig, config_file, {
        "output": output, "input": input, "workdir": workdir, "vocab_size": vocab_size, "sample_docs": sample_docs,
        "fraction": fraction, "val_fraction": val_fraction, "seed": seed, "spark.master": spark_master,
    })
    require_spark_master(config.spark.master)
    try:
        tok = train_bpe_tokenizer(spark_session(config.spark), config)
    except TokenizerError as e:
        fail(str(e))
    console.print(f"trained BPE tokenizer: {tok.vocab_size} tokens -> {config.output}")


@tokens_app.command("build")
def build(
    input: list[str] = typer.Option(None, "--input", "-i", help=INPUT_HELP),
    workdir: str = typer.Option(None, "--workdir", "-w", help="Shards go to <workdir>/tokens/<name>/ (./work; a "
                                "folder or s3://bucket/prefix)."),
    config_file: Path = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    name: str = typer.Option(None, help="Name of the shard set (corpus)."),
    tokenizer: str = typer.Option(None, "--tokenizer", "-t", help="bytes, gpt2 (default), cl100k_base, o200k_base, "
                                  "or a trained tokenizer .json file."),
    vocab_dir: Path = typer.Option(None, help="Folder of published vocabulary files ($FINEFORGE_TOKENIZER_DIR)."),
    val_fraction: float = typer.Option(None, help="Share of documents (by id hash) in the validation split (0.01)."),
    shard_tokens: int = typer.Option(None, help="Tokens per shard (100,000,000)."),
    dtype: str = typer.Option(None, help="Token dtype: auto (default), uint16 or uint32."),
    spark_master: str = typer.Option(None, help=SPARK_HELP),
) -> None:
    """Tokenize the corpus into train/val shards (llm.c format) with the `tokenize` Prefect flow."""
    from fineforge.tasks.tokens.config import TokenizeConfig

    config = command_config(TokenizeConfig, config_file, {
        "input": input, "workdir": workdir, "name": name, "tokenizer": tokenizer, "vocab_dir": vocab_dir,
        "val_fraction": val_fraction, "shard_tokens": shard_tokens, "dtype": dtype, "spark.master": spark_master,
    })

    from fineforge.flows.runtime import prepare_runtime, require_spark_master
    from fineforge.tasks.common.object_store import local_path

    require_spark_master(config.spark.master)
    prepare_runtime(local_path(config.workdir))
    from fineforge.flows.tokens import tokenize

    output = tokenize(config)
    stats = output.statistics
    table = Table(title=f"tokens/{config.name}" + (" (skipped: already complete)" if output.skipped else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("documents_in", "documents_out", "documents_longer_than_shard", "tokens_train", "tokens_val",
                "shards", "bytes_per_token", "tokens_per_second"):
        table.add_row(key, str(stats.get(key, "")))
    for reason, count in sorted(stats.get("dropped", {}).items()):
        table.add_row(f"dropped: {reason}", str(count))
    console.print(table)
    console.print(f"shards in {output.path}")


@tokens_app.command("inspect")
def inspect(
    path: Path = typer.Argument(..., help="A token shard folder (with manifest.json) or one of its shards."),
    vocab_dir: Path = typer.Option(None, help="Folder of published vocabulary files ($FINEFORGE_TOKENIZER_DIR)."),
    sample_tokens: int = typer.Option(64, help="How many tokens of the sample to decode."),
    offset: int = typer.Option(0, help="Where the sample starts in the shard."),
    verify: bool = typer.Option(True, help="Verify each shard's header, token count and sha256."),
) -> None:
    """Manifest and shard statistics, a decoded sample with token boundaries (and, for conversation shards, the
    loss mask: trainable tokens in green), checksum verification."""
    from fineforge.model import conversation_shards as conversations
    from fineforge.model.shards import ShardError, load_manifest, read_shard, shards_tokenizer
    from fineforge.model.tokenizer import TokenizerError
    from fineforge.tasks.tokens.inspection import shard_directory, shard_statistics

    if not path.exists():
        fail(f"{path} does not exist")
    try:
        directory = shard_directory(path)
        manifest = load_manifest(directory, verify=False)
        is_conversations = conversations.is_conversation_set(manifest)
        rows = (conversations.conversation_shard_rows if is_conversations else shard_statistics)(directory, manifest)
    except (ShardError, KeyError, ValueError) as e:
        fail(f"cannot read shards: {e}", code=1)

    console.print(Text(f"token shards in {directory}", style="bold"))
    summary = Table(title="manifest", show_header=False)
    for key in ("tokenizer", "vocab_size", "dtype", "eot_id", "shard_tokens", "val_fraction"):
        summary.add_row(key, str(manifest.get(key)))
    for split in ("train", "val"):
        summary.add_row(f"{split}: tokens / documents",
                        f"{manifest['tokens'].get(split, 0):,} / {manifest['documents'].get(split, 0):,}")
        if is_conversations:
            summary.add_row(f"{split}: trainable tokens", f"{manifest['trainable_tokens'].get(split, 0):,}")
    console.print(summary)
    shards = Table(title="shards")
    for column in ("file", "split", "tokens", "documents", "mean_document_tokens", "min_id", "max_id"):
        shards.add_column(column, justify="left" if column in ("file", "split") else "right")
    for row in rows:
        shards.add_row(row["file"], row["split"], f"{row['tokens']:,}", f"{row['documents']:,}",
                       *(str(row[c]) for c in ("mean_document_tokens", "min_id", "max_id")))
    console.print(shards)

    sample_file = path if path.is_file() else directory / manifest["shards"][0]["file"] if manifest["shards"] else None
    if sample_file is not None:
        try:
            tok = shards_tokenizer(directory, manifest, str(vocab_dir) if vocab_dir else None)
        except TokenizerError as e:
            console.print(f"[yellow]no decoded sample:[/] {e}")
        else:
            ids = [int(i) for i in read_shard(sample_file)[offset : offset + sample_tokens]]
            console.print(f"sample: {sample_file.name} tokens {offset}..{offset + len(ids)} (one colour per token)")
            mask = None
            if is_conversations:
                mask = [int(m) for m in conversations.shard_mask(directory, manifest, sample_file.name)[
                    offset : offset + len(ids)]]
                console.print(f"loss mask: {sum(mask)} of {len(ids)} tokens trainable (green)")
            console.print(token_boundaries(tok, ids, mask))

    if verify:
        try:
            load_manifest(directory, verify=True)
            if is_conversations:
                conversations.verify_conversation_set(directory, manifest)
        except ShardError as e:
            fail(f"checksum verification FAILED: {e}", code=1)
        count = len(manifest["shards"])
        console.print(f"[green]verified[/]: {count} shards match the manifest (header, token count, sha256)")


def token_boundaries(tok, ids: list[int], mask: list[int] | None = None) -> Text:
    """Decoded tokens in alternating colours; special tokens highlighted, newlines shown as \\n; with a loss
    mask, trainable tokens in green."""
    specials = set(tok.special_tokens.values())
    text = Text()
    for n, token_id in enumerate(ids):
        trainable = bool(mask and mask[n])
        if token_id in specials:
            text.append(tok.decode([token_id]), style=TRAINABLE_SPECIAL_STYLE if trainable else SPECIAL_STYLE)
            continue
        piece = tok.token_bytes(token_id).decode("utf-8", errors="replace").replace("\n", "\\n")
        styles = TRAINABLE_STYLES if trainable else SAMPLE_STYLES
        text.append(piece, style=styles[n % len(styles)])
    return text
