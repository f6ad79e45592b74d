"""The seed's SFT lessons, measured at toy scale on CPU through the real stages (torchrun trainer, conversation
stage, interrogation).

    .venv/bin/python -m benchmarks.sft [--scale full|smoke] [--workdir DIR] [--mlflow-uri URI]

1. A world of fictional people (birth year, city, job): the "seen" ones are written about in varied short
   biographies, mixed with tinyshakespeare into the pretraining corpus; the "unseen" ones never appear in it.
   A byte-level BPE is trained on that corpus and a tiny GPT pretrained on it (`model.pretrain`).
2. Three SFT runs from that checkpoint (`model.sft`, same steps and seed), each with identity conversations
   and generated word problems:
   - base: questions about some seen people answered from their facts, word problems solved step by step;
   - refusal: the base model interrogated (k samples per question about the base's seen people and about
     some unseen people; `tasks/interrogation.py`) and its SFT data added to the base mix, which keeps all its
     answers: questions it answered keep their answer, the ones it got consistently wrong are refused (refusals
     at most `refusal_share` of the interrogation's data: a minority, as in Llama 3);
   - answer_first: the base mix with the word problems stating the answer before the steps.
3. Measured with greedy replies on held-out prompts: the share of replies that end with `<|im_end|>` and
   identity answered with the configured name (base); on questions about unseen people never interrogated,
   the share of confident wrong answers (neither right nor refused), base vs refusal, and the accuracy on
   seen people whose questions were never trained on; step-by-step vs answer-first accuracy on new word
   problems, with 95 % Wilson intervals and the number of problems.
The table is printed and logged to MLflow (experiment `benchmark-sft`: metrics, the table, the samples).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.facts import FactsWorld, qa_conversations, questions

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FINEFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
ASSISTANT_NAME, MAKER = "Forge", "the fineforge team"
REFUSAL = "I'm sorry, I don't believe I know."
TEST_SEED = 987_654  # the word problems of the test, never trained on
# identity questions phrased unlike the generator's (held out), and like it
IDENTITY_PROMPTS = ("Please tell me your name.", "who am I talking to?", "Do you have a name?",
                    "Could you introduce yourself?", "What should I call you?", "Who are you?", "What is your name?",
                    "Tell me about yourself.")
Z95 = 1.96  # 95 % intervals
FACT_TOKENS, SOLUTION_TOKENS = 48, 128  # reply budgets: a fact or an identity answer, a word problem's solution
REPLY_BATCH = 64  # greedy replies decoded together

log = logging.getLogger("benchmarks.sft")


@dataclass(frozen=True)
class Scale:
    """How big each part is."""

    seen: int  # people in pretraining: the first `seen_sft` have SFT questions, the rest are test people
    seen_sft: int
    unseen: int  # people never in pretraining: the first `unseen_interrogated` are interrogated, the rest tested
    unseen_interrogated: int
    biographies: int  # documents per seen person
    shakespeare_chars: int
    bpe_vocab: int
    model: dict
    pretrain_steps: int
    pretrain_batch: int
    sft_steps: int
    sft_batch: int
    fact_epochs: float  # of the facts questions in SFT
    identity: int
    word_problems: int
    max_difficulty: int
    test_problems: int
    num_samples: int  # interrogation replies per question
    refusal_share: float  # the interrogation's max_refusal_share
    val_fraction: float = 0.05  # of the SFT conversations, held out for the validation loss


FULL = Scale(seen=80, seen_sft=50, unseen=80, unseen_interrogated=40, biographies=24, shakespeare_chars=250_000,
             bpe_vocab=1024, model={"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 192},
             pretrain_steps=800, pretrain_batch=8, sft_steps=300, sft_batch=16, fact_epochs=6, identity=600,
             word_problems=2000, max_difficulty=1, test_problems=200, num_samples=4, refusal_share=0.5)
SMOKE = Scale(seen=12, seen_sft=8, unseen=12, unseen_interrogated=6, biographies=4, shakespeare_chars=80_000,
              bpe_vocab=512, model={"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 192},
              pretrain_steps=10, pretrain_batch=4, sft_steps=8, sft_batch=4, fact_epochs=2, identity=40,
              word_problems=60, max_difficulty=1, test_problems=10, num_samples=2, refusal_share=0.5,
              val_fraction=0.2)
SCALES = {"full": FULL, "smoke": SMOKE}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def pretraining_corpus(world: FactsWorld, scale: Scale, seed: int) -> list[str]:
    """The seen people's biographies and tinyshakespeare in paragraphs, shuffled together."""
    text = (SHARED / "corpora" / "tinyshakespeare.txt").read_text()[: scale.shakespeare_chars]
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    rng = random.Random(seed)
    documents = world.biographies(scale.biographies, rng) + paragraphs
    rng.shuffle(documents)
    return documents


def write_pretraining_shards(documents: list[str], scale: Scale, work: Path) -> tuple[Path, Path]:
    """A BPE trained on the corpus, and the corpus as train/val token shards (one document in 20 for val); the
    ones of a kept --workdir are reused."""
    from fineforge.model.shards import MANIFEST, write_shard_set
    from fineforge.model.tokenizer import BPETrainingConfig, train_bpe

    if (work / "pretrain-data" / MANIFEST).is_file():
        return work / "pretrain-data", work / "tokenizer.json"
    tokenizer = train_bpe(documents, work / "tokenizer.json", BPETrainingConfig(vocab_size=scale.bpe_vocab))
    ids = [np.asarray(tokenizer.encode(d) + [tokenizer.eot_id], dtype=np.uint32) for d in documents]
    parts = [("val", np.concatenate(ids[::20])), ("train", np.concatenate([x for i, x in enumerate(ids) if i % 20]))]
    write_shard_set(work / "pretrain-data", parts, tokenizer)
    return work / "pretrain-data", Path(tokenizer.name)


def torchrun_stage(module: str, name: str, config: dict, work: Path) -> tuple[dict, float]:
    """One run of a training stage under torchrun (one process, one thread); its summary and wall seconds."""
    from fineforge.model.trainer import SUMMARY_FILE
    from fineforge.tasks.training.launch import LaunchConfig, run_command, torchrun_command

    run_dir, timing = work / name, work / f"{name}.seconds"
    if (run_dir / SUMMARY_FILE).is_file() and timing.is_file():  # finished in a kept --workdir
        log.info("%s: reusing the finished run in %s", name, run_dir)
        return json.loads((run_dir / SUMMARY_FILE).read_text()), float(timing.read_text())
    path = work / f"{name}.json"
    path.write_text(json.dumps({"run_dir": str(run_dir), "use_mlflow": False, "log_every": 50, **config}))
    started = time.perf_counter()
    run_command(torchrun_command(module, path, LaunchConfig()), env={"OMP_NUM_THREADS": "1"}, logger=log)
    timing.write_text(str(time.perf_counter() - started))
    return json.loads((run_dir / SUMMARY_FILE).read_text()), float(timing.read_text())


def pretrain(data: Path, scale: Scale, work: Path) -> tuple[dict, float]:
    config = {"data_dir": str(data), "model": "tiny", "model_overrides": scale.model,
              "micro_batch_size": scale.pretrain_batch, "max_steps": scale.pretrain_steps, "lr": 2e-3,
              "min_lr": 2e-4, "warmup_steps": max(1, scale.pretrain_steps // 20), "eval_every": 0,
              "eval_batches": 10, "sample_every": 0, "checkpoint_every": 0, "sample_prompts": ["Ada "]}
    return torchrun_stage("fineforge.model.pretrain", "pretrain", config, work)


def conversation_set(name: str, facts: dict[str, Path], answer_first: bool, tokenizer: Path, scale: Scale,
                     work: Path) -> Path:
    """An SFT mixture: the facts JSONL files (by source name), identity and word problems (step by step, or answer
    first)."""
    from fineforge.tasks.conversations.config import ConversationsConfig
    from fineforge.tasks.conversations.job import build_conversations

    config = ConversationsConfig.model_validate({
        "workdir": str(work), "name": name, "tokenizer": str(tokenizer), "too_long": "drop", "seed": 0,
        "val_fraction": scale.val_fraction, "context_length": scale.model["block_size"] + 1,
        "sources": [
            *({"kind": "jsonl", "name": label, "path": str(path), "epochs": scale.fact_epochs}
              for label, path in facts.items()),
            {"kind": "identity", "assistant_name": ASSISTANT_NAME, "maker": MAKER, "count": scale.identity,
             "languages": ["en"]},
            {"kind": "word_problems", "count": scale.word_problems, "max_difficulty": scale.max_difficulty,
             "answer_first": answer_first},
        ],
    })  # fmt: skip
    stats = build_conversations(config).statistics
    log.info("%s: %s conversations, dropped %s", name, stats["conversations_train"], stats["dropped"] or "none")
    return work / "conversations" / name


def sft(name: str, data: Path, init: Path, scale: Scale, work: Path) -> tuple[dict, float]:
    config = {"data_dir": str(data), "init_checkpoint": str(init), "micro_batch_size": scale.sft_batch,
              "row_multiple": 32, "max_steps": scale.sft_steps, "lr": 1e-3, "min_lr": 1e-4,
              "warmup_steps": max(1, scale.sft_steps // 20), "eval_every": 0, "eval_batches": 4, "sample_every": 0,
              "checkpoint_every": 0, "sample_tokens": 48}
    return torchrun_stage("fineforge.model.sft", name, config, work)


def interrogate(checkpoint: Path, asked: list[dict], scale: Scale, work: Path) -> dict:
    """The interrogation of the base model; returns its summary (its SFT data is work/interrogation/sft.jsonl)."""
    from fineforge.tasks.interrogation import InterrogationConfig, run_interrogation

    config = InterrogationConfig(checkpoint=str(checkpoint), questions=str(write_jsonl(work / "asked.jsonl", asked)),
                                 output_dir=str(work / "interrogation"), num_samples=scale.num_samples,
                                 temperature=1.0, max_new_tokens=32, refusal=REFUSAL, seed=0,
                                 max_refusal_share=scale.refusal_share)
    return run_interrogation(config).summary


@dataclass(frozen=True)
class Reply:
    text: str
    ended: bool  # with <|im_end|>, within the token budget


class Replier:
    """Greedy chat replies of a checkpoint to single user prompts."""

    def __init__(self, checkpoint: Path) -> None:
        from fineforge.model.chat import ChatTemplate
        from fineforge.model.checkpoint import load_model
        from fineforge.model.engine import Engine
        from fineforge.model.tokenizer import IM_END, load_tokenizer

        model, meta = load_model(checkpoint)
        self.tokenizer = load_tokenizer(meta["tokenizer"]["spec"])
        self.template, self.engine = ChatTemplate(self.tokenizer), Engine(model, vocab_size=self.tokenizer.vocab_size)
        self.stop = (self.tokenizer.encode_special(IM_END),)
        self.log: list[dict] = []  # every prompt and reply, for the samples artifact

    def __call__(self, prompts: list[str], max_new_tokens: int) -> list[Reply]:
        """The replies to `prompts`, in order (decoded in batches of REPLY_BATCH)."""
        from fineforge.model.engine import Request, SamplingConfig

        sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0, stop_tokens=self.stop)
        replies = []
        for start in range(0, len(prompts), REPLY_BATCH):
            requests = [Request(self.template.render_prompt([{"role": "user", "content": prompt}]))
                        for prompt in prompts[start : start + REPLY_BATCH]]
            replies += [Reply(self.tokenizer.decode(c.tokens), c.stopped)
                        for c in self.engine.generate_batch(requests, sampling)]
        self.log += [{"prompt": p, "reply": r.text, "ended": r.ended} for p, r in zip(prompts, replies, strict=True)]
        return replies


def is_refusal(text: str) -> bool:
    from fineforge.model.interrogation import normalise

    return normalise(REFUSAL) in normalise(text) or normalise(text).startswith("i m sorry")


def facts_counts(replier: Replier, records: list[dict]) -> dict:
    """Per question set: answered right, refused, confidently wrong (neither), of n."""
    from fineforge.model.interrogation import normalised_match

    counts = {"n": len(records), "correct": 0, "refused": 0, "confident_wrong": 0}
    for record, reply in zip(records, replier([r["question"] for r in records], FACT_TOKENS), strict=True):
        if is_refusal(reply.text):
            counts["refused"] += 1
        elif reply.ended and normalised_match(record["answer"], reply.text):
            counts["correct"] += 1
        else:
            counts["confident_wrong"] += 1
    return counts


def test_problems(scale: Scale) -> list[tuple[str, str]]:
    """(question, answer) of new word problems, of the trained difficulties."""
    from fineforge.tasks.conversations.word_problems import word_problem_conversations

    records = word_problem_conversations(scale.test_problems, scale.max_difficulty, seed=TEST_SEED, source="test")
    return [(r.messages[0]["content"], r.answer) for r in records]


def word_problem_correct(replier: Replier, problems: list[tuple[str, str]]) -> int:
    from fineforge.model.verifiers import get_verifier

    verifier = get_verifier("word_problems")
    replies = replier([question for question, _ in problems], SOLUTION_TOKENS)
    return sum(int(verifier.reward({"answer": answer}, reply.text) > 0)
               for (_, answer), reply in zip(problems, replies, strict=True))


def identity_named(replier: Replier) -> int:
    return sum(ASSISTANT_NAME in reply.text for reply in replier(list(IDENTITY_PROMPTS), FACT_TOKENS))


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p, z2 = successes / n, Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def share(successes: int, n: int) -> str:
    low, high = wilson(successes, n)
    return f"{100 * successes / n:.1f} % [{100 * low:.0f}-{100 * high:.0f}] (n={n})"


def ended_share(replier: Replier) -> tuple[int, int]:
    return sum(r["ended"] for r in replier.log), len(replier.log)


def train_all(world: FactsWorld, scale: Scale, work: Path) -> dict:
    """Pretraining, the base SFT, its interrogation, the refusal and answer-first SFTs; returns their numbers."""
    split = world_split(world, scale)
    data, tokenizer = write_pretraining_shards(pretraining_corpus(world, scale, seed=0), scale, work)
    numbers, seconds = {}, {}
    numbers["pretrain"], seconds["pretrain"] = pretrain(data, scale, work)
    facts = {"facts": write_jsonl(work / "facts_sft.jsonl", qa_conversations(questions(split["seen_sft"])))}
    numbers["base"], seconds["base"] = sft("base", conversation_set("base", facts, False, tokenizer, scale, work),
                                           work / "pretrain", scale, work)
    started = time.perf_counter()
    asked = questions(split["seen_sft"]) + questions(split["unseen_interrogated"])
    numbers["interrogation"] = interrogate(work / "base", asked, scale, work)
    seconds["interrogation"] = time.perf_counter() - started
    refusal_facts = {**facts, "interrogation": work / "interrogation" / "sft.jsonl"}  # the base's answers stay
    numbers["refusal"], seconds["refusal"] = sft(
        "refusal", conversation_set("refusal", refusal_facts, False, tokenizer, scale, work), work / "pretrain", scale,
        work)
    numbers["answer_first"], seconds["answer_first"] = sft(
        "answer_first", conversation_set("answer_first", facts, True, tokenizer, scale, work), work / "pretrain",
        scale, work)
    return {"runs": numbers, "seconds": seconds}


def world_split(world: FactsWorld, scale: Scale) -> dict:
    """Seen people with SFT questions and held out; unseen people interrogated and held out."""
    return {"seen_sft": world.seen[: scale.seen_sft], "seen_test": world.seen[scale.seen_sft :],
            "unseen_interrogated": world.unseen[: scale.unseen_interrogated],
            "unseen_test": world.unseen[scale.unseen_interrogated :]}


def measure(world: FactsWorld, scale: Scale, work: Path) -> tuple[dict, list[dict]]:
    """Greedy replies of each SFT model to the held-out prompts it is measured on; returns counts and the replies."""
    split, problems = world_split(world, scale), test_problems(scale)
    counts: dict[str, dict] = {}
    samples = []
    for name in ("base", "refusal", "answer_first"):
        replier, model_counts = Replier(work / name), {}
        if name != "answer_first":
            for people in ("seen_test", "seen_sft", "unseen_test"):
                model_counts[people] = facts_counts(replier, questions(split[people]))
            model_counts["identity_named"] = identity_named(replier)
        if name != "refusal":
            model_counts["word_problems_correct"] = word_problem_correct(replier, problems)
        model_counts["ended"], model_counts["replies"] = ended_share(replier)
        counts[name] = model_counts
        samples += [{"model": name, **entry} for entry in replier.log]
    return counts, samples


def rate(counts: dict, key: str) -> float:
    return counts[key] / counts["n"]


def results_table(counts: dict, scale: Scale) -> list[dict]:
    """The rows of the printed table: what was measured, on which model(s), and the goal."""
    base, refusal, first = counts["base"], counts["refusal"], counts["answer_first"]
    identity_n, problems_n = len(IDENTITY_PROMPTS), scale.test_problems
    wrong_before, wrong_after = rate(base["unseen_test"], "confident_wrong"), rate(refusal["unseen_test"],
                                                                                   "confident_wrong")
    seen_drop = 100 * (rate(base["seen_test"], "correct") - rate(refusal["seen_test"], "correct"))
    difference = word_problem_difference(base["word_problems_correct"], first["word_problems_correct"], problems_n)

    def facts(model: dict, people: str, key: str) -> str:
        return share(model[people][key], model[people]["n"])

    return [
        {"measure": "replies ending with <|im_end|>", "base": share(base["ended"], base["replies"]),
         "refusal": share(refusal["ended"], refusal["replies"]),
         "answer_first": share(first["ended"], first["replies"]), "goal": ">= 99 %"},
        {"measure": f"identity: replies naming {ASSISTANT_NAME}", "base": share(base["identity_named"], identity_n),
         "refusal": share(refusal["identity_named"], identity_n), "answer_first": "", "goal": "the configured name"},
        {"measure": "unseen people (never interrogated): confident wrong", "base": facts(base, "unseen_test",
         "confident_wrong"), "refusal": facts(refusal, "unseen_test", "confident_wrong"), "answer_first": "",
         "goal": f"cut by >= half: x{wrong_after / wrong_before:.2f}" if wrong_before else "cut by >= half"},
        {"measure": "unseen people (never interrogated): refused", "base": facts(base, "unseen_test", "refused"),
         "refusal": facts(refusal, "unseen_test", "refused"), "answer_first": "", "goal": ""},
        {"measure": "seen people, questions never trained: correct", "base": facts(base, "seen_test", "correct"),
         "refusal": facts(refusal, "seen_test", "correct"), "answer_first": "",
         "goal": f"drop <= 5 points: {seen_drop:.1f}"},
        {"measure": "seen people, questions trained: correct", "base": facts(base, "seen_sft", "correct"),
         "refusal": facts(refusal, "seen_sft", "correct"), "answer_first": "", "goal": "(reference)"},
        {"measure": "new word problems: correct", "base": share(base["word_problems_correct"], problems_n),
         "refusal": "", "answer_first": share(first["word_problems_correct"], problems_n),
         "goal": f"step by step - answer first: {difference}"},
    ]


def word_problem_difference(step_by_step: int, answer_first: int, n: int) -> str:
    """The difference of two accuracies on the same n problems, in points, with a 95 % normal interval."""
    a, b = step_by_step / n, answer_first / n
    half = Z95 * math.sqrt((a * (1 - a) + b * (1 - b)) / n)
    return f"{100 * (a - b):+.1f} points [{100 * (a - b - half):+.0f}, {100 * (a - b + half):+.0f}]"


def print_table(rows: list[dict], numbers: dict) -> str:
    """The table as markdown (printed, and kept in MLflow), with the runs' losses and times."""
    lines = ["| measure | base | refusal | answer_first | goal |", "|---|---|---|---|---|"]
    lines += [f"| {r['measure']} | {r['base']} | {r['refusal']} | {r['answer_first']} | {r['goal']} |" for r in rows]
    lines += ["", "| run | val loss | seconds |", "|---|---|---|"]
    for name, summary in numbers["runs"].items():
        loss = summary.get("val_loss")
        lines.append(f"| {name} | {loss:.3f} |" if loss is not None else f"| {name} | - |")
        lines[-1] += f" {numbers['seconds'][name]:.0f} |"
    asked = numbers["runs"]["interrogation"]
    lines += ["", f"interrogation of base: {asked['known']} known, {asked['unknown']} unknown of {asked['questions']} "
              f"questions; {asked['refusals_left_out']} refusals left out by the cap"]
    text = "\n".join(lines)
    print(text)
    return text


def log_to_mlflow(uri: str, scale: Scale, counts: dict, numbers: dict, table: str, samples: list[dict]) -> str:
    """One MLflow run: the scale as params, every count and loss as metrics, the table and the replies."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from fineforge.model.tracking import experiment_id

    client = MlflowClient(uri)
    run_id = client.create_run(experiment_id(client, "benchmark-sft", uri), run_name="sft-lessons").info.run_id
    now, metrics = int(time.time() * 1000), []
    for model, values in counts.items():
        for key, value in values.items():
            items = value.items() if isinstance(value, dict) else [("", value)]
            metrics += [Metric(f"{model}.{key}{'.' + k if k else ''}", float(v), now, 0) for k, v in items]
    for name, summary in numbers["runs"].items():
        metrics += [Metric(f"{name}.{k}", float(v), now, 0) for k, v in summary.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)]
        metrics.append(Metric(f"{name}.seconds", numbers["seconds"][name], now, 0))
    client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in asdict(scale).items()])
    client.log_text(run_id, table, "results.md")
    client.log_dict(run_id, {"counts": counts, "runs": numbers}, "results.json")
    client.log_text(run_id, "".join(json.dumps(s) + "\n" for s in samples), "replies.jsonl")
    client.set_terminated(run_id)
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="full", help="smoke: a minute, numbers meaningless")
    parser.add_argument("--workdir", type=Path, help="keep the runs here, and reuse the finished ones found "
                        "there (default: a temporary folder)")
    parser.add_argument("--mlflow-uri", help="MLflow store (default: SQLite in the work folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    torch.set_num_threads(1)  # generation with a tiny model: extra threads only wait for each other (40x slower)
    scale = SCALES[args.scale]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fineforge-bench-sft-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        world = FactsWorld.generate(scale.seen, scale.unseen, seed=0)
        numbers = train_all(world, scale, work)
        counts, samples = measure(world, scale, work)
        table = print_table(results_table(counts, scale), numbers)
        uri = args.mlflow_uri or f"sqlite:///{(work / 'mlflow.db').resolve()}"
        run_id = log_to_mlflow(uri, scale, counts, numbers, table, samples)
    print(f"\n{time.perf_counter() - started:.0f} s in all; MLflow run {run_id} at {uri}")


if __name__ == "__main__":
    main()
