"""RLHF at toy scale on the CPU, each model trained through the real launch path (torchrun running the stages).

    python -m benchmarks.rlhf reward            # (a) reward-model held-out pairwise accuracy
    python -m benchmarks.rlhf hack [--smoke]    # (b) the reward-hacking demonstration (benchmarks/rlhf_hack.py)

(a) A small trunk (the `tiny` preset, 4 layers x 128, context 256) is pretrained briefly (200 steps of 8 x 256
    tokens) on the hh-rlhf conversations of the training prompts, in the chat format, with a BPE of 2,048
    tokens trained on the same text. Reward models start from it and are evaluated on held-out prompts:
    - hh-rlhf (harmless-base test file, people's preferences): chance is 50 %, and a model this small, this
      briefly trained, may well stay near it; "the longer reply wins" is printed beside it;
    - known rules (`testkit/preferences.py`): the "gladly"/"never" keyword rule, where accuracy should be
      near 100 %, and sums answered right or off by 1, 2 or 5, which needs arithmetic on unseen sums.
    Printed as a table (accuracy with its Wilson 95 % interval, mean margin, pairs, wall and CPU seconds: the
    shared machine's load inflates the wall time, not the CPU time) and logged to MLflow.
(b) The hacking demonstration: a reward model with a known flaw (it never saw a reply repeating its keyword)
    drives RLHF into exploiting it while a held-out judge watches, and the reward-hacking watch stops the run at
    its best checkpoint (benchmarks/rlhf_hack.py: its own tiny policy and reward models, built in --workdir).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from fineforge.model.chat import ASSISTANT, ChatTemplate, Conversation
from fineforge.model.preference_data import load_preference_manifest, read_split
from fineforge.model.shards import write_shard_set
from fineforge.model.tokenizer import BPETrainingConfig, load_tokenizer, train_bpe
from fineforge.model.trainer import SUMMARY_FILE
from fineforge.tasks.preferences.importers import import_hh_rlhf
from fineforge.tasks.preferences.pairs import PairsConfig, build_preference_set, heldout
from fineforge.tasks.preferences.rankings import Judgement, RankingsDataset
from fineforge.tasks.training.launch import LaunchConfig, run_command, torchrun_command
from testkit.preferences import write_rule_rankings

ROOT = Path(__file__).resolve().parents[1]

HELDOUT_FRACTION = 0.1
CONTEXT = 256
BPE_VOCAB = 2048
RULE_RANKINGS = {"keyword": 600, "arithmetic": 2000}
PRETRAIN = {
    "model": "tiny", "model_overrides": {"block_size": CONTEXT}, "micro_batch_size": 8, "max_steps": 200,
    "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 20, "eval_every": 0, "eval_batches": 10, "sample_every": 0,
    "checkpoint_every": 0, "log_every": 50, "experiment": "rlhf-benchmark-pretrain",
}  # fmt: skip
REWARD = {
    "micro_batch_size": 8, "lr": 3e-4, "min_lr": 3e-5, "warmup_steps": 10, "eval_every": 0, "sample_every": 0,
    "checkpoint_every": 0, "log_every": 20, "experiment": "rlhf-benchmark-reward",
}  # fmt: skip
REWARD_STEPS = {"hh-rlhf": 80, "keyword": 40, "arithmetic": 120}  # 8 rankings each


def conversation_text(judgement: Judgement) -> list[list[dict]]:
    """The conversations of a judgement: its prompt followed by each completion."""
    return [[*judgement.prompt, {"role": ASSISTANT, "content": c.text}] for c in judgement.completions]


def pretraining_shards(judgements: list[Judgement], tokenizer_path: Path, out: Path) -> Path:
    """The conversations of the training prompts in the chat format, one document each, as token shards
    (the last 5 % of them the validation split)."""
    template = ChatTemplate(load_tokenizer(str(tokenizer_path)))
    conversations = (
        Conversation.from_messages(c, require_assistant=False) for j in judgements for c in conversation_text(j)
    )  # an empty reply is a reply too
    documents = [template.render(c)[0] + [template.tokenizer.eot_id] for c in conversations]
    cut = int(len(documents) * 0.95)
    parts = [
        (split, np.asarray([t for d in docs for t in d], dtype=np.uint32))
        for split, docs in (("train", documents[:cut]), ("val", documents[cut:]))
    ]
    write_shard_set(out, parts, template.tokenizer)
    return out


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of every child process it waited for."""
    return sum(
        r.ru_utime + r.ru_stime for r in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


def train(module: str, name: str, config: dict, work: Path, nproc: int) -> tuple[dict, float, float]:
    """One torchrun run of a stage: its summary, wall seconds and CPU seconds (the shared machine's load
    inflates the wall time, not the CPU time)."""
    run_dir = work / "runs" / name
    path = work / f"{name}.json"
    path.write_text(json.dumps({"run_dir": str(run_dir), **config}, indent=2))
    wall, cpu = time.perf_counter(), cpu_seconds()
    run_command(torchrun_command(module, path, LaunchConfig(nproc_per_node=nproc)))
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    return summary, time.perf_counter() - wall, cpu_seconds() - cpu


def preference_set(rankings: Path, name: str, tokenizer_path: Path, work: Path, max_length: int = CONTEXT) -> Path:
    config = PairsConfig(
        rankings=str(rankings),
        output=str(work / "sets" / name),
        tokenizer=str(tokenizer_path),
        max_length=max_length,
        heldout_fraction=HELDOUT_FRACTION,
    )
    build_preference_set(config, load_tokenizer(config.tokenizer))  # logs its counts
    return Path(config.output)


def longer_reply_accuracy(data: Path) -> float:
    """Held-out pairwise accuracy of "the longer reply (in tokens) is preferred", a tie counting one half."""
    rankings = read_split(data, load_preference_manifest(data), "heldout")
    right = [
        0.5 if len(a) == len(b) else float((len(a) > len(b)) == (ra < rb))
        for r in rankings
        for i, (a, ra) in enumerate(zip(r.completions, r.ranks, strict=True))
        for b, rb in list(zip(r.completions, r.ranks, strict=True))[i + 1 :]
        if ra != rb
    ]
    return sum(right) / len(right)


def interval(accuracy: float, pairs: int) -> tuple[float, float]:
    """The Wilson 95 % interval of an accuracy over `pairs` pairs (unlike the normal approximation, it does not
    shrink to nothing at 0 % or 100 %)."""
    z2 = 1.96**2
    centre = (accuracy + z2 / (2 * pairs)) / (1 + z2 / pairs)
    half = 1.96 * math.sqrt(accuracy * (1 - accuracy) / pairs + z2 / (4 * pairs**2)) / (1 + z2 / pairs)
    return centre - half, centre + half


def reward_row(name: str, data: Path, trunk: Path, work: Path, nproc: int, overrides: dict | None = None) -> dict:
    """A reward model trained from `trunk` on a preference set: REWARD and REWARD_STEPS[name] steps, `overrides`
    over them."""
    config = {**REWARD, "max_steps": REWARD_STEPS.get(name), **(overrides or {}), "data_dir": str(data),
              "init_checkpoint": str(trunk)}
    summary, wall, cpu = train("fineforge.model.reward", f"reward-{name}", config, work, nproc)
    pairs = load_preference_manifest(data)["counts"]
    return {
        "data": name,
        "trunk": trunk.name,
        "steps": summary["step"],
        "train_pairs": pairs["train"]["pairs"],
        "heldout_pairs": pairs["heldout"]["pairs"],
        "accuracy": summary["heldout_accuracy"],
        "ci95": interval(summary["heldout_accuracy"], pairs["heldout"]["pairs"]),
        "margin": summary["heldout_margin"],
        "wall_s": round(wall),
        "cpu_s": round(cpu),
    }


def reward_accuracy(work: Path, args: argparse.Namespace) -> tuple[str, list[tuple[str, float, int]]]:
    """(a): trunk pretraining, preference sets, reward models; the table (one row per reward model or baseline)
    and its metrics (name, value, step) for the benchmark's MLflow run."""
    rankings = work / "hh-rankings.jsonl"
    RankingsDataset(rankings).append_judgements(import_hh_rlhf(args.hh).judgements)
    train_judgements = [j for j in RankingsDataset(rankings) if not heldout(j.prompt_id, HELDOUT_FRACTION)]
    texts = (m["content"] for j in train_judgements for c in conversation_text(j) for m in c)
    tokenizer_path = work / "hh-bpe.json"
    train_bpe(texts, tokenizer_path, BPETrainingConfig(vocab_size=BPE_VOCAB))
    shards = pretraining_shards(train_judgements, tokenizer_path, work / "shards")
    summary, wall, cpu = train(
        "fineforge.model.pretrain", "trunk", {**PRETRAIN, "data_dir": str(shards)}, work, args.nproc
    )
    trunk = work / "runs" / "trunk"
    rows = [
        {
            "data": "hh-rlhf transcripts (pretraining)",
            "trunk": f"val loss {summary['val_loss']:.2f}",
            "steps": summary["step"],
            "wall_s": round(wall),
            "cpu_s": round(cpu),
        }
    ]
    hh = preference_set(rankings, "hh-rlhf", tokenizer_path, work)
    rows.append(reward_row("hh-rlhf", hh, trunk, work, args.nproc))
    heldout_pairs = load_preference_manifest(hh)["counts"]["heldout"]["pairs"]
    longer = longer_reply_accuracy(hh)
    rows.append(
        {
            "data": "hh-rlhf",
            "trunk": "(no model: longer reply wins)",
            "heldout_pairs": heldout_pairs,
            "accuracy": longer,
            "ci95": interval(longer, heldout_pairs),
        }
    )
    for rule, count in RULE_RANKINGS.items():
        data = preference_set(write_rule_rankings(work / f"{rule}.jsonl", rule, count), rule, tokenizer_path, work)
        rows.append(reward_row(rule, data, trunk, work, args.nproc))
    metrics = [(f"{row_name(r)}/{key}", r[key], 0) for r in rows for key in ("accuracy", "margin", "wall_s", "cpu_s")
               if key in r]
    return table(rows) + "\n\nchance is 50 %.", metrics


def row_name(row: dict) -> str:
    """A table row as an MLflow metric prefix: its data and trunk."""
    return re.sub(r"[^\w\-./ ]", "", f"{row['data']}/{row['trunk']}").replace(" ", "_")


def hacking(work: Path, args: argparse.Namespace) -> tuple[str, list[tuple[str, float, int]]]:
    """(b): the reward-hacking demonstration (benchmarks/rlhf_hack.py)."""
    from benchmarks.rlhf_hack import hacking as demonstration  # it builds on this module's helpers

    return demonstration(work, args)


PARTS = {"reward": reward_accuracy, "hack": hacking}


def table(rows: list[dict]) -> str:
    """The rows as a markdown table; chance is 50 %."""
    lines = [
        "| data | trunk | steps | train pairs | held-out pairs | accuracy | 95 % interval | mean margin "
        "| wall s | CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        low, high = r.get("ci95", (0, 0))
        accuracy = f"{100 * r['accuracy']:.1f} % | {100 * low:.1f}-{100 * high:.1f} %" if "accuracy" in r else " | "
        margin = f"{r['margin']:.2f}" if "margin" in r else ""
        cells = [r.get(k, "") for k in ("steps", "train_pairs", "heldout_pairs")]
        lines.append(
            f"| {r['data']} | {r['trunk']} | {' | '.join(map(str, cells))} | {accuracy} | {margin} | "
            f"{r.get('wall_s', '')} | {r.get('cpu_s', '')} |"
        )
    return "\n".join(lines)


def log_to_mlflow(uri: str, part: str, metrics: list[tuple[str, float, int]], text: str, seconds: float) -> str:
    """One MLflow run of the benchmark: the part's metrics (name, value, step), the report as an artifact."""
    from mlflow.tracking import MlflowClient

    from fineforge.model.tracking import experiment_id

    client = MlflowClient(uri)
    run_id = client.create_run(experiment_id(client, "rlhf-benchmark", uri), run_name=part).info.run_id
    for name, value, step in metrics:
        client.log_metric(run_id, name, value, step=step)
    client.log_metric(run_id, "seconds", seconds)
    client.log_text(run_id, text, f"{part}.md")
    client.set_terminated(run_id)
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument(
        "--hh",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "preference" / "hh-rlhf-harmless-base-test.jsonl.gz",
        help="the hh-rlhf pairs",
    )
    parser.add_argument("--nproc", type=int, default=1, help="training processes (torchrun)")
    parser.add_argument("--smoke", action="store_true", help="hack: the smallest sizes (minutes; numbers mean nothing)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=ROOT / "work" / "bench-rlhf",
        help="data, runs and the MLflow store (emptied first); part (b) starts from what (a) left",
    )
    parser.add_argument("--mlflow-uri", help="MLflow store (default: SQLite in --workdir, kept across runs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    if args.part == "reward" and not args.hh.is_file():
        sys.exit(f"error: {args.hh} not found (pass --hh)")
    work = args.workdir / args.part
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    uri = args.mlflow_uri or f"sqlite:///{(args.workdir / 'mlflow.db').resolve()}"
    os.environ.update({"MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"})  # the runs inherit it
    started = time.perf_counter()
    text, metrics = PARTS[args.part](work, args)
    seconds = time.perf_counter() - started
    run_id = log_to_mlflow(uri, args.part, metrics, text, seconds)
    print(text)
    print(f"\n{seconds:.0f} s in all. MLflow run {run_id} in {uri}")


if __name__ == "__main__":
    main()
