"""The tools lesson at toy scale on a CPU: tiny models trained on tool-use conversations against the same
models trained on the same questions answered directly, asked held-out questions through the real tool loop.

Two halves, each a pair of `tiny`-preset GPTs over bytes trained from scratch in-process
(`testkit/chat_training.py`, the stand-in for the SFT stage), one on the tool variant of a generator's
conversations (`tasks/conversations/`), one on its no-tool control (the same questions, answered directly):

- code: the `code_tasks` generator's letter counting and big-number arithmetic, the tool outputs from the
  real python sandbox; held-out questions come from another seed (a question seen in training is left out
  and counted) and the model's code runs in the sandbox;
- search: the `corpus_search` generator's number and name facts ("Which number is missing from this sentence
  of the corpus?") over a real corpus - the sample WARCs' documents and lingua's real sentences of 75
  languages, a few to a document (`testkit/search_corpus.py`) - indexed by the real search stage; every fact
  of a document, the documents split so that the held-out questions ask about documents no model saw in
  training (~8,500 distinct training facts; on ~1,400 the model did not learn to copy); conversations
  longer than the model's context are left out (the same questions for both variants); the model's queries run
  against the same index, which gives the word that fills the query's blank first. Both models start from a
  model trained on 4,000 code-tool conversations of every code task, copy practice (random numbers, words
  and lists can only be copied), which stay in their training set.

Replies are decoded greedily by the engine with the tool loop, and "The answer is X." is read from them.
Accuracy is shown with its Wilson 95 % interval and logged to MLflow (a SQLite store in the work dir unless
MLFLOW_TRACKING_URI is set).

Run: python -m benchmarks.tools [--steps 2400] [--train 20000] [--eval 100]
         [--search-steps 1500] [--search-train 8500] [--search-practice 4000]
         [--search-practice-steps 800] [--search-eval 200]
         [--only code|search] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from fineforge.model.chat import USER, ChatTemplate, Conversation
from fineforge.model.engine import Engine, Request, SamplingConfig
from fineforge.model.gpt import GPT
from fineforge.model.tokenizer import IM_END, Tokenizer, load_tokenizer
from fineforge.model.tool_loop import TOOL_OF_CALL, ToolLoop, ToolLoopConfig
from fineforge.model.tools.sandbox import PythonSandbox
from fineforge.tasks.conversations import records as conversation_records
from fineforge.tasks.conversations.code_tasks import CODE_TASKS as ALL_CODE_TASKS
from fineforge.tasks.conversations.code_tasks import code_task_conversations, read_words
from fineforge.tasks.conversations.corpus_search import corpus_search_conversations
from fineforge.tasks.conversations.records import ConversationRecord, SourceCounts
from fineforge.tasks.conversations.tool_turns import stated_answer
from fineforge.tasks.search.config import SearchIndexConfig
from fineforge.tasks.search.job import build_search_index
from fineforge.tasks.search.query import CorpusSearch
from fineforge.tasks.tracking import open_run, tracking_uri
from testkit.chat_training import train_chat_model
from testkit.search_corpus import SENTENCES_DUMP, sentence_documents, write_dump, write_sample_corpus

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FINEFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
WORDS = SHARED / "lid" / "lingua-sentences" / "en.txt"
CODE_TASKS = ("count_letter", "arithmetic")
SEARCH_TASK = "corpus_fact"
TRAIN_SEED, EVAL_SEED, PRACTICE_SEED = 1, 2, 3
EVAL_BATCH = 50
Z95 = 1.959964
# The search half: facts of numbers and of names (numbers alone gave ~2,300 that fit), every one of a document, the
# top passage only, short passages (a sentence of up to 20 words is whole in one; a longer one is rarely in the top
# passage, and its question is dropped as not_in_results).
SEARCH_K = 1
SENTENCES_PER_DOCUMENT = 5
PASSAGE_WORDS, PASSAGE_OVERLAP = 24, 20
FACTS_PER_DOCUMENT = 1000  # every fact of a document
SEARCH_KINDS = ("number", "name")
# Copy practice for both search models: without it the 2-layer byte model often had not started to copy the
# question's sentence into its query by the last step (mixed into its training set it did in one run of two).
# The code tasks' random numbers, words and lists can only be copied, not guessed: both search models start from
# a model trained on them, the practice still a part of their training set. Every code task: with letter
# counting and arithmetic alone one run of two still never copied its query; the lists of `sort` are longer.
PRACTICE_TASKS = ALL_CODE_TASKS
PRACTICE_BATCH = 32


@dataclass(frozen=True)
class Training:
    """How each model of a half is trained and how long its replies may be."""

    steps: int
    block_size: int
    max_new_tokens: int
    shape: dict = field(default_factory=lambda: dict(n_layer=2, n_head=2, n_embd=64))
    batch_size: int = 32
    learning_rate: float = 3e-3  # at 0.01 the code model's loss stalled near 1.0 and it never copied exactly
    warmup_steps: int = 0  # after 100 steps of warm-up the code model got no sum or product right
    anneal_share: float = 0.2  # of the steps, at the end, with the rate decaying to 0
    practice_steps: int = 0  # on the half's practice conversations first, one model both variants start from


@dataclass(frozen=True)
class Half:
    """One comparison: the tool's name, training conversations of each variant, held-out questions by task."""

    tool: str
    training: dict[bool, list[ConversationRecord]]  # with the tool -> its conversations
    tests: dict[str, list[ConversationRecord]]
    left_out: dict[str, int]  # by task: held-out questions dropped (seen in training, or too long)
    practice: list[ConversationRecord]  # copy practice, in both variants' training too
    loop: ToolLoop
    settings: Training


def wilson(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default)."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def question(record: ConversationRecord) -> str:
    return record.messages[0]["content"]


def held_out(records: list[ConversationRecord], seen: set[str]) -> list[ConversationRecord]:
    """The records whose question was not in training, each question once."""
    kept: dict[str, ConversationRecord] = {}
    for record in records:
        if question(record) not in seen:
            kept.setdefault(question(record), record)
    return list(kept.values())


def code_half(tokenizer: Tokenizer, train_count: int, eval_count: int, settings: Training) -> Half:
    """Letter counting and big-number arithmetic with the python sandbox, and without."""
    words = read_words(WORDS)

    def records(task: str, count: int, tool: bool, seed: int) -> list[ConversationRecord]:
        return list(code_task_conversations(count, [task], words, tool, "sandbox", seed, source=task))

    per_task = train_count // len(CODE_TASKS)
    training = {tool: [r for task in CODE_TASKS for r in records(task, per_task, tool, TRAIN_SEED)]
                for tool in (True, False)}
    seen = {question(r) for r in training[True]}
    tests = {task: held_out(records(task, eval_count, False, EVAL_SEED), seen) for task in CODE_TASKS}
    loop = ToolLoop({"python": PythonSandbox()}, tokenizer, ToolLoopConfig(max_output_tokens=64, timeout_s=60))
    return Half("code tool", training, tests, {t: eval_count - len(tests[t]) for t in CODE_TASKS}, [], loop,
                settings)


def build_search_corpus(workdir: Path) -> Path:
    """A fresh corpus in the data build's layout (the sample WARCs' documents and lingua's sentences) and its
    index, built by the search stage; the corpus's work dir."""
    corpus = workdir / "search-corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    started = time.perf_counter()
    write_sample_corpus(SHARED, corpus)
    write_dump(corpus, SENTENCES_DUMP, sentence_documents(SHARED, SENTENCES_PER_DOCUMENT))
    config = SearchIndexConfig(workdir=str(corpus), passage_words=PASSAGE_WORDS, passage_overlap=PASSAGE_OVERLAP)
    stats = build_search_index(corpus, config).statistics
    log.info("search corpus of %d documents and its index of %d passages built in %.0f s", stats["documents_out"],
             stats["passages"], time.perf_counter() - started)
    return corpus


def fits(template: ChatTemplate, record: ConversationRecord, block_size: int) -> bool:
    return len(template.render(Conversation.from_messages(record.messages))[0]) <= block_size


def document_of(record: ConversationRecord) -> str:
    """The id of the document a corpus_search record asks about (the end of its origin, in parentheses)."""
    return record.origin.rsplit(" (", 1)[1][:-1]


def search_half(tokenizer: Tokenizer, workdir: Path, train_count: int, practice_count: int, eval_count: int,
                settings: Training) -> Half:
    """Number and name facts of the corpus with the search tool over its index, and without: every fact of a
    document (one per sentence), the documents shuffled and split into held-out and training ones, so that a
    held-out question asks about a document no model saw in training. Both models also practise copying on
    `practice_count` code-tool conversations (`PRACTICE_TASKS`)."""
    corpus = build_search_corpus(workdir)
    counts = SourceCounts()
    variants = {tool: list(corpus_search_conversations(corpus, k=SEARCH_K, kinds=SEARCH_KINDS, tool=tool,
                                                       per_document=FACTS_PER_DOCUMENT, seed=TRAIN_SEED,
                                                       source=SEARCH_TASK, counts=counts))
                for tool in (True, False)}
    template = ChatTemplate(tokenizer)
    by_document: dict[str, list[tuple[ConversationRecord, ConversationRecord]]] = {}
    for with_tool, without in zip(variants[True], variants[False], strict=True):
        if fits(template, with_tool, settings.block_size):
            by_document.setdefault(document_of(with_tool), []).append((with_tool, without))
    documents = list(by_document.values())
    log.info("%d corpus facts (dropped: %s), %d fit a context of %d, from %d documents", len(variants[True]),
             dict(counts.dropped), sum(map(len, documents)), settings.block_size, len(documents))
    random.Random(EVAL_SEED).shuffle(documents)
    tests: list[tuple[ConversationRecord, ConversationRecord]] = []
    while documents and len(tests) < eval_count:
        tests += documents.pop()
    tests = tests[:eval_count]
    training = [pair for pairs in documents for pair in pairs][:train_count]
    if len(tests) < eval_count or len(training) < train_count:
        raise ValueError(f"the corpus gives {len(tests)} held-out and {len(training)} training facts that fit, "
                         f"{eval_count} and {train_count} wanted")
    practice = list(code_task_conversations(practice_count, PRACTICE_TASKS, read_words(WORDS), True, "sandbox",
                                            PRACTICE_SEED, source="practice"))
    loop = ToolLoop({"search": CorpusSearch(corpus, k=SEARCH_K)}, tokenizer,
                    ToolLoopConfig(max_output_tokens=settings.block_size, max_call_tokens=settings.block_size))
    return Half("search", {tool: [pair[not tool] for pair in training] + practice for tool in (True, False)},
                {SEARCH_TASK: [without for _, without in tests]}, {SEARCH_TASK: 0}, practice, loop, settings)


def replies(model: GPT, tokenizer: Tokenizer, questions: Sequence[str], tools: ToolLoop, max_new_tokens: int
            ) -> list[str]:
    """The model's greedy replies to the questions, tool calls run by the tool loop."""
    template = ChatTemplate(tokenizer)
    engine = Engine(model, tokenizer.vocab_size)
    config = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0,
                            stop_tokens=(tokenizer.encode_special(IM_END),))
    texts: list[str] = []
    for start in range(0, len(questions), EVAL_BATCH):
        requests = [Request(template.render_prompt([{"role": USER, "content": q}]))
                    for q in questions[start:start + EVAL_BATCH]]
        texts += [tokenizer.decode(c.tokens) for c in engine.generate_batch(requests, config, tools=tools)]
    return texts


def accuracy(model: GPT, tokenizer: Tokenizer, records: list[ConversationRecord], half: Half) -> dict:
    """Correct answers among the records' questions, with the interval, the replies that called a tool and one
    reply as an example."""
    texts = replies(model, tokenizer, [question(r) for r in records], half.loop, half.settings.max_new_tokens)
    correct = sum(stated_answer(text) == record.answer for text, record in zip(texts, records, strict=True))
    called = sum(any(opener in text for opener in TOOL_OF_CALL) for text in texts)
    low, high = wilson(correct, len(records))
    return {"correct": correct, "total": len(records), "accuracy": correct / max(1, len(records)),
            "low": low, "high": high, "tool_calls": called, "example": texts[0] if texts else ""}


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished children, such as sandbox processes."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def train(tokenizer: Tokenizer, records: list[ConversationRecord], settings: Training, start: GPT | None = None
          ) -> tuple[GPT, dict]:
    """The trained model (from a copy of `start` if given), and the wall and CPU seconds its training took."""
    started, cpu = time.perf_counter(), cpu_seconds()
    model = train_chat_model(ChatTemplate(tokenizer), [r.messages for r in records], settings.steps,
                             settings.shape, settings.learning_rate, batch_size=settings.batch_size,
                             block_size=settings.block_size, warmup_steps=settings.warmup_steps,
                             anneal_steps=int(settings.steps * settings.anneal_share), start=start)
    return model, {"train_s": time.perf_counter() - started, "train_cpu_s": cpu_seconds() - cpu}


def practised(tokenizer: Tokenizer, half: Half) -> tuple[GPT | None, dict]:
    """The model trained on the half's copy practice alone that both variants start from (None: no practice),
    and the seconds it took."""
    if not half.practice or not half.settings.practice_steps:
        return None, {"train_s": 0.0, "train_cpu_s": 0.0}
    settings = replace(half.settings, steps=half.settings.practice_steps, batch_size=PRACTICE_BATCH, anneal_share=0)
    model, seconds = train(tokenizer, half.practice, settings)
    log.info("trained the copy-practice model in %.0f s (%.0f s of CPU)", seconds["train_s"], seconds["train_cpu_s"])
    return model, seconds


def compare(half: Half, tokenizer: Tokenizer) -> list[dict]:
    """Train both variants of a half, evaluate each on every task; one row per (task, variant)."""
    rows = []
    start, practice = practised(tokenizer, half)
    for tool in (True, False):
        variant = half.tool if tool else "no tool"
        model, seconds = train(tokenizer, half.training[tool], half.settings, start)
        log.info("trained the %s model in %.0f s (%.0f s of CPU)", variant, seconds["train_s"],
                 seconds["train_cpu_s"])
        for task, records in half.tests.items():
            rows.append({"task": task, "variant": variant, "tool": tool, **seconds,
                         **{f"practice_{key}": value for key, value in practice.items()},
                         "left_out": half.left_out[task], **accuracy(model, tokenizer, records, half)})
            log.info("%s, %s: %d of %d right, e.g. %r", task, variant, rows[-1]["correct"], rows[-1]["total"],
                     rows[-1]["example"])
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'task':<14} {'variant':<10} {'accuracy':>9} {'95% CI':>15} {'n':>5} {'tool calls':>10} {'train s':>8} "
          f"{'(CPU s)':>8}")
    for row in rows:
        interval = f"[{row['low']:.0%}, {row['high']:.0%}]"
        print(f"{row['task']:<14} {row['variant']:<10} {row['accuracy']:>9.1%} {interval:>15} {row['total']:>5} "
              f"{row['tool_calls']:>10} {row['train_s']:>8.0f} {row['train_cpu_s']:>8.0f}")
    for task in dict.fromkeys(row["task"] for row in rows):
        with_tool, without = (next(r for r in rows if r["task"] == task and r["tool"] == tool)
                              for tool in (True, False))
        goal = "with search >= 2x without" if task == SEARCH_TASK else ">= 90 % with the tool"
        ratio = (f"{with_tool['accuracy'] / without['accuracy']:.1f}x" if without["accuracy"]
                 else "n/a (none right without)")
        print(f"{task}: with the tool / without = {ratio} (goal: {goal})")
        if with_tool["practice_train_s"]:
            print(f"  both started from a copy-practice model trained in {with_tool['practice_train_s']:.0f} s "
                  f"({with_tool['practice_train_cpu_s']:.0f} s of CPU)")
        print(f"  e.g. with the tool: {with_tool['example']!r}\n  without: {without['example']!r}")


def log_to_mlflow(workdir: Path, rows: list[dict], params: dict) -> str:
    """One MLflow run in experiment `benchmarks` holding the parameters and every row's numbers."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(workdir)
    run_id = open_run(uri, "benchmarks", "tools")
    client = MlflowClient(tracking_uri=uri)
    for key, value in params.items():
        client.log_param(run_id, key, value)
    for row in rows:
        prefix = f"{row['task']}/{row['variant'].replace(' ', '_')}"
        for key in ("accuracy", "low", "high", "total", "tool_calls", "train_s", "train_cpu_s", "practice_train_s"):
            client.log_metric(run_id, f"{prefix}/{key}", float(row[key]))
    client.set_terminated(run_id)
    return uri


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2400, help="training steps of each code model")
    parser.add_argument("--train", type=int, default=20000, help="training conversations of each code model")
    parser.add_argument("--eval", type=int, default=100, help="held-out questions asked per code task")
    parser.add_argument("--search-steps", type=int, default=1500, help="training steps of each search model")
    parser.add_argument("--search-train", type=int, default=8500,
                        help="training conversations of each search model")
    parser.add_argument("--search-eval", type=int, default=200, help="held-out corpus-fact questions")
    parser.add_argument("--search-practice", type=int, default=4000,
                        help="code-tool conversations each search model also trains on, to learn to copy")
    parser.add_argument("--search-practice-steps", type=int, default=800,
                        help="steps on the copy practice alone, before the search models (which start from it)")
    parser.add_argument("--only", choices=("code", "search"), help="run one half only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (64-wide matrices gain little from "
                        "more; on a busy machine two threads waiting for each other took 7x the CPU of one)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "work" / "bench-tools")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # force: importing Prefect (through the search stage) configured the root logger already
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    # the generators log a line per dropped question; the benchmark logs their counts
    logging.getLogger(conversation_records.__name__).setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args.workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer("bytes")
    code = Training(args.steps, block_size=256, max_new_tokens=160)
    # 4 heads, 16 conversations a step: at 2 heads and 8 the search model had not learnt to copy its query
    search = Training(args.search_steps, block_size=512, max_new_tokens=512, batch_size=16,
                      shape=dict(n_layer=2, n_head=4, n_embd=64), practice_steps=args.search_practice_steps)
    started, cpu, rows = time.perf_counter(), cpu_seconds(), []
    if args.only != "search":
        rows += compare(code_half(tokenizer, args.train, args.eval, code), tokenizer)
    if args.only != "code":
        half = search_half(tokenizer, args.workdir, args.search_train, args.search_practice, args.search_eval, search)
        rows += compare(half, tokenizer)
    print_table(rows)
    print(f"total {time.perf_counter() - started:.0f} s wall, {cpu_seconds() - cpu:.0f} s of CPU")
    params = {**{k: v for k, v in vars(args).items() if k != "workdir"}, "code": str(code), "search": str(search)}
    print(f"logged to MLflow at {log_to_mlflow(args.workdir, rows, params)}")


if __name__ == "__main__":
    main()
