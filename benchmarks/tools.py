"""The tools lesson at toy scale on a CPU: a tiny model trained on code-tool conversations against the same model
trained on the same questions answered directly, asked held-out questions through the real tool loop.

Both models are `tiny`-preset GPTs over bytes, trained from scratch in-process (`testkit/chat_training.py`,
the stand-in for the SFT stage) on the `code_tasks` generator's conversations (`tasks/conversations/`) of
each task measured, the tool variant or its no-tool control (the same questions, same seed). Evaluation
asks held-out questions (another seed; any question seen in training is left out and counted), decodes
greedily with the engine and the tool loop running the real python sandbox, and reads "The answer is X."
from the reply. Accuracy is shown with its Wilson 95 % interval and logged to MLflow (a SQLite store in
the work dir unless MLFLOW_TRACKING_URI is set).

Run: python -m benchmarks.tools [--steps 600] [--train 2000] [--eval 100]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from fineforge.model.chat import USER, ChatTemplate
from fineforge.model.engine import Engine, Request, SamplingConfig
from fineforge.model.gpt import GPT
from fineforge.model.tokenizer import IM_END, Tokenizer, load_tokenizer
from fineforge.model.tool_loop import ToolLoop, ToolLoopConfig
from fineforge.model.tools.sandbox import PythonSandbox
from fineforge.tasks.conversations.code_tasks import code_task_conversations, read_words
from fineforge.tasks.conversations.records import ConversationRecord
from fineforge.tasks.conversations.tool_turns import stated_answer
from fineforge.tasks.tracking import open_run, tracking_uri
from testkit.chat_training import train_chat_model

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
WORDS = ROOT.parent / "shared" / "data" / "lid" / "lingua-sentences" / "en.txt"
TASKS = ("count_letter", "arithmetic")
MODEL_SHAPE = dict(n_layer=2, n_head=2, n_embd=64)
BLOCK_SIZE = 256
LEARNING_RATE = 1e-2
BATCH_SIZE = 32
EVAL_BATCH = 50
TRAIN_SEED, EVAL_SEED = 1, 2
Z95 = 1.959964


def wilson(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default)."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def task_records(task: str, count: int, words: Sequence[str], tool: bool, seed: int) -> list[ConversationRecord]:
    """`count` conversations of one code task, with the tool (outputs from the real sandbox) or without."""
    return list(code_task_conversations(count, [task], words, tool, "sandbox", seed, source=task))


def question(record: ConversationRecord) -> str:
    return record.messages[0]["content"]


def held_out(records: list[ConversationRecord], seen: set[str]) -> list[ConversationRecord]:
    """The records whose question was not in training, each question once."""
    kept: dict[str, ConversationRecord] = {}
    for record in records:
        if question(record) not in seen:
            kept.setdefault(question(record), record)
    return list(kept.values())


def replies(model: GPT, tokenizer: Tokenizer, questions: Sequence[str], tools: ToolLoop) -> list[str]:
    """The model's greedy replies to the questions, tool calls run by the tool loop."""
    template = ChatTemplate(tokenizer)
    engine = Engine(model, tokenizer.vocab_size)
    config = SamplingConfig(max_new_tokens=160, temperature=0, stop_tokens=(tokenizer.encode_special(IM_END),))
    texts: list[str] = []
    for start in range(0, len(questions), EVAL_BATCH):
        requests = [Request(template.render_prompt([{"role": USER, "content": q}]))
                    for q in questions[start:start + EVAL_BATCH]]
        texts += [tokenizer.decode(c.tokens) for c in engine.generate_batch(requests, config, tools=tools)]
    return texts


def accuracy(model: GPT, tokenizer: Tokenizer, records: list[ConversationRecord], tools: ToolLoop) -> dict:
    """Correct answers among the records' questions, with the interval, the replies that called a tool and one
    reply as an example."""
    texts = replies(model, tokenizer, [question(r) for r in records], tools)
    correct = sum(stated_answer(text) == record.answer for text, record in zip(texts, records, strict=True))
    called = sum("<CODE_START>" in text for text in texts)
    low, high = wilson(correct, len(records))
    return {"correct": correct, "total": len(records), "accuracy": correct / max(1, len(records)),
            "low": low, "high": high, "tool_calls": called, "example": texts[0] if texts else ""}


def train(tokenizer: Tokenizer, records: list[ConversationRecord], steps: int) -> tuple[GPT, float]:
    started = time.perf_counter()
    model = train_chat_model(ChatTemplate(tokenizer), [r.messages for r in records], steps, MODEL_SHAPE,
                             LEARNING_RATE, batch_size=BATCH_SIZE, block_size=BLOCK_SIZE)
    return model, time.perf_counter() - started


def run(steps: int, train_count: int, eval_count: int) -> list[dict]:
    """Train both variants, evaluate each on every task; one row per (task, variant)."""
    tokenizer = load_tokenizer("bytes")
    words = read_words(WORDS)
    per_task = train_count // len(TASKS)
    training = {tool: [r for task in TASKS for r in task_records(task, per_task, words, tool, TRAIN_SEED)]
                for tool in (True, False)}
    seen = {question(r) for r in training[True]}
    tests = {task: held_out(task_records(task, eval_count, words, False, EVAL_SEED), seen) for task in TASKS}
    rows = []
    loop = ToolLoop({"python": PythonSandbox()}, tokenizer, ToolLoopConfig(max_output_tokens=64, timeout_s=60))
    for tool in (True, False):
        model, seconds = train(tokenizer, training[tool], steps)
        log.info("trained the %s model in %.0f s", "tool" if tool else "no-tool", seconds)
        for task in TASKS:
            rows.append({"task": task, "variant": "code tool" if tool else "no tool", "train_s": seconds,
                         "left_out": eval_count - len(tests[task]), **accuracy(model, tokenizer, tests[task], loop)})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'task':<14} {'variant':<10} {'accuracy':>9} {'95% CI':>15} {'n':>5} {'tool calls':>10} {'train s':>8}")
    for row in rows:
        interval = f"[{row['low']:.0%}, {row['high']:.0%}]"
        print(f"{row['task']:<14} {row['variant']:<10} {row['accuracy']:>9.1%} {interval:>15} {row['total']:>5} "
              f"{row['tool_calls']:>10} {row['train_s']:>8.0f}")
    for task in TASKS:
        with_tool, without = (next(r for r in rows if r["task"] == task and r["variant"] == v)
                              for v in ("code tool", "no tool"))
        ratio = (f"{with_tool['accuracy'] / without['accuracy']:.1f}x" if without["accuracy"]
                 else "n/a (none right without)")
        print(f"{task}: with the tool / without = {ratio} (goal: >= 90 % with the tool)")
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
        for key in ("accuracy", "low", "high", "total", "tool_calls", "train_s"):
            client.log_metric(run_id, f"{prefix}/{key}", float(row[key]))
    client.set_terminated(run_id)
    return uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600, help="training steps of each model")
    parser.add_argument("--train", type=int, default=2000, help="training conversations of each model")
    parser.add_argument("--eval", type=int, default=100, help="held-out questions asked per task")
    parser.add_argument("--workdir", type=Path, default=ROOT / "work" / "bench-tools")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args.workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    started = time.perf_counter()
    rows = run(args.steps, args.train, args.eval)
    print_table(rows)
    print(f"total {time.perf_counter() - started:.0f} s")
    uri = log_to_mlflow(args.workdir, rows, {"steps": args.steps, "train": args.train, "eval": args.eval,
                                             "shape": str(MODEL_SHAPE), "batch_size": BATCH_SIZE})
    print(f"logged to MLflow at {uri}")


if __name__ == "__main__":
    main()
