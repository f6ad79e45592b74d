"""RL on verifiable answers, measured through the real stage (torchrun -> model.rl, tracked in MLflow): held-out
pass@1 before and after, the reward / pass@1 / reply-length curves, whether replies grow longer, and the roll-out
throughput of the batched engine against one sequence at a time.

    .venv/bin/python -m benchmarks.rl toy [--scale full|smoke] [--init CHECKPOINT] [--workdir DIR] [--mlflow-uri URI]
    .venv/bin/python -m benchmarks.rl gsm8k --init CHECKPOINT [--steps N] [--nproc N] [--smoke]   (gpu_rl.sh)

toy (CPU, <= 30 min on 2 cores): a toy SFT model (benchmarks/sft.py's pretraining, then an SFT of its own on word
problems alone: TOY_SFT; built here unless --init names it) trained with GRPO on new generated word problems
(verifier `word_problems`). gsm8k: an SFT
checkpoint of any size (GPT-2 124M on a GPU: nanochat's d20 went from 0.0455 to 0.0758 pass@1) on GSM8K's train
questions, evaluated on its test questions; --smoke runs the same path on a tiny random model on the CPU.

pass@1 is estimated from `eval_samples` samples per held-out problem at the roll-out temperature (Chen et al.'s
unbiased estimate); its 95 % interval is the normal one over problems, and the change's interval is that of the
paired per-problem differences. Greedy accuracy is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fineforge.model.rl.evaluation import HeldOutResult

if TYPE_CHECKING:
    from benchmarks import sft

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FINEFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
EXPERIMENT = "benchmark-rl"
GOAL_POINTS = 15.0  # toy: held-out pass@1 up by at least this many points
Z95 = 1.96
EVAL_SEED = 20_250_101  # the held-out samples' seeds, the same before and after
TRAIN_SEED = 1  # the RL word problems; the SFT data used seed 0, the held-out set benchmarks.sft.TEST_SEED
CURVES = ("reward_mean", "pass_at_1", "response_length_mean", "zero_variance_fraction", "entropy")

log = logging.getLogger("benchmarks.rl")


@dataclass(frozen=True)
class RLScale:
    """The size of one benchmark: prompts, held-out problems, roll-outs and steps."""

    train_problems: int
    held_out: int  # problems measured before and after (the first of the held-out set)
    eval_samples: int  # samples per held-out problem
    steps: int
    prompts_per_rollout: int
    samples_per_prompt: int
    micro_batch_size: int
    max_new_tokens: int
    lr: float
    eval_every: int
    eval_count: int  # held-out problems of the in-run pass@1 curve
    temperature: float = 1.0
    top_k: int | None = 50
    max_difficulty: int = 2
    nproc: int = 1
    threads: int = 2  # CPU threads per process
    sampling_threads: int | None = None  # CPU threads while sampling (None: threads)


# toy: the difficulty the toy SFT model is trained on (1: the 192-token context holds no harder problem). From it
# (TOY_SFT) samples at temperature 1 are right about half the time, greedy replies two times in three and nearly
# every problem has a right one among 8 samples; a guess (a price of difficulty 1 is 1..5) is right one time in
# five. A small learning rate: on the model's own samples the gradient is mostly noise (the expected gradient of
# log p over its own samples is zero, only the reward's filter carries signal) and Adam scales it to lr-sized steps
# on every weight. At 3e-4 the model lost its arithmetic within 20 steps (entropy 0.06 -> 0.29, reward 0.5 ->
# 0.17; the same with only the better-than-average replies reinforced), at 1e-4 (8 prompts) it slid (in-run pass@1
# 53 -> 44 % at step 20), at 3e-5 - 5e-5 with 16 prompts it holds; a warmup, a cosine decay, 4 updates per batch, a
# KL to the SFT model, an entropy term, Dr. GRPO, 8 x 16 or 32 x 8 at 1e-4 did no better in probes (docs/rl.md).
# What helps is steps (held-out +8.6 points after 100, +12.1 after 170), so the steps are made cheaper: with one
# update per batch the stage skips the old policy's log-prob pass, and sampling runs on one thread (with two, each
# token of the batched generation of a model this small waits on the other: steps about 6x slower under load)
# while the update uses both (1.65x faster on an idle machine).
TOY = RLScale(train_problems=2000, held_out=200, eval_samples=8, steps=250, prompts_per_rollout=16,
              samples_per_prompt=8, micro_batch_size=32, max_new_tokens=96, lr=5e-5, eval_every=50, eval_count=64,
              max_difficulty=1, threads=2, sampling_threads=1)
TOY_SMOKE = replace(TOY, train_problems=40, held_out=8, eval_samples=2, steps=2, prompts_per_rollout=2,
                    samples_per_prompt=2, micro_batch_size=4, max_new_tokens=16, eval_every=2, eval_count=4)

@dataclass(frozen=True)
class ToySFT:
    """What the RL benchmark's toy SFT model changes in benchmarks.sft's scale: its SFT is word problems alone."""

    word_problems: int
    sft_steps: int


# benchmarks.sft's base model (word problems a third of its 300 steps) was guessing: 15 % sampled pass@1 where a guess
# of 1..5 is right one time in five, and RL had nothing to sharpen. On word problems alone the model learns to compute
# between 240 steps (21 % sampled, 25 % greedy) and 900 (98 %, 100 %); at 400 it is half way (53 %, 69 %, pass@8 98 %
# on 64 held-out problems), the room RL needs.
TOY_SFT = ToySFT(word_problems=6000, sft_steps=400)
TOY_SFT_SMOKE = ToySFT(word_problems=60, sft_steps=8)

GSM8K = RLScale(train_problems=7473, held_out=400, eval_samples=8, steps=200, prompts_per_rollout=16,
                samples_per_prompt=16, micro_batch_size=32, max_new_tokens=256, lr=1e-5, eval_every=50,
                eval_count=400, threads=8)
GSM8K_SMOKE = replace(GSM8K, train_problems=16, held_out=4, eval_samples=2, steps=2, prompts_per_rollout=2,
                      samples_per_prompt=2, micro_batch_size=4, max_new_tokens=16, eval_every=2, eval_count=2,
                      threads=2)


def autocast(device: str):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else nullcontext()


def held_out_result(checkpoint: Path, prompts: Path, scale: RLScale, verifier: str, device: str,
                    greedy: bool = False, tokenizer_dir: Path | None = None) -> HeldOutResult:
    """The checkpoint's replies to the first `held_out` prompts, sampled as in the roll-outs (or greedy, one each),
    scored by the verifier: how many of each problem's samples passed."""
    from fineforge.model.chat import ChatTemplate
    from fineforge.model.checkpoint import load_model
    from fineforge.model.engine import Engine, SamplingConfig
    from fineforge.model.rl.evaluation import held_out_passes
    from fineforge.model.rl.prompts import read_prompt_set
    from fineforge.model.rl.rollouts import RolloutSampler
    from fineforge.model.tokenizer import IM_END, load_tokenizer
    from fineforge.model.verifiers import SafeScorer, get_verifier

    model, meta = load_model(checkpoint, device)
    tokenizer = load_tokenizer(meta["tokenizer"]["spec"], tokenizer_dir)
    template, stop = ChatTemplate(tokenizer), tokenizer.encode_special(IM_END)
    problems = read_prompt_set(prompts, "held-out prompts")[: scale.held_out]
    sampling = SamplingConfig(max_new_tokens=scale.max_new_tokens, temperature=0.0 if greedy else scale.temperature,
                              top_k=scale.top_k, stop_tokens=(stop,))
    sampler = RolloutSampler(Engine(model, vocab_size=tokenizer.vocab_size), sampling, tokenizer, stop)
    samples = 1 if greedy else scale.eval_samples
    with autocast(device):
        return held_out_passes(sampler, [template.render_prompt(p.messages) for p in problems],
                               [p.metadata for p in problems], samples, SafeScorer(get_verifier(verifier)), 1.0,
                               EVAL_SEED, 0, max(1, 128 // samples))


def rates(result: HeldOutResult) -> list[float]:
    """Each problem's share of passing samples (its pass@1 estimate)."""
    return [c / result.samples_per_prompt for c in result.correct]


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95 % normal interval over the values (problems)."""
    mean = statistics.fmean(values)
    half = Z95 * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return mean, mean - half, mean + half


def rl_run(work: Path, init: Path, prompts: Path, held_out: Path, scale: RLScale, verifier: str, uri: str,
           tokenizer_dir: Path | None = None) -> tuple[dict, float, str]:
    """The RL stage under torchrun, tracked in MLflow; its summary, wall seconds and MLflow run id."""
    from fineforge.model.tracking import TRACKING_URI_ENV, recorded_run
    from fineforge.model.trainer import SUMMARY_FILE
    from fineforge.tasks.training.launch import LaunchConfig, run_command, torchrun_command

    run_dir = work / "rl"
    config = {
        "run_dir": str(run_dir), "init_checkpoint": str(init), "prompts": str(prompts), "eval_prompts": str(held_out),
        "verifier": verifier, "tokenizer_dir": str(tokenizer_dir) if tokenizer_dir else None,
        "prompts_per_rollout": scale.prompts_per_rollout, "samples_per_prompt": scale.samples_per_prompt,
        "micro_batch_size": scale.micro_batch_size, "max_new_tokens": scale.max_new_tokens,
        "temperature": scale.temperature, "top_k": scale.top_k, "sampling_threads": scale.sampling_threads,
        "lr": scale.lr, "min_lr": scale.lr,
        "max_steps": scale.steps, "eval_every": scale.eval_every, "eval_count": scale.eval_count,
        "eval_samples": scale.eval_samples, "pass_k": scale.eval_samples, "sample_every": scale.eval_every,
        "checkpoint_every": scale.steps, "experiment": EXPERIMENT, "log_every": 5,
    }  # fmt: skip
    path = work / "rl.json"
    path.write_text(json.dumps(config, indent=2))
    started = time.perf_counter()
    env = {TRACKING_URI_ENV: uri, "OMP_NUM_THREADS": str(scale.threads)}
    run_command(torchrun_command("fineforge.model.rl", path, LaunchConfig(nproc_per_node=scale.nproc)), env=env,
                logger=log)
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    return summary, time.perf_counter() - started, recorded_run(run_dir)["run_id"]


def curves(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """The run's metric histories (step, value) of CURVES: what a plot of the run draws."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return {name: sorted((m.step, m.value) for m in client.get_metric_history(run_id, name)) for name in CURVES}


def length_trend(points: list[tuple[int, float]]) -> dict[str, float]:
    """Reply length over the run: first and last tenth's means, and the least-squares line's change across it."""
    from fineforge.model.rl.watch import fitted_change

    values = [v for _, v in points]
    tenth = max(1, len(values) // 10)
    return {"first": statistics.fmean(values[:tenth]), "last": statistics.fmean(values[-tenth:]),
            "fitted_change": fitted_change([s for s, _ in points], values)}


def rollout_throughput(checkpoint: Path, prompts: Path, new_tokens: int, device: str,
                       tokenizer_dir: Path | None = None) -> dict[str, dict]:
    """benchmarks/rollouts.py's measurement on the benchmark's model and prompts: 16 rows, batched vs one at a time."""
    from benchmarks.rollouts import throughput
    from fineforge.model.chat import ChatTemplate
    from fineforge.model.checkpoint import load_model
    from fineforge.model.engine import Engine, SamplingConfig
    from fineforge.model.rl.prompts import read_prompt_set
    from fineforge.model.tokenizer import load_tokenizer

    model, meta = load_model(checkpoint, device)
    tokenizer = load_tokenizer(meta["tokenizer"]["spec"], tokenizer_dir)
    template = ChatTemplate(tokenizer)
    prompts = [template.render_prompt(p.messages) for p in read_prompt_set(prompts, "prompts")[:16]]
    with autocast(device):
        return throughput(Engine(model, vocab_size=tokenizer.vocab_size), prompts, 16,
                          SamplingConfig(max_new_tokens=new_tokens, temperature=1.0))


@dataclass
class Measured:
    """Everything one benchmark run measured."""

    before: HeldOutResult
    after: HeldOutResult
    greedy_before: HeldOutResult
    greedy_after: HeldOutResult
    summary: dict
    seconds: dict[str, float]
    curves: dict[str, list[tuple[int, float]]]
    throughput: dict[str, dict]


def measure(work: Path, init: Path, prompts: Path, held_out: Path, scale: RLScale, verifier: str, uri: str,
            device: str, tokenizer_dir: Path | None = None) -> tuple[Measured, str]:
    """Held-out pass@1 (sampled and greedy) of the initial model, the RL run, the same of its result, throughput."""
    seconds = {}
    started = time.perf_counter()
    evaluate = {"prompts": held_out, "scale": scale, "verifier": verifier, "device": device,
                "tokenizer_dir": tokenizer_dir}
    before, greedy_before = held_out_result(init, **evaluate), held_out_result(init, greedy=True, **evaluate)
    seconds["evaluation before"] = time.perf_counter() - started
    summary, seconds["rl run"], run_id = rl_run(work, init, prompts, held_out, scale, verifier, uri, tokenizer_dir)
    started = time.perf_counter()
    after = held_out_result(work / "rl", **evaluate)
    greedy_after = held_out_result(work / "rl", greedy=True, **evaluate)
    seconds["evaluation after"] = time.perf_counter() - started
    started = time.perf_counter()
    speed = rollout_throughput(work / "rl", prompts, scale.max_new_tokens, device, tokenizer_dir)
    seconds["throughput"] = time.perf_counter() - started
    return Measured(before, after, greedy_before, greedy_after, summary, seconds, curves(uri, run_id), speed), run_id


def percent(interval: tuple[float, float, float]) -> str:
    mean, low, high = interval
    return f"{100 * mean:.1f} % [{100 * low:.1f}, {100 * high:.1f}]"


def results_table(m: Measured, scale: RLScale, goal: float | None) -> str:
    """The markdown report: pass@1 before/after with intervals, the curves every few steps, lengths, throughput."""
    n = len(m.before.correct)
    before, after = mean_interval(rates(m.before)), mean_interval(rates(m.after))
    change = mean_interval([a - b for a, b in zip(rates(m.after), rates(m.before), strict=True)])
    greedy = [mean_interval(rates(r)) for r in (m.greedy_before, m.greedy_after)]
    goal_text = f"goal >= +{goal:.0f} points: {'met' if change[0] * 100 >= goal else 'not met'}" if goal else ""
    lines = [f"held-out problems: {n}, {scale.eval_samples} samples each (temperature {scale.temperature}, "
             f"top-k {scale.top_k}); 95 % intervals", "",
             "| measure | before RL | after RL | change (paired) |", "|---|---|---|---|",
             f"| pass@1 (sampled) | {percent(before)} | {percent(after)} | {100 * change[0]:+.1f} points "
             f"[{100 * change[1]:+.1f}, {100 * change[2]:+.1f}] {goal_text} |",
             f"| pass@{scale.eval_samples} | {100 * m.before.pass_at(scale.eval_samples):.1f} % | "
             f"{100 * m.after.pass_at(scale.eval_samples):.1f} % | |",
             f"| greedy accuracy | {percent(greedy[0])} | {percent(greedy[1])} | |",
             f"| reply length (tokens, held out) | {m.before.length_sum / (n * scale.eval_samples):.1f} | "
             f"{m.after.length_sum / (n * scale.eval_samples):.1f} | |", ""]
    lines += curve_lines(m.curves)
    trend = length_trend(m.curves["response_length_mean"])
    lines += ["", f"reply length during RL: first tenth of the steps {trend['first']:.1f} tokens, last tenth "
              f"{trend['last']:.1f}, least-squares change across the run {trend['fitted_change']:+.1f}", ""]
    lines += ["| roll-outs, 16 rows | batched tok/s | one at a time tok/s | ratio (goal >= 5x) | CPU time ratio |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {r['batched_tokens_per_s']} | {r['one_at_a_time_tokens_per_s']} | {r['ratio']}x | "
              f"{r['cpu_time_ratio']}x |" for name, r in m.throughput.items()]
    lines += ["", " | ".join(f"{k}: {v:.0f} s" for k, v in m.seconds.items())]
    return "\n".join(lines)


def curve_lines(history: dict[str, list[tuple[int, float]]], rows: int = 12) -> list[str]:
    """The curves as a table of about `rows` steps, the last one and every evaluation's included (every value is
    in MLflow)."""
    steps = sorted({s for points in history.values() for s, _ in points})
    evaluated = {s for s, _ in history.get("pass_at_1", [])}
    shown = sorted(set(steps[:: max(1, len(steps) // rows)]) | set(steps[-1:]) | evaluated)
    values = {name: dict(points) for name, points in history.items()}
    lines = ["| step | " + " | ".join(CURVES) + " |", "|---" * (len(CURVES) + 1) + "|"]
    for step in shown:
        cells = [f"{values[name][step]:.3f}" if step in values[name] else "" for name in CURVES]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return lines


def log_results(uri: str, run_id: str, m: Measured, table: str, scale: RLScale) -> None:
    """The before/after numbers, the scale and the table into the RL run's MLflow run (beside its curves)."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    numbers = {f"held_out.{name}.pass_at_1": statistics.fmean(rates(result)) for name, result in
               (("before", m.before), ("after", m.after), ("greedy_before", m.greedy_before),
                ("greedy_after", m.greedy_after))}
    numbers["held_out.problems"] = len(m.before.correct)
    numbers |= {f"seconds.{k.replace(' ', '_')}": v for k, v in m.seconds.items()}
    numbers |= {f"throughput.ratio.{i}": r["ratio"] for i, r in enumerate(m.throughput.values())}
    client = MlflowClient(uri)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in numbers.items()],
                     params=[Param(f"benchmark.{k}", str(v)) for k, v in asdict(scale).items()])
    client.log_text(run_id, table, "benchmark/results.md")
    client.log_dict(run_id, {"before": asdict(m.before), "after": asdict(m.after), "throughput": m.throughput,
                             "summary": m.summary}, "benchmark/results.json")


def word_problem_prompts(path: Path, count: int, seed: int, max_difficulty: int) -> Path:
    """Generated word problems (the SFT generator's) as RL prompt records: the question and its answer."""
    from fineforge.tasks.conversations.word_problems import word_problem_conversations

    records = word_problem_conversations(count, max_difficulty, seed=seed, source="rl")
    path.write_text("".join(json.dumps({**r.to_json(), "messages": r.messages[:1]}) + "\n" for r in records))
    return path


def toy_sft_checkpoint(work: Path, smoke: bool) -> Path:
    """The RL benchmark's toy SFT model: benchmarks/sft.py's pretraining (corpus, BPE, 0.9M-parameter GPT), then an
    SFT of its own on word problems alone (TOY_SFT), in place of benchmarks.sft's mixed base SFT."""
    from benchmarks import sft

    scale = replace(sft.SCALES["smoke" if smoke else "full"], **asdict(TOY_SFT_SMOKE if smoke else TOY_SFT))
    world = sft.FactsWorld.generate(scale.seen, scale.unseen, seed=0)
    data, tokenizer = sft.write_pretraining_shards(sft.pretraining_corpus(world, scale, seed=0), scale, work)
    sft.pretrain(data, scale, work)
    sft.sft("word_problems", word_problem_sft_set(tokenizer, scale, work), work / "pretrain", scale, work)
    return work / "word_problems"


def word_problem_sft_set(tokenizer: Path, scale: sft.Scale, work: Path) -> Path:
    """The toy SFT data: `scale.word_problems` generated problems solved step by step (seed 0), nothing else."""
    from fineforge.tasks.conversations.config import ConversationsConfig
    from fineforge.tasks.conversations.job import build_conversations

    config = ConversationsConfig.model_validate({
        "workdir": str(work), "name": "word_problems", "tokenizer": str(tokenizer), "too_long": "drop", "seed": 0,
        "val_fraction": scale.val_fraction, "context_length": scale.model["block_size"] + 1,
        "sources": [{"kind": "word_problems", "count": scale.word_problems, "max_difficulty": scale.max_difficulty}],
    })  # fmt: skip
    build_conversations(config)
    return work / "conversations" / "word_problems"


def toy(args: argparse.Namespace, work: Path, uri: str) -> None:
    """Word problems from the toy SFT model (goal: +15 points of held-out pass@1)."""
    from benchmarks.sft import TEST_SEED

    scale = TOY_SMOKE if args.scale == "smoke" else TOY
    started = time.perf_counter()
    init = args.init or toy_sft_checkpoint(work, args.scale == "smoke")
    built = time.perf_counter() - started
    prompts = word_problem_prompts(work / "rl_train.jsonl", scale.train_problems, TRAIN_SEED, scale.max_difficulty)
    held_out = word_problem_prompts(work / "rl_held_out.jsonl", scale.held_out, TEST_SEED, scale.max_difficulty)
    measured, run_id = measure(work, init, prompts, held_out, scale, "word_problems", uri, "cpu")
    measured.seconds = {"toy SFT model": built, **measured.seconds}
    report(uri, run_id, measured, scale, GOAL_POINTS)


def gsm8k(args: argparse.Namespace, work: Path, uri: str) -> None:
    """GSM8K from an SFT checkpoint (a GPU run, or --smoke: a tiny random model on the CPU)."""
    scale = replace(GSM8K_SMOKE if args.smoke else GSM8K, **{k: v for k, v in (("steps", args.steps),
                                                                               ("nproc", args.nproc)) if v})
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    init = args.init
    if init is None:
        if not args.smoke:
            raise SystemExit("--init CHECKPOINT is required (an SFT checkpoint), or --smoke")
        from testkit.checkpoints import tiny_bytes_checkpoint

        init = tiny_bytes_checkpoint(work / "tiny", block_size=1024)  # GSM8K questions take up to 991 bytes
    prompts = first_lines(SHARED / "gsm8k" / "train.jsonl", work / "gsm8k_train.jsonl", scale.train_problems)
    held_out = first_lines(SHARED / "gsm8k" / "test.jsonl", work / "gsm8k_test.jsonl", scale.held_out)
    measured, run_id = measure(work, Path(init), prompts, held_out, scale, "gsm8k", uri, device,
                               SHARED / "tokenizers")
    report(uri, run_id, measured, scale, None)


def first_lines(source: Path, target: Path, count: int) -> Path:
    """The first `count` lines of a JSONL file, as a file of their own."""
    with open(source, encoding="utf-8") as f:
        target.write_text("".join(line for _, line in zip(range(count), f, strict=False)))
    return target


def report(uri: str, run_id: str, measured: Measured, scale: RLScale, goal: float | None) -> None:
    table = results_table(measured, scale, goal)
    print(table)
    log_results(uri, run_id, measured, table, scale)
    print(f"\nMLflow run {run_id} at {uri} (experiment {EXPERIMENT}): the curves, the samples, benchmark/results.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=("toy", "gsm8k"))
    parser.add_argument("--scale", choices=("full", "smoke"), default="full", help="toy: smoke takes minutes, "
                        "its numbers mean nothing")
    parser.add_argument("--smoke", action="store_true", help="gsm8k: a tiny random model on the CPU, a few steps")
    parser.add_argument("--init", type=Path, help="the SFT checkpoint to start from (toy: default, build it)")
    parser.add_argument("--steps", type=int, help="gsm8k: optimizer steps (default 200)")
    parser.add_argument("--nproc", type=int, help="gsm8k: processes (GPUs)")
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--mlflow-uri", help="MLflow store (default: SQLite in the work folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    scale = GSM8K if args.task == "gsm8k" and not args.smoke else TOY
    torch.set_num_threads(scale.sampling_threads or scale.threads)  # this process samples (held-out, throughput)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fineforge-bench-rl-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        uri = args.mlflow_uri or f"sqlite:///{(work / 'mlflow.db').resolve()}"
        (toy if args.task == "toy" else gsm8k)(args, work, uri)
    print(f"{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
