"""`fineforge reward ...`: build a reward model's preference set from rankings, and score replies with a reward
model. Training is `fineforge train reward`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from fineforge.flows.cli_output import console, fail, validation_message

reward_app = typer.Typer(no_args_is_help=True)

REPLY_CHARS = 70  # of each reply shown in the score table


@reward_app.command("pairs")
def pairs(
    rankings: Path = typer.Option(..., "--rankings", "-r", help="The rankings dataset (JSONL)."),
    output: Path = typer.Option(..., "--output", "-o", help="The preference set folder to write."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="The trunk checkpoint (or run folder) the reward "
                                    "model will start from: its tokenizer and context are used."),
    tokenizer: str = typer.Option(None, help="Tokenizer spec instead of --checkpoint's (bytes, gpt2, ..., a .json)."),
    max_length: int = typer.Option(None, help="Longest row (prompt + reply) kept; default --checkpoint's context."),
    tokenizer_dir: Path = typer.Option(None, help="Vocabulary files of a published encoding "
                                       "(default $FINEFORGE_TOKENIZER_DIR)."),
    heldout_fraction: float = typer.Option(0.1, help="Share of prompts held out for evaluation."),
) -> None:
    """Render and tokenize every judgement of a rankings dataset, split train/held-out by prompt id."""
    from pydantic import ValidationError

    from fineforge.model.checkpoint import CheckpointError
    from fineforge.model.preference_data import PreferenceDataError
    from fineforge.model.tokenizer import TokenizerError, load_tokenizer
    from fineforge.tasks.preferences.pairs import PairsConfig, build_preference_set, trunk_settings

    settings = {"tokenizer": tokenizer, "max_length": max_length}
    try:
        if checkpoint is not None:
            spec, context = trunk_settings(checkpoint)
            settings = {"tokenizer": tokenizer or spec, "max_length": max_length or context}
        config = PairsConfig(rankings=str(rankings), output=str(output), heldout_fraction=heldout_fraction,
                             tokenizer_dir=str(tokenizer_dir) if tokenizer_dir else None,
                             **{k: v for k, v in settings.items() if v is not None})
        manifest = build_preference_set(config, load_tokenizer(config.tokenizer, config.tokenizer_dir))
    except ValidationError as e:
        fail(validation_message(e).replace("invalid config: ", "invalid options: "))
    except (CheckpointError, TokenizerError, PreferenceDataError) as e:
        fail(str(e))
    if manifest.get("skipped"):
        console.print("skipped: already built from these rankings and settings")
    console.print(pairs_table(manifest, f"{rankings} -> {output}"))


def pairs_table(manifest: dict, title: str) -> Table:
    """What went in, what was dropped and why, and what each split holds."""
    table = Table(title=title)
    table.add_column("")
    table.add_column("count", justify="right")
    for name, count in manifest["stats"].items():
        table.add_row(name.replace("_", " "), f"{count:,}")
    for split, counts in manifest["counts"].items():
        for kind, count in counts.items():
            table.add_row(f"{split} {kind}", f"{count:,}")
    table.add_row("longest row (tokens)", f"{manifest['longest_row']:,}")
    return table


def read_replies(path: Path, prompt: str | None) -> list[tuple[object, str]]:
    """(prompt, reply) of each line {"reply": ..., "prompt": text or messages}; a line without a prompt takes
    --prompt. A bad line fails naming its number."""
    if not path.is_file():
        fail(f"--replies: file not found: {path}")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            fail(f"{path} line {number}: not JSON ({e.msg})")
        if not isinstance(record, dict) or not isinstance(record.get("reply"), str):
            fail(f"{path} line {number}: expected an object with a text 'reply'")
        if record.get("prompt", prompt) is None:
            fail(f"{path} line {number}: no 'prompt' and no --prompt")
        items.append((record.get("prompt", prompt), record["reply"]))
    return items


@reward_app.command("score")
def score(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A reward model's checkpoint or run folder."),
    prompt: str = typer.Option(None, "--prompt", "-p", help="The user's message the replies answer."),
    replies: list[str] = typer.Option(None, "--reply", help="A reply to score (repeatable)."),
    replies_file: Path = typer.Option(None, "--replies", help='JSONL of {"reply": ..., "prompt": text or messages}; '
                                      "a line without a prompt takes --prompt."),
    tokenizer_dir: Path = typer.Option(None, help="Vocabulary files of a published encoding "
                                       "(default $FINEFORGE_TOKENIZER_DIR)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per reply instead of a table."),
) -> None:
    """Print the reward model's score of each reply (higher: a person would prefer it)."""
    from fineforge.model.chat import ChatFormatError, ChatTemplate, Conversation
    from fineforge.model.checkpoint import CheckpointError
    from fineforge.model.preference_data import score_replies
    from fineforge.model.reward_model import load_reward_model, require_same_tokenizer
    from fineforge.model.tokenizer import TokenizerError, load_tokenizer

    items = [(prompt, reply) for reply in replies or []]
    if replies and prompt is None:
        fail("--reply needs --prompt")
    items += read_replies(replies_file, prompt) if replies_file is not None else []
    if not items:
        fail("give replies to score: --prompt TEXT --reply TEXT (repeatable), or --replies FILE.jsonl")
    try:
        model, meta = load_reward_model(checkpoint)
        tokenizer = load_tokenizer(meta["tokenizer"]["spec"], tokenizer_dir)
        require_same_tokenizer(meta, tokenizer, "the tokenizer loaded for scoring")
        template = ChatTemplate(tokenizer)
        scores = []
        for number, (item_prompt, reply) in enumerate(items, 1):
            messages = [{"role": "user", "content": item_prompt}] if isinstance(item_prompt, str) else item_prompt
            try:
                conversation = Conversation.from_messages(messages, require_assistant=False)
                scores += score_replies(model, template, conversation, [reply])
            except (ChatFormatError, ValueError) as e:
                fail(f"reply {number}: {e}")
    except (CheckpointError, TokenizerError) as e:
        fail(str(e))
    print_scores([reply for _, reply in items], scores, as_json)


def print_scores(replies: list[str], scores: list[float], as_json: bool) -> None:
    if as_json:
        for reply, value in zip(replies, scores, strict=True):
            print(json.dumps({"reply": reply, "score": value}, ensure_ascii=False))
        return
    table = Table(title="reward model scores")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("reply")
    for number, (reply, value) in enumerate(zip(replies, scores, strict=True), 1):
        shown = reply if len(reply) <= REPLY_CHARS else reply[: REPLY_CHARS - 3] + "..."
        table.add_row(str(number), f"{value:+.4f}", shown.replace("\n", " "))
    console.print(table)
