"""`fineforge tokens ...` commands: train a tokenizer, build token shards, inspect them."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from fineforge.flows.cli_output import console, fail, validation_message
from fineforge.tasks.common.stage import SCRUBBED

tokens_app = typer.Typer(no_args_is_help=True)

SAMPLE_STYLES = ("black on bright_cyan", "black on bright_yellow")
SPECIAL_STYLE = "bold white on red"
TRAINABLE_STYLES = ("black on bright_green", "black on green")  # conversation tokens with loss mask 1
TRAINABLE_SPECIAL_STYLE = "bold white on dark_green"


def default_inputs(workdir: Path) -> list[str]:
    """The data build's output: every `<workdir>/<dump>/scrubbed/` folder."""
    return sorted(str(p) for p in Path(workdir).glob(f"*/{SCRUBBED}") if p.is_dir())


@tokens_app.command("train")
def train(
    output: Path = typer.Option(..., "--output", "-o", help="Where to save the tokenizer JSON file."),
    input: list[Path] = typer.Option(None, "--input", "-i", help="Parquet folder of documents (repeatable); "
                                     "default: every <workdir>/<dump>/scrubbed/."),
    workdir: Path = typer.Option(Path("work"), "--workdir", "-w", help="Where the data build wrote its output."),
    vocab_size: int = typer.Option(8192, help="Vocabulary size, special tokens included."),
    sample_docs: int = typer.Option(None, help="Train on a random sample of N documents."),
    fraction: float = typer.Option(None, help="Train on a random fraction of the documents."),
    val_fraction: float = typer.Option(0.01, help="Leave out the validation split (by id hash) of this fraction."),
    seed: int = typer.Option(0, help="Seed of the random sample."),
    spark_master: str = typer.Option("local[*]", help="Spark master: local[*], spark://..., k8s://..."),
) -> None:
    """Train a byte-level BPE tokenizer on a Spark sample of the corpus."""
    from fineforge.model.tokenizer import TokenizerError
    from fineforge.tasks.common.spark import SparkConfig, spark_session
    from fineforge.tasks.tokens.job import train_bpe_tokenizer

    inputs = [str(p) for p in input] if input else default_inputs(workdir)
    missing = [p for p in inputs if not Path(p).exists()]
    if not inputs or missing:
        fail(f"input not found: {', '.join(missing) or f'no {workdir}/<dump>/{SCRUBBED}/ folders'}")
    if fraction is not None and not 0 < fraction <= 1:
        fail(f"--fraction must be in (0, 1], got {fraction}")
    spark = spark_session(SparkConfig(master=spark_master))
    try:
        tok = train_bpe_tokenizer(spark, inputs, vocab_size, output, sample_docs=sample_docs, fraction=fraction,
                                  val_fraction=val_fraction, seed=seed)
    except TokenizerError as e:
        fail(str(e))
    console.print(f"trained BPE tokenizer: {tok.vocab_size} tokens -> {output}")


@tokens_app.command("build")
def build(
    input: list[Path] = typer.Option(None, "--input", "-i", help="Parquet folder of documents (repeatable); "
                                     "default: every <workdir>/<dump>/scrubbed/."),
    workdir: Path = typer.Option(Path("work"), "--workdir", "-w", help="Shards go to <workdir>/tokens/<name>/."),
    name: str = typer.Option("corpus", help="Name of the shard set."),
    tokenizer: str = typer.Option("gpt2", "--tokenizer", "-t", help="bytes, gpt2, cl100k_base, o200k_base, "
                                  "or a trained tokenizer .json file."),
    vocab_dir: Path = typer.Option(None, help="Folder of published vocabulary files ($FINEFORGE_TOKENIZER_DIR)."),
    val_fraction: float = typer.Option(0.01, help="Share of documents (by id hash) in the validation split."),
    shard_tokens: int = typer.Option(100_000_000, help="Tokens per shard."),
    dtype: str = typer.Option("auto", help="Token dtype: auto, uint16 or uint32."),
    spark_master: str = typer.Option("local[*]", help="Spark master: local[*], spark://..., k8s://..."),
) -> None:
    """Tokenize the corpus into train/val shards (llm.c format) with the `tokenize` Prefect flow."""
    from pydantic import ValidationError

    from fineforge.model.shards import ShardError
    from fineforge.model.tokenizer import TokenizerError, load_tokenizer
    from fineforge.tasks.tokens.job import TokenizeConfig, token_dtype

    inputs = [str(p) for p in input] if input else default_inputs(workdir)
    if not inputs:
        fail(f"no input: pass --input or build the corpus into {workdir}/<dump>/{SCRUBBED}/ first")
    try:
        config = TokenizeConfig(input=inputs, workdir=str(workdir), name=name, tokenizer=tokenizer,
                                vocab_dir=str(vocab_dir) if vocab_dir else None, val_fraction=val_fraction,
                                shard_tokens=shard_tokens, dtype=dtype, spark={"master": spark_master})
        token_dtype(load_tokenizer(config.tokenizer, config.vocab_dir).vocab_size, config.dtype)
    except ValidationError as e:
        fail(validation_message(e))
    except (TokenizerError, ShardError) as e:
        fail(str(e))

    from fineforge.flows.runtime import prepare_runtime

    workdir.mkdir(parents=True, exist_ok=True)  # Prefect's home goes inside it
    prepare_runtime(workdir)
    from fineforge.flows.tokens import tokenize

    stats = tokenize(config)
    table = Table(title=f"tokens/{name}" + (" (skipped: already complete)" if stats.get("skipped") else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("documents_in", "documents_out", "documents_longer_than_shard", "tokens_train", "tokens_val",
                "shards", "bytes_per_token", "tokens_per_second"):
        table.add_row(key, str(stats.get(key, "")))
    for reason, count in sorted(stats.get("dropped", {}).items()):
        table.add_row(f"dropped: {reason}", str(count))
    console.print(table)
    console.print(f"shards in {Path(workdir) / 'tokens' / name}")


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
    from fineforge.tasks.tokens.job import shard_directory, shard_statistics

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
